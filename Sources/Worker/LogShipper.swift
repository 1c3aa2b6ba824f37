import AMQP
import Synchronization
import Foundation
import Logging
import Protocol

/// Ships one attempt's log lines in batches (every 200 ms or 200 lines), numbered from 0 with
/// no gaps, each batch confirmed before the next. The step's output (build and run) is masked,
/// then held to the worker's log cap and line cap (`LogLimiter`); StepFleet's own lines are
/// masked and always shipped.
final class LogShipper: Sendable {
    private let ref: AttemptRef
    private let worker: String
    private let publisher: EventPublisher
    private let logger: Logger
    private let state = Mutex(State())
    private let flusher = Mutex<Task<Void, Never>?>(nil)
    /// The flusher's current pause, cut short by `finish()` so that a step's outcome never
    /// waits for the rest of a 200 ms pause.
    private let pause = Mutex<Task<Void, any Error>?>(nil)
    /// Secret values replaced by `****` in every line, in every form they take.
    private let secrets = Mutex(SecretMask())
    private let limiter: Mutex<LogLimiter>

    private struct State {
        var nextSeq = 0
        var pending: [LogBatch.Line] = []
        var finished = false
    }

    static let batchSize = 200

    init(ref: AttemptRef, worker: String, publisher: EventPublisher, logger: Logger, logCap: Int = LogLimiter.defaultLogCap) {
        limiter = Mutex(LogLimiter(logCap: logCap))
        self.ref = ref
        self.worker = worker
        self.publisher = publisher
        self.logger = logger
        let loop = Task { [self] in
            while !state.withLock({ $0.finished }) {
                let nap = Task { try await Task.sleep(for: .milliseconds(200)) }
                pause.withLock { $0 = nap }
                // finish() sets `finished` before it cancels the pause: one of the two sees the other.
                if state.withLock({ $0.finished }) { nap.cancel() }
                _ = await nap.result
                await flush()
            }
        }
        flusher.withLock { $0 = loop }
    }

    /// Values that must never appear in the log (build secrets, secret properties); see
    /// `SecretMask` for the forms masked and why very short values are not.
    func mask(_ values: [String]) {
        secrets.withLock { $0.add(values) }
    }

    /// `text` with every masked value replaced.
    func masked(_ text: String) -> String {
        secrets.withLock { $0 }.apply(to: text)
    }

    /// A line of the step's output (the build's); never waits.
    func write(_ stream: LogBatch.Stream, _ text: String) {
        let mask = secrets.withLock { $0 }
        limited { $0.line(stream, text, mask: mask) }
    }

    /// Raw output of the step's container, as it comes; never waits.
    func output(_ stream: LogBatch.Stream, _ data: Data) {
        if stream == .system { return system(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)) }
        let mask = secrets.withLock { $0 }
        limited { $0.feed(stream, data, mask: mask) }
    }

    /// The step's output has ended: its unterminated last lines, and the log cap's marker if
    /// output was cut. Called again, does nothing.
    func endOutput() {
        let mask = secrets.withLock { $0 }
        limited { $0.end(mask: mask) }
    }

    /// Runs `step` on the limiter and appends the lines it lets through; says once, in the
    /// worker's own log, that the log passed its cap.
    private func limited(_ step: (inout LogLimiter) -> [(LogBatch.Stream, String)]) {
        let (lines, newlyCut, cap) = limiter.withLock { limiter -> ([(LogBatch.Stream, String)], Bool, Int) in
            let before = limiter.capPassed
            let lines = step(&limiter)
            return (lines, !before && limiter.capPassed, limiter.logCap)
        }
        for (stream, text) in lines { append(stream, text) }
        if newlyCut {
            logger.warning("the step's log passed its cap of \(LogLimiter.size(cap)); the rest of its output is not shipped (the step runs on)", metadata: ["step": "\(ref)"])
        }
    }

    /// Adds a line that is masked already.
    private func append(_ stream: LogBatch.Stream, _ text: String) {
        state.withLock { state in
            state.pending.append(LogBatch.Line(seq: state.nextSeq, stream: stream, text: text, at: Clock.epochMilliseconds()))
            state.nextSeq += 1
        }
    }

    /// A line StepFleet writes itself; also logged locally, masked like the step's log.
    func system(_ text: String) {
        let text = masked(text)
        append(.system, text)
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
            WorkerMetrics.shipped(batch)
        }
    }

    /// Sends what is left and stops.
    func finish() async {
        endOutput()
        state.withLock { $0.finished = true }
        pause.withLock { $0 }?.cancel()
        await flusher.withLock { $0 }?.value
        await flush()
    }
}

