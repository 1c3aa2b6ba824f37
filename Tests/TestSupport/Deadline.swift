import Foundation
import Synchronization

/// Waits for `operation` at most `limit`, and no longer than the calling task lives.
///
/// A test's `.timeLimit` only cancels its task: a wait that does not heed cancellation (a
/// service's `shutdown()`, a task's `value`, a blocking call) would still hold the test, and
/// the whole run, for ever. Past the deadline (or on cancellation) this throws and leaves the
/// operation running, cancelled, on its own task: the test fails with `what` in its message.
public func within<T: Sendable>(
    _ limit: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let once = ResumeOnce<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            once.set(continuation)
            let work = Task {
                do { once.resume(.success(try await operation())) } catch { once.resume(.failure(error)) }
            }
            once.work = work
            Task {
                try? await Task.sleep(for: limit)
                if once.resume(.failure(TestSetupError("\(what) did not finish within \(limit)"))) { work.cancel() }
            }
        }
    } onCancel: {
        once.resume(.failure(TestSetupError("cancelled (the test's time limit?) while waiting for \(what)")))
        once.cancelWork()
    }
}

/// The one resumption of `within`'s continuation, whichever comes first.
private final class ResumeOnce<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var done = false
        var work: Task<Void, Never>?
    }
    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLock { state in
            if let early = state.early {
                state.early = nil
                return early
            }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    var work: Task<Void, Never>? {
        get { state.withLock { $0.work } }
        set { state.withLock { $0.work = newValue } }
    }

    func cancelWork() { state.withLock { $0.work }?.cancel() }

    /// True if this call was the one that resumed.
    @discardableResult
    func resume(_ result: Result<T, any Error>) -> Bool {
        let continuation: CheckedContinuation<T, any Error>?? = state.withLock { state in
            guard !state.done else { return .none }
            state.done = true
            if let continuation = state.continuation {
                state.continuation = nil
                return .some(continuation)
            }
            state.early = result
            return .some(nil)
        }
        guard case .some(let waiting) = continuation else { return false }
        waiting?.resume(with: result)
        return true
    }
}

/// Polls `condition` every 50 ms until it holds; throws, naming `what`, when `timeout` passes.
public func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws {
    _ = try await waitFor(what, timeout: timeout) { try await condition() ? true : nil }
}

/// Polls `value` every 50 ms until it is not nil and returns it; throws, naming `what`, when
/// `timeout` passes.
public func waitFor<T>(_ what: String, timeout: Duration = .seconds(60), _ value: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let found = try await value() { return found }
        guard ContinuousClock.now < deadline else { throw TestSetupError("waited \(timeout) for \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}
