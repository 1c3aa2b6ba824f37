import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure StepFleet's moving parts and print the figures.",
        subcommands: []
    )
}
