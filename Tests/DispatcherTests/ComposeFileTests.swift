import Foundation
import TestSupport
import Testing

/// docker-compose.yml describes the fleet; Debian's docker-compose validates it.
@Suite(.timeLimit(.minutes(2))) struct ComposeFileTests {
    @Test func dockerComposeAcceptsTheFile() throws {
        let (status, output) = try runProgram("/usr/bin/docker-compose", ["-f", repositoryRoot.appendingPathComponent("docker-compose.yml").path, "config"])
        #expect(status == 0, "\(output)")
        for service in ["rabbitmq:", "dispatcher:", "worker:"] { #expect(output.contains(service)) }
        #expect(output.contains("/var/run/docker.sock"))
        #expect(output.contains("stepfleet dispatcher") || output.contains("- dispatcher"))
    }
}
