import AMQP
import Foundation
import Protocol

/// Step containers through the Docker Engine API.
public struct DockerContainerRuntime: ContainerRuntime {
    public static let workDirectory = "/opt/opschain"
    public static let resultPath = "/opt/opschain/.opschain/step_result.json"

    private let engine: DockerEngine
    /// Capabilities a step keeps when its image runs it as root: what root needs to own and
    /// write its files. A step of a non-root image keeps none.
    private let rootCapabilities: [String]
    /// Image users already resolved, by image reference and `USER` text.
    private let users = LockedValue<[String: ContainerUser]>([:])
    /// Whether the engine takes `StorageOpt size` (overlay2 on xfs with project quotas only):
    /// tried on the first create, remembered after the engine's first refusal.
    private let storageQuota = LockedValue(true)
    /// How often a step's written bytes are measured.
    static let diskPollInterval = Duration.seconds(1)

    public init(engine: DockerEngine, rootCapabilities: [String] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID"]) {
        self.engine = engine
        self.rootCapabilities = rootCapabilities
    }

    /// The create body: the action as the command, as the image's user, no network by
    /// default, limits, no new privileges, every capability dropped (but a few for a root
    /// user), nothing of the host mounted.
    func createBody(_ run: ContainerRun, asRoot: Bool, storageQuota: Bool = false) -> JSON {
        let capabilities = asRoot ? rootCapabilities : []
        var hostConfig: [String: JSON] = [
            "NetworkMode": .string(run.network ?? "none"),
            "Memory": JSON(run.limits.memoryBytes),
            "MemorySwap": JSON(run.limits.memoryBytes),
            "PidsLimit": JSON(run.limits.pids),
            "NanoCpus": JSON(Int(run.limits.cpus * 1_000_000_000)),
            "SecurityOpt": ["no-new-privileges"],
            "CapDrop": ["ALL"],
            "CapAdd": .array(capabilities.map { .string($0) }),
            "Privileged": false,
            "Binds": [],
            "LogConfig": ["Type": "json-file", "Config": ["max-size": "50m"]],
            // No single file past the disk limit (RLIMIT_FSIZE, in bytes); the total is
            // watched while the step runs, or enforced by the engine where it can.
            "Ulimits": [["Name": "fsize", "Soft": JSON(run.limits.diskBytes), "Hard": JSON(run.limits.diskBytes)]],
        ]
        if storageQuota { hostConfig["StorageOpt"] = ["size": .string("\(run.limits.diskBytes)")] }
        return [
            "Image": .string(run.image),
            "Cmd": ["opschain-action", .string(run.action)],
            "WorkingDir": .string(Self.workDirectory),
            "NetworkDisabled": .bool(run.network == nil),
            "Labels": .object(run.labels.mapValues { .string($0) }),
            "HostConfig": .object(hostConfig),
        ]
    }

