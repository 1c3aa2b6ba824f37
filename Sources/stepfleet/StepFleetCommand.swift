import ArgumentParser
import Protocol

@main
struct StepFleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stepfleet",
        abstract: "Run infrastructure changes as trees of steps on a fleet of workers.",
        version: StepFleetVersion.current,
        subcommands: [WorkerCommand.self, PatchCommand.self, DevCommand.self, BenchCommand.self]
    )
}
