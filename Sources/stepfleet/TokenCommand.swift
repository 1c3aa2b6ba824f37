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
        @Option(help: "What the token may do: read (GET only) or operator (everything).")
        var scope = "operator"
        @Option(help: "How long the token is valid: a number with m, h, d or w (30d, 12h), or never.")
        var expires = "90d"

        func validate() throws {
            guard Store.TokenScope(rawValue: scope) != nil else { throw ValidationError("--scope must be read or operator, not \(scope)") }
            _ = try TokenLifetime.seconds(expires)
        }

        func run() async throws {
            let expiresAt = try TokenLifetime.seconds(expires).map { Date().timeIntervalSince1970 + $0 }
            let token = try await Store(path: database.db, secretsKey: .none).createToken(name: name, scope: Store.TokenScope(rawValue: scope)!, expiresAt: expiresAt)
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
        static let configuration = CommandConfiguration(abstract: "List the tokens: name, scope, creation, expiry.")
        @OptionGroup var database: Database

        func run() async throws {
            let format = ISO8601DateFormatter()
            let now = Date().timeIntervalSince1970
            for token in try await Store(path: database.db, secretsKey: .none).tokens() {
                let expiry = token.expiresAt.map { ($0 <= now ? "expired " : "expires ") + format.string(from: Date(timeIntervalSince1970: $0)) } ?? "never expires"
                say("\(token.name)\t\(token.scope.rawValue)\tcreated \(format.string(from: Date(timeIntervalSince1970: token.createdAt)))\t\(expiry)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by name.")
        @OptionGroup var database: Database
        @Argument(help: "The token's name.")
        var name: String

        func run() async throws {
            try await Store(path: database.db, secretsKey: .none).revokeToken(name: name)
            say("revoked \(name)")
        }
    }
}

/// `--expires`: `30d`, `12h`, `45m`, `2w` or `never`.
enum TokenLifetime {
    static func seconds(_ text: String) throws -> Double? {
        if text == "never" { return nil }
        let units: [Character: Double] = ["m": 60, "h": 3600, "d": 86400, "w": 7 * 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int(text.dropLast()), count > 0 else {
            throw ValidationError("--expires must be a positive number with m, h, d or w (30d, 12h), or never; not \(text)")
        }
        return Double(count) * unit
    }
}
