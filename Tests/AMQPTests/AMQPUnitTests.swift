import Testing
@testable import AMQP

@Suite(.timeLimit(.minutes(1))) struct AMQPConfigurationTests {
    @Test func parsesAFullURL() throws {
        let configuration = try AMQPConfiguration(url: "amqp://fleet:s%40cret@broker.example:5673/prod%2Fjobs?heartbeat=7&connection_timeout=1500")
        #expect(configuration.host == "broker.example")
        #expect(configuration.port == 5673)
        #expect(configuration.user == "fleet")
        #expect(configuration.password == "s@cret")
        #expect(configuration.vhost == "prod/jobs")
        #expect(configuration.heartbeatSeconds == 7)
        #expect(configuration.connectTimeoutMilliseconds == 1500)
        #expect(configuration.tls == nil)
        #expect(!configuration.description.contains("s@cret"))
    }

    @Test func defaults() throws {
        let configuration = try AMQPConfiguration(url: "amqp://localhost")
        #expect(configuration.port == 5672)
        #expect(configuration.vhost == "/")
        #expect(configuration.user == "guest")
        #expect(try AMQPConfiguration(url: "amqp://localhost/").vhost == "/")
        #expect(try AMQPConfiguration(url: "amqp://localhost/%2F").vhost == "/")
    }

    @Test func tlsIsVerifiedByDefault() throws {
        let configuration = try AMQPConfiguration(url: "amqps://u:p@h/?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem")
        #expect(configuration.port == 5671)
        #expect(configuration.tls == AMQPConfiguration.TLS(caCertificatePath: "/ca.pem", clientCertificatePath: "/c.pem", clientKeyPath: "/k.pem", verifyPeer: true))
        #expect(try AMQPConfiguration(url: "amqps://h?verify=verify_none").tls?.verifyPeer == false)
    }

    @Test(arguments: [
        ("http://h", "scheme must be amqp or amqps"),
        ("amqp://h?heartbeat=x", "heartbeat must be whole seconds"),
        ("amqps://h?verify=maybe", "verify must be verify_peer or verify_none"),
        ("amqp://h?connection_timeout=0", "connection_timeout must be a positive"),
        ("not a url at all", "is not a URL"),
    ])
    func badURLsSayWhatIsWrong(_ text: String, _ expected: String) {
        #expect {
            _ = try AMQPConfiguration(url: text)
        } throws: { error in
            guard let error = error as? AMQPError, case .invalidConfiguration(let reason) = error else { return false }
            return reason.contains(expected)
        }
    }

    @Test func severalBrokers() throws {
        let list = try AMQPConfiguration.list("amqp://a:5672, amqp://b:5673,amqp://c")
        #expect(list.map(\.host) == ["a", "b", "c"])
        #expect(throws: AMQPError.self) { try AMQPConfiguration.list(" , ") }
    }

    @Test func redactsPasswords() {
        #expect(AMQPConfiguration.redact("amqp://u:secret@h/") == "amqp://u:***@h/")
        // Not a URL (a port that is no number): the credentials go all the same.
        #expect(AMQPConfiguration.redact("amqp://u:secret@h:port/") == "amqp://***@h:port/")
        #expect(AMQPConfiguration.redact("amqp://u:se/cr@et@h:x") == "amqp://***@h:x")
        #expect(AMQPConfiguration.redact("not a url") == "not a url")
        do {
            _ = try AMQPConfiguration(url: "amqp://u:secret@h:port/")
            Issue.record("a URL with a port that is no number was taken")
        } catch {
            #expect(!"\(error)".contains("secret"), "\(error)")
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct ConfirmTrackerTests {
    @Test func tagsCountUpFromOne() {
        var tracker = ConfirmTracker<String>()
        #expect(tracker.register("a") == 1)
        #expect(tracker.register("b") == 2)
        #expect(tracker.outstanding == 2)
    }

    @Test func singleAndMultipleSettlements() {
        var tracker = ConfirmTracker<Int>()
        for value in 1...6 { _ = tracker.register(value) }
        #expect(tracker.settle(tag: 2, multiple: false) == [2])
        #expect(tracker.settle(tag: 4, multiple: true) == [1, 3, 4])
        #expect(tracker.settle(tag: 4, multiple: true) == [])
        #expect(tracker.settle(tag: 3, multiple: false) == [])
        #expect(tracker.outstanding == 2)
        #expect(tracker.settle(tag: 99, multiple: true) == [5, 6])
        #expect(tracker.outstanding == 0)
    }

    @Test func unknownTagsSettleNothing() {
        var tracker = ConfirmTracker<Int>()
        #expect(tracker.settle(tag: 1, multiple: false) == [])
        #expect(tracker.settle(tag: 10, multiple: true) == [])
        _ = tracker.register(1)
        #expect(tracker.settle(tag: 0, multiple: true) == [])
    }

    @Test func removeAllReturnsWaitersInOrder() {
        var tracker = ConfirmTracker<Int>()
        for value in 1...3 { _ = tracker.register(value) }
        #expect(tracker.removeAll() == [1, 2, 3])
        #expect(tracker.register(4) == 4)
        #expect(tracker.settle(tag: 4, multiple: true) == [4])
    }

    @Test func overdueConfirmsExpireOldestFirstAndLateAcksAreIgnored() {
        var tracker = ConfirmTracker<Int>()
        let start = ContinuousClock.now
        for value in 1...4 { _ = tracker.register(value, deadline: start + .seconds(value)) }
        #expect(tracker.settle(tag: 2, multiple: false) == [2])
        #expect(tracker.expire(now: start) == [])
        #expect(tracker.expire(now: start + .seconds(3)) == [1, 3])
        #expect(tracker.outstanding == 1)
        #expect(tracker.settle(tag: 3, multiple: true) == [])
        #expect(tracker.settle(tag: 4, multiple: false) == [4])
        #expect(tracker.expire(now: start + .seconds(60)) == [])
    }
}

@Suite(.timeLimit(.minutes(1))) struct BackoffTests {
    @Test func growsAndIsCapped() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        for attempt in 0..<30 {
            let delay = backoff.delay(attempt: attempt)
            #expect(delay <= .seconds(2))
            #expect(delay >= .zero)
        }
        #expect(backoff.delay(attempt: 30) >= .seconds(1))
    }
}
