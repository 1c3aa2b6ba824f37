import Foundation
import TestSupport
import Testing

/// The settings of `stepfleet worker` and `stepfleet dispatcher` as an operator gives them: the
/// command line, STEPFLEET_… environment variables and a --config JSON file, in that precedence
/// over the default; a bad value stops the process at start and names the setting. Each run
/// ends at start (a bad value somewhere), so no fleet process is left running.
@Suite(.timeLimit(.minutes(2))) struct SettingsTests {
    /// `stepfleet ARGUMENTS` with exactly `environment` (and PATH), for at most 20 s.
    static func stepfleet(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let variables = ["PATH=/usr/bin:/bin"] + environment.map { "\($0.key)=\($0.value)" }.sorted()
        return try runProgram("/usr/bin/env", ["-i"] + variables + ["/usr/bin/timeout", "20", stepfleetExecutable] + arguments)
    }

    static func configFile(_ json: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-settings-\(UUID().uuidString.prefix(6)).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aBadValueIsRefusedAtStartWithTheSettingsNames() throws {
        let cli = try Self.stepfleet(["worker", "--slots", "0"])
        #expect(cli.status != 0 && cli.status != 124, "\(cli)")
        #expect(cli.output.contains("--slots must be at least 1 (got 0) (the setting slots: --slots, STEPFLEET_SLOTS)"), "\(cli.output)")

        let environment = try Self.stepfleet(["worker"], environment: ["STEPFLEET_SLOTS": "many"])
        #expect(environment.output.contains("STEPFLEET_SLOTS must be a whole number (the setting slots: --slots, STEPFLEET_SLOTS)"), "\(environment.output)")

        let file = try Self.configFile(#"{"max-steps-in-flight": "lots"}"#)
        let fromFile = try Self.stepfleet(["dispatcher", "--config", file])
        #expect(fromFile.output.contains("\"max-steps-in-flight\" in \(file) must be a whole number"), "\(fromFile.output)")

        let level = try Self.stepfleet(["dispatcher", "--log-level", "loud"])
        #expect(level.output.contains("--log-level must be one of trace, debug, info, notice, warning, error, critical (got loud)"), "\(level.output)")
    }

    @Test func aKeyOfTheFileThatIsNoSettingIsRefused() throws {
        let file = try Self.configFile(#"{"slotz": 4}"#)
        let result = try Self.stepfleet(["worker", "--config", file])
        #expect(result.status != 0 && result.status != 124, "\(result)")
        #expect(result.output.contains("\"slotz\" is not a setting of this command"), "\(result.output)")
        let notJSON = try Self.configFile("slots: 4")
        #expect(try Self.stepfleet(["worker", "--config", notJSON]).output.contains("is not a JSON object of settings"))
    }

    /// Each run has a bad log level last, so it stops at start: which earlier problem it
    /// reports (or none) shows which source of the setting won.
    @Test func theCommandLineWinsOverTheEnvironmentAndTheEnvironmentOverTheFile() throws {
        let badFile = try Self.configFile(#"{"slots": 0, "log-level": "loud"}"#)
        // The file alone: its value is used (and refused).
        let file = try Self.stepfleet(["worker", "--config", badFile])
        #expect(file.output.contains("\"slots\" in \(badFile) must be at least 1"), "\(file.output)")
        // The environment over the file: slots is fine, the next problem is the log level.
        let environment = try Self.stepfleet(["worker", "--config", badFile], environment: ["STEPFLEET_SLOTS": "3"])
        #expect(!environment.output.contains("slots"), "\(environment.output)")
        #expect(environment.output.contains("\"log-level\" in \(badFile) must be one of"), "\(environment.output)")
        // The command line over the environment.
        let cli = try Self.stepfleet(["worker", "--config", badFile, "--slots", "2", "--log-level", "loud"], environment: ["STEPFLEET_SLOTS": "many"])
        #expect(!cli.output.contains("slots"), "\(cli.output)")
        #expect(cli.output.contains("--log-level must be one of"), "\(cli.output)")
        // The environment over the file for the log level too.
        let level = try Self.stepfleet(["worker", "--config", badFile, "--slots", "2"], environment: ["STEPFLEET_LOG_LEVEL": "shouty"])
        #expect(level.output.contains("STEPFLEET_LOG_LEVEL must be one of"), "\(level.output)")
    }

    @Test func aBrokerPasswordNeverAppearsInAnError() throws {
        let result = try Self.stepfleet(["worker"], environment: ["STEPFLEET_AMQP": "amqp://u:hunter2@127.0.0.1:notaport/"])
        #expect(result.status != 0 && result.status != 124, "\(result)")
        #expect(result.output.contains("STEPFLEET_AMQP must be amqp://USER:PASSWORD@HOST:PORT/VHOST"), "\(result.output)")
        #expect(!result.output.contains("hunter2"), "\(result.output)")
    }
}
