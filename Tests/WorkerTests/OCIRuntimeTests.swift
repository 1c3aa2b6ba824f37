import Foundation
import Protocol
import TestSupport
import Synchronization
import Testing
@testable import Worker

#if canImport(Glibc)
    import Glibc
#endif

/// The oci runtime's own parts and its bad input: hostile layers, runc missing or failing, an
/// image without its USER, a full layer cache. Each ends in a clear error, never a hang.
@Suite(.serialized) struct OCIRuntimeTests {
    static let runnerImage = "stepfleet/runner:\(StepFleetVersion.current)"
    /// One layer cache for the suite: the runner image is unpacked once.
    static let sharedWork = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-oci-tests-\(getpid())").path

    // MARK: Layers

    /// A tar entry made by hand (types the build-context writer does not make).
    static func entry(_ name: String, type: Character = "0", link: String = "", contents: Data = Data(), mode: Int = 0o644) -> Data {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, _ offset: Int, _ width: Int) {
            let bytes = Array(text.utf8.prefix(width))
            block.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
        func octal(_ value: Int, _ offset: Int, _ width: Int) {
            let text = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - text.count)) + text, offset, width - 1)
        }
        put(name, 0, 100)
        octal(mode, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(contents.count, 124, 12)
        octal(0, 136, 12)
        block.replaceSubrange(148..<156, with: Array(repeating: UInt8(ascii: " "), count: 8))
        block[156] = UInt8(ascii: type.unicodeScalars.first!)
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        let sum = block.reduce(0) { $0 + Int($1) }
        let text = String(sum, radix: 8)
        put(String(repeating: "0", count: max(0, 6 - text.count)) + text, 148, 6)
        block[154] = 0
        var data = Data(block) + contents
        data.append(Data(count: (512 - contents.count % 512) % 512))
        return data
    }

    static func unpack(_ entries: [Data]) throws -> String {
        let archive = entries.reduce(Data(), +) + Data(count: 1024)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("layer-\(UUID().uuidString).tar").path
        try archive.write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let destination = FileManager.default.temporaryDirectory.appendingPathComponent("layer-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        let descriptor = open(file, O_RDONLY)
        defer { close(descriptor) }
        var unpacker = OCILayerUnpacker(source: descriptor, offset: 0, size: Int64(archive.count), destination: destination)
        do {
            try unpacker.unpack()
        } catch {
            try? FileManager.default.removeItem(atPath: destination)
            throw error
        }
        return destination
    }

    @Test(.timeLimit(.minutes(1))) func aLayerUnpacksWithItsLinksAndWhiteouts() throws {
        let root = try Self.unpack([
            Self.entry("etc/", type: "5", mode: 0o755),
            Self.entry("etc/motd", contents: Data("hello".utf8)),
            Self.entry("etc/motd.link", type: "2", link: "/etc/motd"),
            Self.entry("etc/motd.hard", type: "1", link: "etc/motd"),
            Self.entry("etc/.wh.gone"),
            Self.entry("var/.wh..wh..opq"),
            Self.entry("bin/tool", contents: Data("#!/bin/sh\n".utf8), mode: 0o4755),
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(FileManager.default.contents(atPath: root + "/etc/motd") == Data("hello".utf8))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/etc/motd.link") == "/etc/motd")
        var info = stat()
        #expect(lstat(root + "/etc/motd.hard", &info) == 0 && info.st_nlink == 2)
        #expect(lstat(root + "/etc/gone", &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR && info.st_rdev == 0, "a whiteout is a 0:0 device")
        var value = [UInt8](repeating: 0, count: 4)
        #expect(OCIExtendedAttributes.get(root + "/var", "trusted.overlay.opaque", &value, 4) == 1 && value[0] == UInt8(ascii: "y"), "an opaque directory")
        #expect(lstat(root + "/bin/tool", &info) == 0 && info.st_mode & 0o7777 == 0o4755)
    }

    @Test(.timeLimit(.minutes(1)), arguments: [
        ("an absolute name", [entry("/etc/evil", contents: Data("x".utf8))], "absolute"),
        ("a name with ..", [entry("a/../../evil", contents: Data("x".utf8))], ".."),
        ("a symbolic link to walk through", [entry("a", type: "2", link: "/tmp"), entry("a/evil", contents: Data("x".utf8))], "symbolic link"),
        ("a hard link out of the layer", [entry("evil", type: "1", link: "../../etc/passwd")], ".."),
        ("a truncated layer", [entry("big", contents: Data(count: 4096)).prefix(1024)], "truncated"),
    ])
    func aHostileLayerIsRefused(_ what: String, _ entries: [Data], _ reason: String) throws {
        do {
            let root = try Self.unpack(entries)
            try? FileManager.default.removeItem(atPath: root)
            Issue.record("\(what) was unpacked")
        } catch {
            #expect("\(error)".contains(reason), "\(what): \(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/evil"))
    }

    // MARK: The config

    @Test(.timeLimit(.minutes(1))) func theBundleGivesDockersIsolation() throws {
        let bundle = OCIBundle(
            args: ["opschain-action", "noop"], env: ["PATH=/bin"], cwd: "/opt/opschain", user: ContainerUser(uid: 1000, gid: 1000), capabilities: [],
            limits: ContainerLimits(memoryBytes: 256 << 20, pids: 256, cpus: 0.5, diskBytes: 1 << 30), hostname: "h", cgroupsPath: "/stepfleet/sf1-a",
            cgroupV2: false)
        let config = bundle.config()
        #expect(config["process"]?["noNewPrivileges"] == true)
        #expect(config["process"]?["capabilities"]?["bounding"] == [])
        #expect(config["linux"]?["resources"]?["pids"]?["limit"]?.intValue == 256)
        #expect(config["linux"]?["resources"]?["cpu"]?["quota"]?.intValue == 50_000)
        #expect(config["linux"]?["maskedPaths"]?.arrayValue?.contains("/proc/kcore") == true)
        let refused = config["linux"]?["seccomp"]?["syscalls"]?.arrayValue?.first?["names"]?.arrayValue ?? []
        for call in ["mount", "keyctl", "bpf", "kexec_load", "unshare", "setns", "ptrace"] { #expect(refused.contains(.string(call)), "\(call)") }
        #expect(config["linux"]?["namespaces"]?.arrayValue?.contains(["type": "network"]) == true, "a network namespace of its own: only lo")
    }

    // MARK: Bad input

    static func run(_ runtime: OCIContainerRuntime, user: String = "opschain", action: String = "noop") async throws(StepFailure) -> ContainerResult {
        let run = ContainerRun(
            image: runnerImage, action: action, stepContext: Data("{}".utf8), timeout: .seconds(30), labels: [:], limits: ContainerLimits(),
            imageUser: user)
        return try await runtime.run(run, cancellation: StepCancellation(), started: {}, output: { _, _ in })
    }

    @Test(.timeLimit(.minutes(1))) func runcMissingOrBrokenIsRefusedAtStart() async throws {
        #expect(await OCIRunc.refusal(executable: nil)?.contains("runc is not installed") == true)
        #expect(await OCIRunc.refusal(executable: "/bin/false")?.contains("--version failed") == true)
        #expect(await OCIRunc.refusal(executable: OCIRunc.locate()) == nil, "runc works on this machine")
    }

    @Test(.timeLimit(.minutes(3))) func aFailingRuncIsAStepError() async throws {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("broken-runc-\(UUID().uuidString.prefix(6))").path
        try "#!/bin/sh\necho 'runc: broken' >&2\nexit 1\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        defer { try? FileManager.default.removeItem(atPath: script) }
        let runtime = OCIContainerRuntime(engine: try DockerEngine(), workDirectory: Self.sharedWork, runc: script)
        do {
            _ = try await Self.run(runtime)
            Issue.record("a step ran with a broken runc")
        } catch {
            #expect(error.description.hasPrefix("runc could not start the step container (exit 1)"), "\(error)")
        }
        await runtime.waitForCleanUps()
        OCILeftovers.expectNone(in: Self.sharedWork)
    }

    @Test(.timeLimit(.minutes(3))) func anImageWithoutItsUserIsAStepError() async throws {
        let runtime = OCIContainerRuntime(engine: try DockerEngine(), workDirectory: Self.sharedWork, runc: OCIRunc.locate() ?? "/usr/sbin/runc")
        do {
            _ = try await Self.run(runtime, user: "nobody-here")
            Issue.record("a step ran as a user the image does not have")
        } catch {
            #expect(error.description == "cannot run the step: the image's USER \"nobody-here\" is not a user in the image's /etc/passwd", "\(error)")
        }
        await runtime.waitForCleanUps()
        OCILeftovers.expectNone(in: Self.sharedWork)
    }

    @Test(.timeLimit(.minutes(3))) func aFullLayerCacheIsAStepError() async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-oci-full-\(UUID().uuidString.prefix(6))").path
        let layers = work + "/oci/layers"
        try FileManager.default.createDirectory(atPath: layers, withIntermediateDirectories: true)
        #expect("size=4m".withCString { mount("tmpfs", layers, "tmpfs", 0, $0) } == 0, "mounting a small disk: \(String(cString: strerror(errno)))")
        defer {
            umount2(layers, Int32(MNT_DETACH))
            try? FileManager.default.removeItem(atPath: work)
        }
        let runtime = OCIContainerRuntime(engine: try DockerEngine(), workDirectory: work, runc: OCIRunc.locate() ?? "/usr/sbin/runc", layerDirectory: layers)
        do {
            _ = try await Self.run(runtime)
            Issue.record("a step ran with a full layer cache")
        } catch {
            #expect(error.description.contains("disk is full"), "\(error)")
        }
        await runtime.waitForCleanUps()
        OCILeftovers.expectNone(in: work)
    }

    /// A cancel that comes as the step says it starts (the worker's "run started" on its way)
    /// stops it, in a container started for it and in a warm one: the step ends cancelled at
    /// once, its action never runs, and nothing is left. (The oci runtime's counterpart of
    /// `aCancelArrivingWhileTheContainerStartsStillStopsIt`, which holds the engine's start.)
    @Test(.timeLimit(.minutes(3)), arguments: [false, true]) func aCancelAsTheContainerStartsStopsIt(warm: Bool) async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-oci-cancel-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: work) }
        let runtime = OCIContainerRuntime(
            engine: try DockerEngine(), workDirectory: work, runc: OCIRunc.locate() ?? "/usr/sbin/runc", warmContainers: warm ? 1 : 0)
        // A first step leaves a warm container for the second.
        if warm { _ = try await Self.run(runtime, action: "--help") }
        let steps = work + "/oci/steps"
        let cancellation = StepCancellation()
        let said = Mutex<[String]>([])
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await runtime.run(
            ContainerRun(image: Self.runnerImage, action: "sleepy", stepContext: Data("{}".utf8), timeout: .seconds(60), labels: [:], limits: ContainerLimits(), imageUser: "opschain"),
            cancellation: cancellation,
            started: {
                // The step's file system gets an action that would run for a minute; the cancel comes now.
                for name in (try? FileManager.default.contentsOfDirectory(atPath: steps)) ?? [] {
                    try? Data("actions:\n  sleepy: { run: 'echo SLEEPING; sleep 60' }\n".utf8)
                        .write(to: URL(fileURLWithPath: "\(steps)/\(name)/rootfs/opt/opschain/.opschain/actions.yml"))
                }
                cancellation.cancel()
            },
            output: { _, data in said.withLock { $0.append(String(decoding: data, as: UTF8.self)) } })
        #expect(result.cancelled)
        #expect(clock.now - start < .seconds(20), "the cancelled step ran on: \(clock.now - start)")
        #expect(!said.withLock { $0.joined() }.contains("SLEEPING"))
        #expect(said.withLock { $0.joined() }.contains("run: in a container started before the step") == warm)
        await runtime.waitForCleanUps()
        OCILeftovers.expectNone(in: work)
    }

    /// Two workers of one process (tests run several) never take each other for dead; a
    /// registration with this process's pid but another start is a dead worker's (a pid
    /// reused after a reboot), and what it left is removed.
    @Test(.timeLimit(.minutes(1))) func workersOfOneProcessDoNotReapEachOther() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-oci-reg-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let layers = base + "/layers"
        let runc = OCIRunc.locate() ?? "/usr/sbin/runc"
        let first = OCIContainerRuntime(engine: try DockerEngine(), workDirectory: base + "/a", runc: runc, layerDirectory: layers)
        let second = OCIContainerRuntime(engine: try DockerEngine(), workDirectory: base + "/b", runc: runc, layerDirectory: layers)
        let mine = base + "/a/oci/steps/sf\(getpid())-0000aaaa"
        try FileManager.default.createDirectory(atPath: mine, withIntermediateDirectories: true)
        await first.reapLeftovers(logger: WorkerHarness.logger) { _ in true }
        await second.reapLeftovers(logger: WorkerHarness.logger) { _ in true }
        await first.reapLeftovers(logger: WorkerHarness.logger) { _ in true }
        #expect(FileManager.default.fileExists(atPath: mine), "a live worker of this process had its step removed")

        let dead = base + "/dead/oci/steps/sf\(getpid())-0000dddd"
        try FileManager.default.createDirectory(atPath: dead, withIntermediateDirectories: true)
        let registration = layers + "/.worker-\(getpid())-\(OCIContainerRuntime.directoryTag(base + "/dead/oci"))"
        try Data((base + "/dead/oci\nanother-boot 1").utf8).write(to: URL(fileURLWithPath: registration))
        await second.reapLeftovers(logger: WorkerHarness.logger) { _ in true }
        #expect(!FileManager.default.fileExists(atPath: dead), "a dead worker's step (its pid reused) is removed")
        #expect(!FileManager.default.fileExists(atPath: registration))
        #expect(FileManager.default.fileExists(atPath: mine))
    }

    @Test(.timeLimit(.minutes(3))) func aStepRunsAndLeavesNothing() async throws {
        let runtime = OCIContainerRuntime(engine: try DockerEngine(), workDirectory: Self.sharedWork, runc: OCIRunc.locate() ?? "/usr/sbin/runc")
        let result = try await Self.run(runtime, action: "--help")
        #expect(result.exitCode != nil)
        await runtime.waitForCleanUps()
        OCILeftovers.expectNone(in: Self.sharedWork)
    }
}
