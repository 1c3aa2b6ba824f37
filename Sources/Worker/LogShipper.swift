import AMQP
import Foundation
import Logging
import Protocol

/// Ships one attempt's log lines in batches (every 200 ms or 200 lines), numbered from 0 with
/// no gaps, each batch confirmed before the next.
final class LogShipper: Sendable {
    private let ref: AttemptRef
    private let worker: String
    private let publisher: EventPublisher
    private let logger: Logger
    private let state = LockedValue(State())
    private let flusher = LockedValue<Task<Void, Never>?>(nil)
    /// The flusher's current pause, cut short by `finish()` so that a step's outcome never
    /// waits for the rest of a 200 ms pause.
    private let pause = LockedValue<Task<Void, any Error>?>(nil)
    /// Secret values replaced by `****` in every line, in every form they take.
    private let secrets = LockedValue(SecretMask())

    private struct State {
        var nextSeq = 0
        var pending: [LogBatch.Line] = []
        var finished = false
    }

    static let batchSize = 200

    init(ref: AttemptRef, worker: String, publisher: EventPublisher, logger: Logger) {
        self.ref = ref
        self.worker = worker
        self.publisher = publisher
        self.logger = logger
        flusher.value = Task { [self] in
            while !state.value.finished {
                let nap = Task { try await Task.sleep(for: .milliseconds(200)) }
                pause.value = nap
                // finish() sets `finished` before it cancels the pause: one of the two sees the other.
                if state.value.finished { nap.cancel() }
                _ = await nap.result
                await flush()
            }
        }
    }

    /// Values that must never appear in the log (build secrets, secret properties); see
    /// `SecretMask` for the forms masked and why very short values are not.
    func mask(_ values: [String]) {
        secrets.withLock { $0.add(values) }
    }

    /// `text` with every masked value replaced.
    func masked(_ text: String) -> String {
        secrets.value.apply(to: text)
    }

    /// Adds a line; never waits.
    func write(_ stream: LogBatch.Stream, _ text: String) {
        let text = masked(text)
        state.withLock { state in
            state.pending.append(LogBatch.Line(seq: state.nextSeq, stream: stream, text: text, at: Clock.epochMilliseconds()))
            state.nextSeq += 1
        }
    }

    /// A line StepFleet writes itself; also logged locally, masked like the step's log.
    func system(_ text: String) {
        let text = masked(text)
        write(.system, text)
        logger.info("\(text)")
    }

    private func flush() async {
        while true {
            let batch = state.withLock { state -> [LogBatch.Line] in
                let lines = Array(state.pending.prefix(Self.batchSize))
                state.pending.removeFirst(lines.count)
                return lines
            }
            guard !batch.isEmpty else { return }
            let logs = LogBatch(ref: ref, worker: worker, lines: batch)
            _ = await publisher.untilConfirmed("logs") { () throws(AMQPError) in try await publisher.logs(logs) }
        }
    }

    /// Sends what is left and stops.
    func finish() async {
        state.withLock { $0.finished = true }
        pause.value?.cancel()
        await flusher.value?.value
        await flush()
    }
}

