import AMQP
import Foundation
import Protocol
import TestSupport
import Testing

extension FleetTests {
    /// The fleet `ops/up` runs: its own broker user and vhost made by `ops/broker-account`, on
    /// `amqps://` with the peer verified, a dispatcher and a worker, a change end to end.
    @Suite(.timeLimit(.minutes(10))) struct SecureFleetTests {
        static let user = "stepfleet-tls-tests"
        static let vhost = testVhost("stepfleet-tls-tests")

        /// The fleet's URL from `ops/broker-account`, as an operator gets it.
        static func accountURL() throws -> String {
            let passwordFile = FileManager.default.temporaryDirectory.appendingPathComponent("broker-password-\(UUID().uuidString.prefix(6))").path
            defer { try? FileManager.default.removeItem(atPath: passwordFile) }
            let result = try runProgram(repositoryRoot.appendingPathComponent("ops/broker-account").path, [user, vhost, passwordFile])
            guard result.status == 0, let url = result.output.split(separator: "\n").last.map(String.init), url.hasPrefix("amqps://") else {
                throw TestSetupError("ops/broker-account failed: \(result.output)")
            }
            return url
        }

        @Test func aFleetRunsOverTLSAsItsOwnUserInItsOwnVhost() async throws {
            let url = try Self.accountURL()
            #expect(url.hasPrefix("amqps://\(Self.user):"))
            #expect(url.contains("@localhost:5671/\(Self.vhost)?cacertfile="))
            let harness = try await FleetHarness(broker: try AMQPConfiguration(url: url + "&heartbeat=5"))
            let repo = try await harness.project("actions:\n  hello: { run: 'echo hello over TLS' }")
            let id = try await harness.createChange(repo, action: "hello")
            let (change, _) = try await harness.waitForChange(id)
            #expect(change.status == .success)
            #expect(try await harness.logs(id).contains { $0.text == "hello over TLS" })

            // The broker sees the dispatcher's and the worker's connections on the fleet's vhost,
            // each as the fleet's user and over TLS.
            let listing = try JSON.parse(try rabbitmqctl("-q", "list_connections", "user", "vhost", "ssl", "--formatter", "json"))
            let ours = (listing.arrayValue ?? []).filter { $0["vhost"]?.stringValue == Self.vhost }
            #expect(ours.count >= 2, "\(listing.serialized())")
            #expect(ours.allSatisfy { $0["user"]?.stringValue == Self.user && $0["ssl"] == .bool(true) }, "\(ours)")
            await harness.stop()

            // The user reaches no other vhost, and a wrong password is refused, each saying so.
            let otherVhost = url.replacingOccurrences(of: "/\(Self.vhost)?", with: "/\(FleetHarness.vhost)?")
            await #expect {
                _ = try await AMQPConnection.open(try AMQPConfiguration(url: otherVhost))
            } throws: { error in
                "\(error)".contains("access to vhost '\(FleetHarness.vhost)' refused for user '\(Self.user)'")
            }
            let password = try #require(url.split(separator: ":")[2].split(separator: "@").first)
            let wrongPassword = url.replacingOccurrences(of: ":\(password)@", with: ":not-the-password@")
            await #expect {
                _ = try await AMQPConnection.open(try AMQPConfiguration(url: wrongPassword))
            } throws: { error in
                "\(error)".hasPrefix("login to amqps://\(Self.user)@localhost:5671/\(Self.vhost) failed: 403 ACCESS_REFUSED")
            }
        }
    }
}
