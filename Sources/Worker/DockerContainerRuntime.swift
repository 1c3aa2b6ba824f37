import AMQP
import Foundation
import Protocol

/// Step containers through the Docker Engine API.
public struct DockerContainerRuntime: ContainerRuntime {
    public static let workDirectory = "/opt/opschain"
    public static let resultPath = "/opt/opschain/.opschain/step_result.json"

    private let engine: DockerEngine
    /// Capabilities kept after dropping all: what a root step needs to own and write its files.
    private let capabilities: [String]

    public init(engine: DockerEngine, capabilities: [String] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID"]) {
        self.engine = engine
        self.capabilities = capabilities
    }

    /// The create body: the action as the command, no network by default, limits, no new
    /// privileges, every capability dropped but a few, nothing of the host mounted.
    func createBody(_ run: ContainerRun) -> JSON {
        let hostConfig: JSON = [
            "NetworkMode": run.network ? "default" : "none",
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
        ]
        return [
            "Image": .string(run.image),
            "Cmd": ["opschain-action", .string(run.action)],
            "WorkingDir": .string(Self.workDirectory),
            "NetworkDisabled": .bool(!run.network),
            "Labels": .object(run.labels.mapValues { .string($0) }),
            "HostConfig": hostConfig,
        ]
    }

    public func run(
        _ run: ContainerRun, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, String) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        let container: String
        do {
            container = try await engine.createContainer(createBody(run))
        } catch {
            throw StepFailure("cannot create the step container: \(error)")
        }
        do {
            let result = try await runCreated(container, run, cancellation: cancellation, started: started, output: output)
            try? await engine.remove(container)
            return result
        } catch {
            try? await engine.remove(container)
            throw error
        }
    }

    private func runCreated(
        _ container: String, _ run: ContainerRun, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, String) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        let engine = engine
        let timedOut = LockedValue(false)
        cancellation.onCancel {
            Task { try? await engine.kill(container) }
        }
        if cancellation.isCancelled { return ContainerResult(exitCode: nil, timedOut: false, cancelled: true, stepResult: nil) }
        do {
            let archive = Tar.archive([.directory(".opschain"), .file(".opschain/step_context.json", run.stepContext, mode: 0o644)])
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
            reader.cancel()
            throw StepFailure("lost track of the step container: \(error)")
        }
        timer.cancel()
        await reader.value
        var stepResult: Data?
        if let archive = try? await engine.getArchive(container, path: Self.resultPath) {
            do {
                stepResult = try Tar.extract("step_result.json", from: archive)
            } catch {
                throw StepFailure("cannot read step_result.json out of the container: \(error)")
            }
        }
        return ContainerResult(exitCode: exitCode, timedOut: timedOut.value, cancelled: cancellation.isCancelled, stepResult: stepResult)
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
