import Foundation
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(2))) struct HelpTests {
    /// The subcommands `stepfleet COMMAND… --help` lists.
    static func subcommands(of path: [String]) throws -> [String] {
        let help = try runProgram(stepfleetExecutable, path + ["--help"]).output
        guard let section = help.range(of: "SUBCOMMANDS:\n") else { return [] }
        // The section's entries, up to the blank line that ends it (then "See 'stepfleet help …'").
        let entries = help[section.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }
        return entries.compactMap { line in
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let first = line.split(separator: " ").first else { return nil }
            return String(first)
        }.filter { $0 != "help" }
    }

    @Test func everySubcommandSaysInOneLineWhatItDoes() throws {
        var queue: [[String]] = [[]]
        var seen = 0
        while let path = queue.popLast() {
            try #require(path.count <= 3, "stepfleet \(path.joined(separator: " ")): commands nest three deep at most")
            let help = try runProgram(stepfleetExecutable, path + ["--help"]).output
            let overview = help.split(separator: "\n").first { $0.hasPrefix("OVERVIEW: ") }
            #expect(overview.map { $0.count > "OVERVIEW: ".count + 10 } == true, "stepfleet \(path.joined(separator: " ")) has no description:\n\(help)")
            queue += try Self.subcommands(of: path).map { path + [$0] }
            seen += 1
        }
        #expect(seen > 30, "walked \(seen) commands")
    }

    @Test func createDockerfileRefusesAFolderThatIsNotAGitRepository() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("not-git-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let refused = try runProgram(stepfleetExecutable, ["dev", "create-dockerfile", "--repository", folder])
        #expect(refused.status != 0 && refused.output.contains("is not a git repository"), "\(refused.output)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/.opschain"))

        let repository = try TestRepository.make(["README": "x"])
        let made = try runProgram(stepfleetExecutable, ["dev", "create-dockerfile", "--repository", repository.path])
        #expect(made.status == 0, "\(made.output)")
        #expect(FileManager.default.fileExists(atPath: repository.path + "/.opschain/Dockerfile"))
    }
}
