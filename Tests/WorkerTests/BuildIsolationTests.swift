import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP listener on the host's 127.0.0.1 that a test keeps open, and a sender that puts a
/// marker on the host's loopback again and again (what a sniffing build would capture).
final class HostLoopbackListener: Sendable {
    let descriptor: Int32
    let port: UInt16

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(descriptor, pointer, length) == 0 && listen(descriptor, 64) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else {
            close(descriptor)
            throw TestSetupError("cannot listen on 127.0.0.1")
        }
        self.descriptor = descriptor
        port = UInt16(bigEndian: address.sin_port)
    }

    /// Connects and sends `text` (the kernel completes the handshake from the backlog).
    func send(_ text: String) {
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return }
        _ = text.withCString { Glibc.send(client, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        // Accept and drop it, so the backlog never fills.
        let accepted = accept(descriptor, nil, nil)
        if accepted >= 0 { close(accepted) }
    }

    deinit { close(descriptor) }
}

/// Builds never share the host's network namespace: a `USER root` RUN (which has NET_RAW)
/// sees only a loopback of its own, cannot reach a port on the host's 127.0.0.1 nor capture
/// its traffic, and one build cannot fetch another build's secrets. Real builds, real engine.
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(10))) struct BuildIsolationTests {
        static func dockerfile(port: UInt16, marker: String) -> String {
            #"""
            ARG OPSCHAIN_BASE_RUNNER
            FROM ${OPSCHAIN_BASE_RUNNER}
            ARG OPSCHAIN_BUILD_SECRETS_URL
            USER root
            RUN echo "PROBE \#(marker) interfaces=$(ls /sys/class/net | tr '\n' ' ')"; \
                if timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/\#(port)' 2>/dev/null; then echo "PROBE host-loopback=reached"; else echo "PROBE host-loopback=blocked"; fi; \
                perl -e 'socket(my $s, 17, 3, 0x0300) or die "PROBE raw socket refused: $!\n"; $SIG{ALRM} = sub { print "PROBE sniffed=" . ($n // 0) . "\n"; exit 0 }; alarm 4; while (sysread($s, my $b, 65536)) { $n++ if index($b, "SNIFF-\#(marker)") >= 0 }'
            USER opschain
            ADD repo.tar ./
            COPY step_context_env.json .opschain/step_context_env.json
            RUN opschain-exec sh -c 'echo "PROBE secret-digest=$(printf %s "$TOKEN_A" | sha256sum | cut -c1-16)"'
            """#
        }

        /// Runs the probe build (with or without build secrets) while the test puts traffic on
        /// the host's loopback; returns the PROBE lines of the build.
        static func probe(secrets: Bool) async throws -> (lines: [String], outcome: StepOutcome, secret: String, harness: WorkerHarness) {
            let listener = try HostLoopbackListener()
            let marker = "m\(UUID().uuidString.prefix(8).lowercased())"
            var folder: String?
            let secret = "isolated-\(UInt32.random(in: 100_000...999_999))"
            if secrets {
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString.prefix(6))").path
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                try "TOKEN_A=\(secret)\n".write(toFile: path + "/opschain-build-env", atomically: true, encoding: .utf8)
                folder = path
            }
            let harness = try await WorkerHarness(secretsDirectory: folder)
            let repository = try TestRepository.make([
                ".opschain/actions.yml": "actions:\n  ok: { run: 'true' }", ".opschain/Dockerfile": dockerfile(port: listener.port, marker: marker),
            ])
            let traffic = Task.detached {
                // An API request with a bearer token, as the dispatcher's clients make them.
                while !Task.isCancelled {
                    listener.send("GET /changes HTTP/1.1\r\nAuthorization: Bearer SNIFF-\(marker)\r\n\r\n")
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            let outcome = try await harness.run(harness.job(repository, action: "ok"), timeout: .seconds(180))
            traffic.cancel()
            let lines = await harness.logLines(for: outcome.ref).map(\.text).compactMap { line in line.range(of: "PROBE ").map { String(line[$0.lowerBound...]) } }
            return (lines, outcome, secret, harness)
        }

        @Test(.timeLimit(.minutes(5))) func aRootBuildWithoutSecretsHasOnlyItsOwnLoopback() async throws {
            let (lines, outcome, _, harness) = try await Self.probe(secrets: false)
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            #expect(lines.contains { $0.hasSuffix("interfaces=lo ") }, "\(lines)")
            #expect(lines.contains("PROBE host-loopback=blocked"), "\(lines)")
            #expect(lines.contains("PROBE sniffed=0"), "the raw socket saw the host's loopback traffic: \(lines)")
            // No secrets: opschain-exec gets an empty URL and runs the command without any.
            #expect(lines.contains("PROBE secret-digest=\(try BuildSecretTests.digest(""))"), "\(lines)")
            #expect(try await harness.leftoverContainers().isEmpty)
            await harness.stop()
        }

        @Test(.timeLimit(.minutes(5))) func aRootBuildWithSecretsSharesOnlyItsSecretContainersLoopback() async throws {
            let (lines, outcome, secret, harness) = try await Self.probe(secrets: true)
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            #expect(lines.contains { $0.hasSuffix("interfaces=lo ") }, "\(lines)")
            #expect(lines.contains("PROBE host-loopback=blocked"), "\(lines)")
            #expect(lines.contains("PROBE sniffed=0"), "the raw socket saw the host's loopback traffic: \(lines)")
            #expect(lines.contains("PROBE secret-digest=\(try BuildSecretTests.digest(secret))"), "the secrets still reach opschain-exec: \(lines)")
            #expect(try await harness.leftoverContainers().isEmpty, "the secrets container goes with the build")
            await harness.stop()
        }

        /// Two builds at once, with secret sets of their own: the attacker asks for the
        /// victim's token (which it could have sniffed) and gets nothing.
        @Test(.timeLimit(.minutes(5))) func oneBuildCannotFetchAnothersSecrets() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString.prefix(6))").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let victimValue = "npm-victim-\(UInt32.random(in: 100_000...999_999))"
            try "VICTIM_NPM_TOKEN=\(victimValue)\n".write(toFile: folder + "/victim", atomically: true, encoding: .utf8)
            try "ATTACKER=\(UInt32.random(in: 100_000...999_999))\n".write(toFile: folder + "/attacker", atomically: true, encoding: .utf8)
            // The key the worker will use (it reads the one in the folder).
            let key = try BuildSecretStore.hmacKey(candidates: [folder + "/.build-secrets.key"])
            let victimToken = BuildSecretStore.token(for: ["VICTIM_NPM_TOKEN": victimValue], key: key)
            let harness = try await WorkerHarness(secretsDirectory: folder)
            let marker = "v\(UUID().uuidString.prefix(8).lowercased())"
            let victimRepository = try TestRepository.make([
                ".opschain/actions.yml": "actions:\n  ok: { run: 'true' }",
                ".opschain/Dockerfile": """
                    ARG OPSCHAIN_BASE_RUNNER
                    FROM ${OPSCHAIN_BASE_RUNNER}
                    ARG OPSCHAIN_BUILD_SECRETS_URL
                    ADD repo.tar ./
                    COPY step_context_env.json .opschain/step_context_env.json
                    RUN opschain-exec sh -c 'echo "victim \(marker) holds its secrets"; sleep 12'
                    """,
            ])
            let attackerRepository = try TestRepository.make([
                ".opschain/actions.yml": "actions:\n  ok: { run: 'true' }",
                ".opschain/Dockerfile": #"""
                    ARG OPSCHAIN_BASE_RUNNER
                    FROM ${OPSCHAIN_BASE_RUNNER}
                    ARG OPSCHAIN_BUILD_SECRETS_URL
                    USER root
                    RUN hostport=$(echo "$OPSCHAIN_BUILD_SECRETS_URL" | sed -E 's#http://([^/]*)/.*#\1#'); port=${hostport#*:}; \
                        answer=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/${port:-4779}; printf 'GET /secrets/\#(victimToken) HTTP/1.0\r\n\r\n' >&3; cat <&3" 2>&1 | tr '\r\n' '  '); \
                        echo "PROBE answer=$answer"
                    USER opschain
                    ADD repo.tar ./
                    """#,
            ])
            var victim = harness.job(victimRepository, action: "ok")
            victim.buildSecrets = ["victim"]
            var attacker = harness.job(attackerRepository, action: "ok")
            attacker.buildSecrets = ["attacker"]
            let victimRef = AttemptRef(stepId: victim.stepId, attempt: 1)
            try await harness.publish(victim)
            let deadline = ContinuousClock.now + .seconds(120)
            while !(await harness.logLines(for: victimRef).contains { $0.text.contains("victim \(marker) holds its secrets") }) {
                guard ContinuousClock.now < deadline else { throw TestSetupError("the victim's build never reached its RUN") }
            }
            let attack = try await harness.run(attacker, timeout: .seconds(120))
            #expect(attack.status == .success, "\(attack.error ?? "")")
            let answer = await harness.logLines(for: attack.ref).map(\.text).first { $0.hasPrefix("build: PROBE answer=") } ?? ""
            #expect(!answer.contains(victimValue), "the attacker's build read the victim's secret: \(answer)")
            #expect(!answer.contains(" 200 ") && answer.contains("PROBE answer="), "\(answer)")
            let victimOutcome = try await harness.outcome(for: victimRef, timeout: .seconds(120))
            #expect(victimOutcome.status == .success, "\(victimOutcome.error ?? "")")
            #expect(try await harness.leftoverContainers().isEmpty)
            await harness.stop()
        }

        /// A secrets container a dead worker left behind (labelled like its step containers)
        /// is removed by the next worker on the host.
        @Test(.timeLimit(.minutes(2))) func aDeadWorkersSecretsContainerIsReaped() async throws {
            let dead = try runProgram("/bin/sh", ["-c", "/bin/true & echo $!"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            let engine = try DockerEngine()
            let labels = [
                ContainerLabels.host: ProcessInfo.processInfo.hostName, ContainerLabels.pid: dead, ContainerLabels.worker: "dead-worker",
                BuildSecretsSidecar.roleLabel: BuildSecretsSidecar.role,
            ]
            let leftover = try await engine.createContainer([
                "Image": .string(WorkerHarness.runnerImage), "Cmd": ["sleep", "600"], "Labels": .object(labels.mapValues { .string($0) }),
                "HostConfig": ["NetworkMode": "none"],
            ])
            let harness = try await WorkerHarness()
            let deadline = ContinuousClock.now + .seconds(20)
            var present = true
            while present, ContinuousClock.now < deadline {
                present = (try? await engine.inspectContainer(leftover)) != nil
                if present { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(!present, "the dead worker's secrets container is still there")
            try? await engine.remove(leftover)
            await harness.stop()
        }
    }
}
