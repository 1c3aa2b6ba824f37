import Foundation
import Testing
@testable import Worker

@Suite(.timeLimit(.minutes(2))) struct DockerEngineTests {
    @Test func pingsTheRealEngine() async throws {
        let engine = try DockerEngine()
        #expect(await engine.ping())
        #expect(try await engine.imageID("stepfleet/runner:0.1.0") != nil)
        #expect(try await engine.imageID("no/such-image:here") == nil)
    }

    @Test func aMissingSocketIsNotAnEngine() async throws {
        let engine = try DockerEngine(endpoint: "unix:///tmp/none-\(UUID()).sock")
        #expect(await !engine.ping())
        #expect(throws: DockerError.self) { try DockerEngine(endpoint: "tcp://127.0.0.1:2375") }
    }
}
