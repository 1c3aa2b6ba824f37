import ArgumentParser
import Foundation
import HostCommand
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
            guard Self.isGitWorkTree(repository) else {
                throw CLIError("\(repository) is not a git repository: run this in your project's repository (or pass --repository DIR), whose commits StepFleet runs")
            }
            let path = (repository as NSString).appendingPathComponent(DefaultDockerfile.path)
            if FileManager.default.fileExists(atPath: path), !force {
                throw CLIError("\(path) exists already (--force replaces it)")
            }
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(DefaultDockerfile.text.utf8).write(to: URL(fileURLWithPath: path))
            say("wrote \(path): commit it to use it for this project's steps")
        }

        /// True when `directory` is the top of a git work tree (not merely inside one: the
        /// Dockerfile belongs at the repository's root).
        static func isGitWorkTree(_ directory: String) -> Bool {
            guard let top = try? Spawn.run("/usr/bin/git", ["-C", directory, "rev-parse", "--show-toplevel"]), top.status == 0 else { return false }
            let root = URL(fileURLWithPath: top.output.trimmingCharacters(in: .whitespacesAndNewlines)).resolvingSymlinksInPath().path
            return root == URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        }
    }
}
