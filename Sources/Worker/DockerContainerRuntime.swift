import Synchronization
import Foundation
import Protocol

/// Step containers through the Docker Engine API.
public final class DockerContainerRuntime: ContainerRuntime {
    public static let workDirectory = "/opt/opschain"
    public static let resultPath = "/opt/opschain/.opschain/step_result.json"

    private let engine: DockerEngine
    /// Capabilities a step keeps when its image runs it as root: what root needs to own and
    /// write its files. A step of a non-root image keeps none.
    private let rootCapabilities: [String]
    /// Image users already resolved, by image reference and `USER` text.
    private let users = Mutex<[String: ContainerUser]>([:])
    /// Whether the engine takes `StorageOpt size` (overlay2 on xfs with project quotas only):
    /// tried on the first create, remembered after the engine's first refusal.
    private let storageQuota = Mutex(true)
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
        output: @escaping @Sendable (LogBatch.Stream, Data) -> Void
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
            output(.system, Data("run: as user \(user)\(userSpec.isEmpty ? "" : " (image USER \(userSpec))"), \(user.isRoot ? "capabilities " + rootCapabilities.joined(separator: ", ") : "no capabilities")\n".utf8))
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
        if storageQuota.withLock({ $0 }) {
            do {
                return try await engine.createContainer(createBody(run, asRoot: asRoot, storageQuota: true))
            } catch where error.message.contains("storage-opt") {
                storageQuota.withLock { $0 = false }
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
            if let known = users.withLock({ $0[key] }) { return known }
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
        output: @escaping @Sendable (LogBatch.Stream, Data) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        let engine = engine
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

        // Each watch answers whether it killed the container: true once it has fired.
        let timer = Task { () -> Bool in
            do { try await Task.sleep(for: run.timeout) } catch { return false }
            try? await engine.kill(container)
            return true
        }
        let limit = run.limits.diskBytes
        let diskWatch = Task { () -> Bool in
            while !Task.isCancelled {
                do { try await Task.sleep(for: Self.diskPollInterval) } catch { return false }
                if let written = try? await engine.writtenBytes(container), written > limit {
                    try? await engine.kill(container)
                    return true
                }
            }
            return false
        }
        let reader = Task { () -> LogCatchUp in
            var catchUp = LogCatchUp()
            do {
                for try await (stream, data) in try await engine.logs(container) { output(stream, catchUp.followed(stream, data)) }
            } catch {
                // The re-read after the exit brings what the stream did not.
                output(.system, Data("log stream ended early (the rest is read after the step): \(error)\n".utf8))
            }
            return catchUp
        }
        let exitCode: Int
        var exited = ContinuousClock.now
        do {
            exitCode = try await engine.wait(container)
            exited = ContinuousClock.now
        } catch {
            timer.cancel()
            diskWatch.cancel()
            reader.cancel()
            throw StepFailure("lost track of the step container: \(error)")
        }
        timer.cancel()
        diskWatch.cancel()
        let timedOut = await timer.value
        var diskExceeded = await diskWatch.value
        // A file stopped at the limit by RLIMIT_FSIZE leaves the layer at the limit or past it.
        if !diskExceeded, let written = try? await engine.writtenBytes(container), written >= limit { diskExceeded = true }
        await readRest(container, after: await reader.value, output: output)
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
            exitCode: exitCode, timedOut: timedOut, cancelled: cancellation.isCancelled, stepResult: stepResult, outOfMemory: outOfMemory,
            diskExceeded: diskExceeded, exitedAt: exited)
    }

    /// The output the followed stream did not deliver (see `LogCatchUp`), read once the
    /// container has exited.
    private func readRest(_ container: String, after followed: LogCatchUp, output: @escaping @Sendable (LogBatch.Stream, Data) -> Void) async {
        var catchUp = followed
        let since = catchUp.rereading()
        do {
            for try await (stream, data) in try await engine.logs(container, follow: false, since: since) {
                if let new = catchUp.reread(stream, data) { output(stream, new) }
            }
        } catch {
            output(.system, Data("cannot read the end of the step's output: \(error)\n".utf8))
        }
    }
}

