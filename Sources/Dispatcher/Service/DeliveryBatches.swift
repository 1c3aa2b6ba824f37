import AMQP
import Synchronization

/// Deliveries gathered while the previous batch was being handled: `next` returns all that
/// wait (at most `limit`), or waits for the first. What lets the dispatcher apply a burst of
/// worker events in one store transaction instead of one each.
final class DeliveryBatches: Sendable {
    private struct State {
        var waiting: [AMQPDelivery] = []
        var reader: CheckedContinuation<Void, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    /// Adds a delivery (the subscription's reader calls this).
    func append(_ delivery: AMQPDelivery) {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.waiting.append(delivery)
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume()
    }

    /// No more deliveries will come: `next` returns what is left, then empty batches.
    func finish() {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume()
    }

    /// The deliveries waiting, oldest first, at most `limit`; empty only once finished.
    func next(limit: Int) async -> [AMQPDelivery] {
        while true {
            let taken = state.withLock { state -> [AMQPDelivery]? in
                guard !state.waiting.isEmpty else { return state.finished ? [] : nil }
                let batch = Array(state.waiting.prefix(limit))
                state.waiting.removeFirst(batch.count)
                return batch
            }
            if let taken { return taken }
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Bool in
                    if !state.waiting.isEmpty || state.finished { return true }
                    state.reader = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }
}
