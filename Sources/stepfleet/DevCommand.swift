import ArgumentParser
import Foundation
import StepRunner

struct DevCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Tools for project repositories.",
        subcommands: [CreateDockerfile.self]
    )

    struct CreateDockerfile: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-dockerfile",
            abstract: "Write the default step runner Dockerfile to .opschain/Dockerfile, to customise."
        )

        @Option(help: "The repository root.")
        var repository = "."
        @Flag(help: "Replace an existing .opschain/Dockerfile.")
        var force = false

        func run() throws {
            let path = (repository as NSString).appendingPathComponent(DefaultDockerfile.path)
            if FileManager.default.fileExists(atPath: path), !force {
                throw CLIError("\(path) exists already (--force replaces it)")
            }
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(DefaultDockerfile.text.utf8).write(to: URL(fileURLWithPath: path))
            say("wrote \(path): commit it to use it for this project's steps")
        }
    }
}
