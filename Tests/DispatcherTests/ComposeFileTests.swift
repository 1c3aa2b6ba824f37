import Foundation
import Testing

/// docker-compose.yml describes the fleet; Debian's docker-compose validates it.
@Suite struct ComposeFileTests {
    @Test func dockerComposeAcceptsTheFile() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-compose")
        process.arguments = ["-f", FleetHarness.root.appendingPathComponent("docker-compose.yml").path, "config"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(output)")
        for service in ["rabbitmq:", "dispatcher:", "worker:"] { #expect(output.contains(service)) }
        #expect(output.contains("/var/run/docker.sock"))
        #expect(output.contains("stepfleet dispatcher") || output.contains("- dispatcher"))
    }
}
