import AMQP
import ArgumentParser
import Foundation

struct BenchAMQP: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp",
        abstract: "Confirmed-publish throughput and publish→consume latency on a quorum queue.",
        discussion: "Persistent messages, publisher confirms pipelined over one connection; latency is measured with a consumer on a second connection while messages are published at a steady pace."
    )

    @Option(help: "Broker URL.")
    var amqp = "amqp://guest:guest@127.0.0.1:5672/"
    @Option(help: "Messages for the throughput run.")
    var messages = 20_000
    @Option(help: "Publishes waiting for their confirm at once.")
    var outstanding = 500
    @Option(help: "Body size in bytes.")
    var size = 512
    @Option(help: "Messages for the latency run.")
    var latencyMessages = 2_000
    @Option(help: "Pause between latency-run publishes, in microseconds.")
    var pace = 500

    func validate() throws {
        guard messages > 0, outstanding > 0, size >= 8, latencyMessages > 0 else {
            throw ValidationError("messages, outstanding and latency-messages must be positive; size at least 8 bytes")
        }
    }

    func run() async throws {
        let configuration = try AMQPConfiguration(url: amqp)
        let queue = "stepfleet.bench.\(UUID().uuidString.prefix(8).lowercased())"
        let publisher = try await AMQPConnection.open(configuration)
        let consumerConnection = try await AMQPConnection.open(configuration)
        try await publisher.declare(AMQPTopology(queues: [.quorum(queue)]))
        say("broker: \(configuration)  queue: \(queue) (quorum)  body: \(size) B persistent")

        let throughput = try await measureThroughput(publisher, queue: queue)
        _ = try await publisher.deleteQueue(queue)
        try await publisher.declare(AMQPTopology(queues: [.quorum(queue)]))
        let latencies = try await measureLatency(publisher, consumerConnection, queue: queue)
        _ = try await publisher.deleteQueue(queue)
        await consumerConnection.close()
        await publisher.close()

        let percentiles = Percentiles(latencies)
        say("publish→consume latency over \(latencies.count) messages: p50 \(percentiles.median.milliseconds), p99 \(percentiles.value(99).milliseconds), max \(percentiles.value(100).milliseconds)")
        say("confirmed publish: \(Int(throughput)) msg/s")
    }

    private func measureThroughput(_ connection: AMQPConnection, queue: String) async throws -> Double {
        let body = Data(repeating: 0x61, count: size)
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            while next < min(outstanding, messages) {
                group.addTask { try await connection.publish(AMQPMessage(body: body), routingKey: queue) }
                next += 1
            }
            while try await group.next() != nil {
                if next < messages {
                    group.addTask { try await connection.publish(AMQPMessage(body: body), routingKey: queue) }
                    next += 1
                }
            }
        }
        let elapsed = (clock.now - start).seconds
        let rate = Double(messages) / elapsed
        say("throughput: \(messages) messages, \(outstanding) outstanding, in \(String(format: "%.2f", elapsed)) s")
        return rate
    }

    private func measureLatency(_ publisher: AMQPConnection, _ consumerConnection: AMQPConnection, queue: String) async throws -> [Double] {
        let consumer = try await consumerConnection.consume(queue: queue, prefetch: 500)
        let total = latencyMessages
        let reader = Task { () throws -> [Double] in
            var samples: [Double] = []
            samples.reserveCapacity(total)
            for try await delivery in consumer {
                let received = DispatchTime.now().uptimeNanoseconds
                let sent = delivery.body.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                samples.append(Double(received - sent) / 1e6)
                try await delivery.ack()
                if samples.count == total { break }
            }
            return samples
        }
        let padding = Data(repeating: 0x62, count: size - 8)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<total {
                var stamp = DispatchTime.now().uptimeNanoseconds
                let body = Data(bytes: &stamp, count: 8) + padding
                group.addTask { try await publisher.publish(AMQPMessage(body: body), routingKey: queue) }
                try await Task.sleep(for: .microseconds(pace))
            }
            try await group.waitForAll()
        }
        let samples = try await reader.value
        await consumer.cancel()
        return samples
    }
}