    public func run(
        _ run: ContainerRun, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, String) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        let userSpec = run.imageUser
        let container: String
        do {
            container = try await create(run, asRoot: ContainerUser.namesRoot(userSpec))
        } catch {
            throw StepFailure("cannot create the step container: \(error)")
        }
        do {
            let user = try await user(userSpec, of: run.image, container: container)
            output(.system, "run: as user \(user)\(userSpec.isEmpty ? "" : " (image USER \(userSpec))"), \(user.isRoot ? "capabilities " + rootCapabilities.joined(separator: ", ") : "no capabilities")")
            let result = try await runCreated(container, run, user: user, cancellation: cancellation, started: started, output: output)
            try? await engine.remove(container)
            return result
        } catch {
            try? await engine.remove(container)
            throw error
        }
    }

    /// Creates the container, with a storage quota when the engine takes one.
    private func create(_ run: ContainerRun, asRoot: Bool) async throws(DockerError) -> String {
        if storageQuota.value {
            do {
                return try await engine.createContainer(createBody(run, asRoot: asRoot, storageQuota: true))
            } catch where error.message.contains("storage-opt") {
                storageQuota.value = false
            }
        }
        return try await engine.createContainer(createBody(run, asRoot: asRoot))
    }

    /// The image's `USER` as numbers, read from the created (not started) container's account
    /// files when it is a name; remembered per image.
    private func user(_ spec: String, of image: String, container: String) async throws(StepFailure) -> ContainerUser {
        do {
            if ContainerUser.isNumeric(spec) { return try ContainerUser.resolve(spec, passwd: nil, group: nil) }
            let key = image + "\u{0}" + spec
            if let known = users.value[key] { return known }
            let user = try ContainerUser.resolve(spec, passwd: try await file("/etc/passwd", in: container), group: try await file("/etc/group", in: container))
            users.withLock { known in
                if known.count >= 1000 { known.removeAll() }  // images come and go; the map stays small
                known[key] = user
            }
            return user
        } catch let error as ContainerUser.Unresolved {
            throw StepFailure("cannot run the step: \(error)")
        } catch {
            throw StepFailure("cannot read the step image's accounts: \(error)")
        }
    }

    private func file(_ path: String, in container: String) async throws -> String? {
        guard let archive = try await engine.getArchive(container, path: path) else { return nil }
        return try Tar.extract((path as NSString).lastPathComponent, from: archive).map { String(decoding: $0, as: UTF8.self) }
    }

    private func runCreated(
        _ container: String, _ run: ContainerRun, user: ContainerUser, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, String) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        let engine = engine
        let timedOut = LockedValue(false)
        cancellation.onCancel {
            Task { try? await engine.kill(container) }
        }
        if cancellation.isCancelled { return ContainerResult(exitCode: nil, timedOut: false, cancelled: true, stepResult: nil) }
        do {
            // Owned by the step's user, who writes step_result.json next to it.
            let archive = Tar.archive([
                .directory(".opschain", uid: user.uid, gid: user.gid),
                .file(".opschain/step_context.json", run.stepContext, mode: 0o644, uid: user.uid, gid: user.gid),
            ])
            try await engine.putArchive(container, path: Self.workDirectory, archive: archive)
            await started()
            try await engine.start(container)
        } catch {
            throw StepFailure("cannot start the step container: \(error)")
        }
        // A cancel that arrived while the container was starting: its kill may have found
        // nothing running yet, so kill again now that it runs.
        if cancellation.isCancelled { try? await engine.kill(container) }

        let timer = Task {
            try await Task.sleep(for: run.timeout)
            timedOut.value = true
            try? await engine.kill(container)
        }
        let diskExceeded = LockedValue(false)
        let limit = run.limits.diskBytes
        let diskWatch = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.diskPollInterval)
                if let written = try? await engine.writtenBytes(container), written > limit {
                    diskExceeded.value = true
                    try? await engine.kill(container)
                    return
                }
            }
        }
        let reader = Task {
            var splitter = LineSplitter()
            do {
                for try await (stream, data) in try await engine.logs(container) {
                    for line in splitter.feed(stream, data) { output(stream, line) }
                }
            } catch {
                output(.system, "log stream ended early: \(error)")
            }
            for (stream, line) in splitter.flush() { output(stream, line) }
        }
        let exitCode: Int
        do {
            exitCode = try await engine.wait(container)
        } catch {
            timer.cancel()
            diskWatch.cancel()
            reader.cancel()
            throw StepFailure("lost track of the step container: \(error)")
        }
        timer.cancel()
        diskWatch.cancel()
        // A file stopped at the limit by RLIMIT_FSIZE leaves the layer at the limit or past it.
        if !diskExceeded.value, let written = try? await engine.writtenBytes(container), written >= limit { diskExceeded.value = true }
        await reader.value
        let outOfMemory = (try? await engine.inspectContainer(container))?["State"]?["OOMKilled"]?.boolValue ?? false
        var stepResult: Data?
        if let archive = try? await engine.getArchive(container, path: Self.resultPath) {
            do {
                stepResult = try Tar.extract("step_result.json", from: archive)
            } catch {
                throw StepFailure("cannot read step_result.json out of the container: \(error)")
            }
        }
        return ContainerResult(
            exitCode: exitCode, timedOut: timedOut.value, cancelled: cancellation.isCancelled, stepResult: stepResult, outOfMemory: outOfMemory,
            diskExceeded: diskExceeded.value)
    }
}

/// Turns output frames into lines per stream, keeping partial lines until they end.
struct LineSplitter {
    private var partial: [LogBatch.Stream: Data] = [:]
    /// Lines longer than this are cut, so one runaway line cannot fill memory.
    static let maximumLine = 16 * 1024

    mutating func feed(_ stream: LogBatch.Stream, _ data: Data) -> [String] {
        var buffer = partial[stream, default: Data()]
        buffer.append(data)
        var lines: [String] = []
        while let newline = buffer.firstIndex(of: 0x0A) {
            lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
            buffer = Data(buffer[(newline + 1)...])
        }
        if buffer.count > Self.maximumLine {
            lines.append(String(decoding: buffer, as: UTF8.self))
            buffer = Data()
        }
        partial[stream] = buffer
        return lines
    }

    mutating func flush() -> [(LogBatch.Stream, String)] {
        defer { partial.removeAll() }
        return partial.filter { !$0.value.isEmpty }.map { ($0.key, String(decoding: $0.value, as: UTF8.self)) }
    }
}
