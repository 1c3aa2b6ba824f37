import Synchronization
import Foundation
import Protocol

/// One step to run in a container of its own.
public struct ContainerRun: Sendable {
    public var image: String
    public var action: String
    /// `step_context.json`, copied to `/opt/opschain/.opschain/` before the start.
    public var stepContext: Data
    public var timeout: Duration
    /// Labels that identify the container (worker, step, attempt).
    public var labels: [String: String]
    public var limits: ContainerLimits
    /// The engine network the step runs on; nil for none (only `lo`), the default.
    public var network: String?
    /// The image's `USER` (`BuiltImage.user`): the step runs as it.
    public var imageUser: String

    public init(
        image: String, action: String, stepContext: Data, timeout: Duration, labels: [String: String], limits: ContainerLimits, network: String? = nil,
        imageUser: String = ""
    ) {
        self.imageUser = imageUser
        self.image = image
        self.action = action
        self.stepContext = stepContext
        self.timeout = timeout
        self.labels = labels
        self.limits = limits
        self.network = network
    }
}

/// Resource limits of a step container.
public struct ContainerLimits: Sendable, Hashable {
    public var memoryBytes: Int
    public var pids: Int
    public var cpus: Double
    /// The most a step may write into its container (its own layer); past it the container is
    /// killed. No single file may grow past it either.
    public var diskBytes: Int

    public init(memoryBytes: Int = 1 << 30, pids: Int = 1024, cpus: Double = 1.0, diskBytes: Int = 1 << 30) {
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.cpus = cpus
        self.diskBytes = diskBytes
    }
}

/// How a container run ended.
public struct ContainerResult: Sendable {
    /// nil when the container never started (cancelled first).
    public var exitCode: Int?
    public var timedOut: Bool
    public var cancelled: Bool
    /// `/opt/opschain/.opschain/step_result.json`, if the step wrote one.
    public var stepResult: Data?
    /// A process of the container passed its memory limit and the kernel killed it.
    public var outOfMemory = false
    /// The container wrote more than its disk limit and was killed (or a file hit the limit).
    public var diskExceeded = false
    /// When the container exited (what follows is reading its output and result).
    public var exitedAt: ContinuousClock.Instant?
}

/// Cancels a step from another task: before its container starts, or by killing it.
public final class StepCancellation: Sendable {
    private struct State: Sendable {
        var cancelled = false
        var reason: Reason = .cancelled
        var handler: (@Sendable () -> Void)?
    }

    /// Why a step was stopped.
    public enum Reason: Sendable, Equatable {
        /// Cancelled through the dispatcher: the step ends `cancelled`.
        case cancelled
        /// Killed by the worker itself (shutdown past its grace period): the step ends in error.
        case killed(String)
    }

    private let state = Mutex(State())

    public init() {}

    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    public var reason: Reason { state.withLock { $0.reason } }

    /// Marks the step cancelled and runs the kill handler, if a container is there to kill.
    public func cancel(_ reason: Reason = .cancelled) {
        let handler = state.withLock { state -> (@Sendable () -> Void)? in
            if !state.cancelled { state.reason = reason }
            state.cancelled = true
            return state.handler
        }
        handler?()
    }

    /// Registers how to kill the running container; runs it at once when already cancelled.
    func onCancel(_ handler: @escaping @Sendable () -> Void) {
        let cancelled = state.withLock { state -> Bool in
            state.handler = handler
            return state.cancelled
        }
        if cancelled { handler() }
    }
}

/// Runs a step's container. The Docker engine is the first implementation; an OCI runtime
/// over the image's layers can be another.
public protocol ContainerRuntime: Sendable {
    /// Runs the step and removes its container, whatever happens. `started` is called once
    /// the container runs; `output` gets every byte it writes, in order per stream, as it comes
    /// (lines are made by the log, which also caps them): nothing written is left out.
    func run(
        _ run: ContainerRun, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, Data) -> Void
    ) async throws(StepFailure) -> ContainerResult
}
