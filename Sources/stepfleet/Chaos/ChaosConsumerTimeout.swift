import AMQP
import Foundation

/// long-step: the broker's consumer timeout (how long a consumer may hold an unacked delivery)
/// is lowered to a few seconds for the scenario, and proved to be in force before the batch.
extension ChaosScenario {
    static let loweredConsumerTimeoutMilliseconds = 3_000

    func lowerConsumerTimeout() async throws {
        try setConsumerTimeout(milliseconds: Self.loweredConsumerTimeoutMilliseconds, tickMilliseconds: 1_000)
        let held = try await probeConsumerTimeout()
        say(String(format: "long-step: consumer timeout %d ms; a probe consumer holding an unacked message lost its channel after %.1f s; steps run %.0f s",
                    Self.loweredConsumerTimeoutMilliseconds, held, stepSeconds))
    }

    func restoreConsumerTimeout() throws {
        try setConsumerTimeout(milliseconds: 1_800_000, tickMilliseconds: 60_000)
    }

    /// Sets the timeout and how often channels check it (both read when a channel opens).
    private func setConsumerTimeout(milliseconds: Int, tickMilliseconds: Int) throws {
        try broker("eval", "application:set_env(rabbit, consumer_timeout, \(milliseconds)), application:set_env(rabbit, channel_tick_interval, \(tickMilliseconds)).")
    }

    /// Holds one delivery without acking until the broker closes the channel; returns how long
    /// that took. Fails if the broker never does: the scenario would prove nothing.
    private func probeConsumerTimeout() async throws -> Double {
        let queue = "stepfleet.chaos.timeout-probe"
        let connection = try await AMQPConnection.open(try AMQPConfiguration.list(amqp)[0])
        defer { Task { await connection.close() } }
        try await connection.declare(AMQPTopology(queues: [.quorum(queue)]))
        try await connection.publish(AMQPMessage(body: Data("probe".utf8)), routingKey: queue)
        let consumer = try await connection.consume(queue: queue, prefetch: 1)
        let clock = ContinuousClock()
        let ended = Task { () -> (closed: Bool, received: ContinuousClock.Instant?) in
            var received: ContinuousClock.Instant?
            do {
                for try await _ in consumer where received == nil { received = clock.now }
                return (false, received)
            } catch {
                return (true, received)
            }
        }
        let watchdog = Task {
            try await Task.sleep(for: .seconds(90))
            await consumer.cancel()
        }
        let (closedByBroker, received) = await ended.value
        watchdog.cancel()
        guard closedByBroker, let received else {
            throw CLIError("the broker did not enforce the lowered consumer timeout within 90 s")
        }
        _ = try? await connection.deleteQueue(queue)
        return (clock.now - received).seconds
    }
}
