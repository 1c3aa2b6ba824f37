import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// What a step may not do: reach the network, see the host, mount, gain privileges, or fork
/// without bound. Real containers, on both runtimes: the Docker engine and runc (`oci`), which
/// must give the same isolation point by point.
extension WorkerEndToEndTests {
    @Suite struct LockdownTests {
        static let actions = #"""
            actions:
              probe:
                run: |
                  echo "PROBE interfaces=$(ls /sys/class/net | tr '\n' ' ')"
                  echo "PROBE secret=$(jq -r .opschain.secrets.db_password "$OPSCHAIN_PROJECT_PROPERTIES")"
                  if bash -c 'exec 3<>/dev/tcp/1.1.1.1/53' 2>/dev/null; then echo "PROBE internet=reached"; else echo "PROBE internet=blocked"; fi
                  if [ -e /var/run/docker.sock ]; then echo "PROBE docker-socket=present"; else echo "PROBE docker-socket=absent"; fi
                  if [ -e "$HOSTMARK" ]; then echo "PROBE host-file=visible"; else echo "PROBE host-file=hidden"; fi
                  if mount -t tmpfs none /mnt 2>/dev/null; then echo "PROBE mount=allowed"; else echo "PROBE mount=refused"; fi
                  echo "PROBE $(grep NoNewPrivs /proc/self/status | tr -d ' \t')"
                  echo "PROBE pids.max=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"
                  echo "PROBE uid=$(id -u) $(grep CapEff /proc/self/status | tr -d ' \t')"
                  if unshare -U true 2>/dev/null; then echo "PROBE unshare=allowed"; else echo "PROBE unshare=refused"; fi
                  echo "PROBE keyctl=$(perl -e 'syscall(250, 0, 0, 0); print $!+0 == 1 ? "refused" : "allowed"')"
                  if head -c 1 /proc/kcore >/dev/null 2>&1; then echo "PROBE kcore=readable"; else echo "PROBE kcore=unreadable"; fi
                  echo "PROBE timer_list=$(wc -c < /proc/timer_list) sysrq=$(if echo h 2>/dev/null > /proc/sysrq-trigger; then echo writable; else echo read-only; fi)"
              bomb:
                run: 'n=0; while [ $n -lt 2000 ]; do sleep 30 & n=$((n+1)); done; echo "PROBE forked=$n"'
                timeout: 60
              hog:
                run: |
                  memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
                  cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)")
                  echo "PROBE memory.max=$memory cpu.max=$cpu"
                  head -c 600000000 /dev/zero | tail -n 1 > /dev/null && echo "PROBE survived"
            """#

        @Test(.timeLimit(.minutes(6)), arguments: StepRuntime.allCases)
        func aStepCannotReachTheNetworkOrTheHostNorPassItsLimits(runtime: StepRuntime) async throws {
            let harness = try await WorkerHarness(runtime: runtime)
            let mark = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-hostmark-\(UUID().uuidString.prefix(6))").path
            try "host only".write(toFile: mark, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: mark) }
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])

            let project: JSON = ["env": ["HOSTMARK": .string(mark)], "opschain": ["secrets": ["db_password": "hunter2-xyz"]]]
            let probe = try await harness.run(harness.job(repository, action: "probe", project: project))
            #expect(probe.status == .success, "\(probe.error ?? "")")
            let lines = await harness.logLines(for: probe.ref).map(\.text).filter { $0.hasPrefix("PROBE ") }
            #expect(lines.contains("PROBE interfaces=lo "), "\(lines)")
            #expect(lines.contains("PROBE internet=blocked"), "\(lines)")
            #expect(lines.contains("PROBE docker-socket=absent"), "\(lines)")
            #expect(lines.contains("PROBE host-file=hidden"), "\(lines)")
            #expect(lines.contains("PROBE mount=refused"), "\(lines)")
            #expect(lines.contains("PROBE NoNewPrivs:1"), "\(lines)")
            #expect(lines.contains("PROBE pids.max=256"), "\(lines)")
            #expect(lines.contains("PROBE uid=1000 CapEff:0000000000000000"), "the runner image's user, no capabilities: \(lines)")
            #expect(lines.contains("PROBE secret=****"), "a secret property printed by the step is masked: \(lines)")
            // Seccomp: a new user namespace and the kernel keyring are refused (EPERM).
            #expect(lines.contains("PROBE unshare=refused"), "\(lines)")
            #expect(lines.contains("PROBE keyctl=refused"), "\(lines)")
            // Masked and read-only /proc paths.
            #expect(lines.contains("PROBE kcore=unreadable"), "\(lines)")
            #expect(lines.contains("PROBE timer_list=0 sysrq=read-only"), "\(lines)")

            // 2,000 background processes against a limit of 256: the shell cannot fork, the step
            // fails, and the worker is unharmed (it runs the next step).
            let bomb = try await harness.run(harness.job(repository, action: "bomb"))
            #expect(bomb.status == .error)
            let bombLog = await harness.logLines(for: bomb.ref).map(\.text)
            #expect(!bombLog.contains { $0.hasPrefix("PROBE forked=2000") }, "\(bombLog.suffix(5))")
            #expect(bombLog.contains { $0.localizedCaseInsensitiveContains("fork") || $0.contains("Resource temporarily unavailable") }, "\(bombLog.suffix(5))")
            let after = try await harness.run(harness.job(repository, action: "probe", project: ["env": ["HOSTMARK": .string(mark)]]))
            #expect(after.status == .success)

            // 600 MB against a limit of 256 MiB (no swap): killed, and the outcome says why.
            let hog = try await harness.run(harness.job(repository, action: "hog"))
            #expect(hog.status == .error)
            let hogLog = await harness.logLines(for: hog.ref).map(\.text)
            #expect(hogLog.contains("PROBE memory.max=268435456 cpu.max=100000 100000"), "\(hogLog)")
            #expect(!hogLog.contains("PROBE survived"), "\(hogLog)")
            #expect(
                hog.error?.hasPrefix("the step ran out of memory: a process passed the container's limit of 256 MiB and was killed (exit code") == true,
                "\(hog.error ?? "")")
            await harness.worker.shutdown()
            OCILeftovers.expectNone(in: harness.workDirectory)
            await harness.stop()
        }

        /// A step gets a network only when its properties ask for one the worker offers.
        @Test(.timeLimit(.minutes(4)), arguments: StepRuntime.allCases)
        func aNetworkIsGivenOnlyWhenAskedForAndOffered(runtime: StepRuntime) async throws {
            let actions = #"""
                actions:
                  nets:
                    run: echo "NETS $(ls /sys/class/net | tr '\n' ' ')"
                """#
            let repository = try TestRepository.make([".opschain/actions.yml": actions])
            let asksForHost: JSON = ["opschain": ["config": ["network": "host"]]]

            let strict = try await WorkerHarness(runtime: runtime)
            let refused = try await strict.run(strict.job(repository, action: "nets", project: asksForHost))
            #expect(refused.status == .error)
            #expect(refused.error == "the step asks for the network \"host\" (opschain.config.network), which this worker does not allow (its --step-networks: default)")
            #expect(refused.runStarted == false)
            await strict.stop()

            // A worker that offers the host's network (this machine has no bridge to offer).
            let open = try await WorkerHarness(stepNetworks: ["host"], runtime: runtime)
            let onHost = try await open.run(open.job(repository, action: "nets", project: asksForHost))
            #expect(onHost.status == .success, "\(onHost.error ?? "")")
            let hostLine = await open.logLines(for: onHost.ref).map(\.text).first { $0.hasPrefix("NETS ") }
            let hostInterfaces = try String(contentsOfFile: "/proc/net/dev", encoding: .utf8).split(separator: "\n").count - 2
            #expect((hostLine?.split(separator: " ").count ?? 0) - 1 == hostInterfaces, "the host's \(hostInterfaces) interfaces: \(hostLine ?? "none")")
            if runtime == .oci {
                // runc gives only lo: a step asking for a network goes to the engine, and says so.
                let said = await open.logLines(for: onHost.ref).map(\.text)
                #expect(said.contains { $0.hasPrefix("run: on the Docker runtime: the step asks for the network \"host\"") }, "\(said)")
            }
            let none = try await open.run(open.job(repository, action: "nets", project: ["opschain": ["config": ["network": false]]]))
            #expect(await open.logLines(for: none.ref).map(\.text).contains("NETS lo "))
            await open.worker.shutdown()
            OCILeftovers.expectNone(in: open.workDirectory)
            await open.stop()
        }

        /// Steps run as the image's user: the runner's unprivileged `opschain` with no
        /// capabilities, or root with only the few a root step needs when a project's Dockerfile
        /// switches to `USER root`. A non-root step cannot write outside its reach and says why.
        @Test(.timeLimit(.minutes(6)), arguments: StepRuntime.allCases)
        func stepsRunAsTheImagesUser(runtime: StepRuntime) async throws {
            let harness = try await WorkerHarness(runtime: runtime)
            let actions = """
                actions:
                  who:
                    run: |
                      echo "WHO uid=$(id -u) gid=$(id -g) home=$HOME $(grep CapEff /proc/self/status | tr -d ' \\t')"
                      echo "WHO settings=$(cat ~/.config/app/settings)"
                      touch /opt/opschain/README.md && echo "WHO repo=writable"
                      if [ -f /etc/app/settings ]; then echo "WHO etc=written"; fi
                      git -C /opt/opschain status --porcelain >/dev/null && echo "WHO git=ok"
                  etc_file: { run: "true" }
                """
            let home: JSON = ["files": ["~/.config/app/settings": ["mode": "0600", "content": "mine"]]]
            let plain = try TestRepository.make([".opschain/actions.yml": actions, "README.md": "x"])
            let who = try await harness.run(harness.job(plain, action: "who", project: home))
            #expect(who.status == .success, "\(who.error ?? "")")
            let lines = await harness.logLines(for: who.ref).map(\.text)
            #expect(lines.contains("WHO uid=1000 gid=1000 home=/home/opschain CapEff:0000000000000000"), "\(lines)")
            #expect(lines.contains("WHO settings=mine"), "\(lines)")
            #expect(lines.contains("WHO repo=writable"), "\(lines)")
            #expect(lines.contains("WHO git=ok"), "\(lines)")
            #expect(lines.contains { $0.hasPrefix("run: as user 1000:1000 (image USER opschain), no capabilities") }, "\(lines)")

            let outside: JSON = ["files": ["/etc/app/settings": ["mode": "0600", "content": "x"]]]
            let refused = try await harness.run(harness.job(plain, action: "etc_file", project: outside))
            #expect(refused.status == .error)
            #expect(refused.error?.contains("cannot write the file property /etc/app/settings") == true, "\(refused.error ?? "")")
            #expect(refused.error?.contains("not root: write files under ~/ or /opt/opschain, or switch the image to USER root") == true, "\(refused.error ?? "")")

            // CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID and SETUID: bits 0, 1, 3, 4, 6, 7.
            let rootImage = try TestRepository.make([
                ".opschain/actions.yml": actions, "README.md": "x",
                ".opschain/Dockerfile": "ARG OPSCHAIN_BASE_RUNNER\nFROM ${OPSCHAIN_BASE_RUNNER}\nUSER root\nADD repo.tar ./\n",
            ])
            let asRoot = try await harness.run(harness.job(rootImage, action: "who", project: outside))
            #expect(asRoot.status == .success, "\(asRoot.error ?? "")")
            let rootLines = await harness.logLines(for: asRoot.ref).map(\.text)
            #expect(rootLines.contains("WHO uid=0 gid=0 home=/root CapEff:00000000000000db"), "\(rootLines)")
            #expect(rootLines.contains("WHO etc=written"), "\(rootLines)")
            #expect(rootLines.contains("WHO git=ok"), "a root step can use the repository owned by opschain: \(rootLines)")
            await harness.worker.shutdown()
            OCILeftovers.expectNone(in: harness.workDirectory)
            await harness.stop()
        }
    }
}
