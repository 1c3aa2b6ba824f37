import AMQP
import Foundation
import Testing

/// Against the node's TLS listener, with the test CA `ops/test` makes with openssl.
@Suite(.timeLimit(.minutes(3))) struct TLSTests {
    private let tls = TestBroker.tlsDirectory

    @Test func connectsOverTLSWithAVerifiedPeer() async throws {
        let connection = try await AMQPConnection.open(TestBroker.configuration("amqps://guest:guest@localhost:5671/?cacertfile=\(tls)/ca.pem"))
        let queue = AMQPTopology.Queue(name: TestBroker.uniqueName("tls"), durable: false, autoDelete: true)
        try await connection.declare(AMQPTopology(queues: [queue]))
        try await connection.publish(AMQPMessage(body: Data("secure".utf8)), routingKey: queue.name)
        #expect(try await connection.messageCount(queue: queue.name) == 1)
        try await connection.deleteQueue(queue.name)
        await connection.close()
    }

    @Test func presentsAClientCertificate() async throws {
        let url = "amqps://guest:guest@localhost:5671/?cacertfile=\(tls)/ca.pem&certfile=\(tls)/client.pem&keyfile=\(tls)/client.key"
        let connection = try await AMQPConnection.open(TestBroker.configuration(url))
        #expect(connection.isOpen)
        await connection.close()
    }

    @Test func aWrongCAFailsWithAClearError() async throws {
        await #expect {
            _ = try await AMQPConnection.open(TestBroker.configuration("amqps://guest:guest@localhost:5671/?cacertfile=\(tls)/other-ca.pem"))
        } throws: { error in
            guard let error = error as? AMQPError, case .tlsFailed(let endpoint, _) = error else { return false }
            return endpoint.contains("localhost:5671")
        }
    }

    @Test func aMissingCAFileIsNamed() async throws {
        await #expect {
            _ = try await AMQPConnection.open(TestBroker.configuration("amqps://guest:guest@localhost:5671/?cacertfile=/nonexistent/ca.pem"))
        } throws: { error in
            (error as? AMQPError)?.description.contains("/nonexistent/ca.pem") == true
        }
    }
}
