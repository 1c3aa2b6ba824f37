import ArgumentParser
import Dispatcher
import Foundation

/// `stepfleet token create|list|revoke`: API bearer tokens, managed on the dispatcher's database
/// file (run it where the dispatcher runs). Only a token's SHA-256 is stored.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage the API's bearer tokens (on the dispatcher's database file).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Database: ParsableArguments {
        @Option(help: "The dispatcher's SQLite database file.")
        var db = "stepfleet.sqlite"
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token and print it (it is not shown again).")
        @OptionGroup var database: Database
        @Option(help: "A name for the token (who or what uses it).")
        var name: String
        @Option(help: "Also write the token to this file (mode 0600), e.g. ~/.config/stepfleet/token.")
        var write: String?

        func run() async throws {
            let token = try await Store(path: database.db).createToken(name: name)
            if let write {
                let folder = (write as NSString).deletingLastPathComponent
                if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
                guard FileManager.default.createFile(atPath: write, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                    throw CLIError("cannot write \(write)")
                }
            }
            say(token)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tokens' names.")
        @OptionGroup var database: Database

        func run() async throws {
            for token in try await Store(path: database.db).tokens() {
                say("\(token.name)\tcreated \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: token.createdAt)))")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by name.")
        @OptionGroup var database: Database
        @Argument(help: "The token's name.")
        var name: String

        func run() async throws {
            try await Store(path: database.db).revokeToken(name: name)
            say("revoked \(name)")
        }
    }
}
