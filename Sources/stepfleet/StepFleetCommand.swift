import ArgumentParser
import Foundation
import Protocol

@main
struct StepFleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stepfleet",
        abstract: "Run infrastructure changes as trees of steps on a fleet of workers.",
        version: StepFleetVersion.current,
        subcommands: [
            DispatcherCommand.self, WorkerCommand.self, ProjectCommand.self, EnvironmentCommand.self, PropertiesCommand.self,
            ChangeCommand.self, TokenCommand.self, PatchCommand.self, DevCommand.self, BenchCommand.self, ChaosCommand.self,
        ]
    )
}

/// Writes a line to standard output at once (not buffered), so progress shows as it happens
/// even into a pipe.
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
