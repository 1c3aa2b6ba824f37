import AMQP
import Foundation
import Protocol
import Synchronization

/// A step's phase events, published in order, each behind the one before it, by tasks of
/// their own: the step does not wait for each confirm as it goes. `confirmed()` returns once
/// every event sent so far is confirmed — before the container starts (a lost worker from
/// then on means a run that may have had effects) and before the outcome.
final class PhaseEvents: Sendable {
    typealias Publish = @Sendable () async throws(AMQPError) -> Void
    /// Publishes one event until the broker confirms it (`EventPublisher.untilConfirmed`).
    private let untilConfirmed: @Sendable (@escaping Publish) async -> Void
    /// One task per event, each waiting for the one before it (a step has four).
    private let publishes = Mutex<[Task<Void, Never>]>([])

    init(untilConfirmed: @escaping @Sendable (@escaping Publish) async -> Void) {
        self.untilConfirmed = untilConfirmed
    }

    convenience init(publisher: EventPublisher) {
        self.init { publish in _ = await publisher.untilConfirmed("phase", publish) }
    }

    /// Queues an event behind those sent before it.
    func send(_ publish: @escaping Publish) {
        let untilConfirmed = untilConfirmed
        publishes.withLock { publishes in
            let previous = publishes.last
            publishes.append(
                Task {
                    await previous?.value
                    await untilConfirmed(publish)
                })
        }
    }

    /// Returns once every event sent before this call is confirmed, or given up: cancelling
    /// the caller stops their publishing, as a cancelled step stopped its own publishes before.
    func confirmed() async {
        let pending = publishes.withLock { $0 }
        await withTaskCancellationHandler {
            await pending.last?.value
        } onCancel: {
            for publish in pending { publish.cancel() }
        }
    }
}
