import ArgumentParser
import Foundation
import Protocol

struct ProjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "project", abstract: "Projects: a code, a name and the git repository their changes run.", subcommands: [Create.self, List.self, Show.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a project: a code, a name and its git repository (checked at once).")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Project code.") var code: String
        @Option(help: "Display name.") var name: String?
        @Option(help: "The project's git repository: a path or URL the workers can fetch.") var gitRemote: String

        func run() async throws {
            let project = try await options.client.request("POST", "/projects", body: ["code": .string(code), "name": .string(name ?? code), "git_remote": .string(gitRemote)])
            say("created project \(project["code"]?.stringValue ?? code)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the projects.")
        @OptionGroup var options: ServerOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let projects = try await options.client.request("GET", "/projects")
            if json { return say(projects.serialized(pretty: true)) }
            for project in projects.arrayValue ?? [] {
                say("\(project["code"]?.stringValue ?? "")\t\(project["name"]?.stringValue ?? "")\t\(project["git_remote"]?.stringValue ?? "")")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a project.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Project code.") var code: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let project = try await options.client.request("GET", "/projects/\(code)")
            if json { return say(project.serialized(pretty: true)) }
            say("\(project["code"]?.stringValue ?? "") (\(project["name"]?.stringValue ?? "")): \(project["git_remote"]?.stringValue ?? "")")
        }
    }
}

extension ProjectCommand {
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a project, its environments and their properties history (refused while a change is pending or running); its changes and logs stay.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Project code.") var code: String

        func run() async throws {
            let answer = try await options.client.request("DELETE", "/projects/\(code)")
            say("deleted project \(code) (\(answer["environments_deleted"]?.intValue ?? 0) environments; \(answer["changes_kept"]?.intValue ?? 0) changes kept)")
        }
    }
}

extension EnvironmentCommand {
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete an environment and its properties history (refused while a change is pending or running); its changes and logs stay.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Project code.") var project: String
        @Argument(help: "Environment code.") var code: String

        func run() async throws {
            let answer = try await options.client.request("DELETE", "/projects/\(project)/environments/\(code)")
            say("deleted environment \(project)/\(code) (\(answer["changes_kept"]?.intValue ?? 0) changes kept)")
        }
    }
}

/// A JSON file named on the command line; a syntax error says where (line, column, byte).
func readJSONFile(_ path: String) throws -> JSON {
    let data = try InputFile.read(path)
    do {
        return try JSON.parse(bytes: data)
    } catch {
        throw CLIError(DecodingProblem.syntax(error, file: path == "-" ? "standard input" : path, data: data).description)
    }
}

struct EnvironmentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "environment", abstract: "A project's environments.", subcommands: [Create.self, List.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an environment of a project.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Project code.") var project: String
        @Argument(help: "Environment code.") var code: String
        @Option(help: "Display name.") var name: String?

        func run() async throws {
            _ = try await options.client.request("POST", "/projects/\(project)/environments", body: ["code": .string(code), "name": .string(name ?? code)])
            say("created environment \(project)/\(code)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a project's environments.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Project code.") var project: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let environments = try await options.client.request("GET", "/projects/\(project)/environments")
            if json { return say(environments.serialized(pretty: true)) }
            for environment in environments.arrayValue ?? [] {
                say("\(environment["code"]?.stringValue ?? "")\t\(environment["name"]?.stringValue ?? "")")
            }
        }
    }
}

struct PropertiesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "properties", abstract: "Project or environment properties (versioned).", subcommands: [Show.self, Set.self, Patch.self])

    struct Owner: ParsableArguments {
        @Option(help: "Project code.") var project: String
        @Option(help: "Environment code (omit for the project's own properties).") var environment: String?

        var path: String { environment.map { "/projects/\(project)/environments/\($0)/properties" } ?? "/projects/\(project)/properties" }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the current properties (secrets as ****); their version goes to stderr, for set/patch --version.")
        @OptionGroup var options: ServerOptions
        @OptionGroup var owner: Owner
        @Flag(help: "Print JSON with the version.") var json = false

        func run() async throws {
            let answer = try await options.client.request("GET", owner.path)
            if json { return say(answer.serialized(pretty: true)) }
            // Standard output stays the document alone, so that it can be edited and set again.
            let version = answer["version"]?.intValue.map(String.init) ?? "?"
            FileHandle.standardError.write(Data("version \(version) (properties set/patch --version \(version) writes only if it is still current)\n".utf8))
            say((answer["properties"] ?? .null).serialized(pretty: true))
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace the properties with a JSON document (a file, or - for stdin).")
        @OptionGroup var options: ServerOptions
        @OptionGroup var owner: Owner
        @Argument(help: "The new properties document.") var file: String
        @Option(help: "Only if the current version is this one.") var version: Int?

        func run() async throws {
            let document = try readJSONFile(file)
            let answer = try await options.client.request("PUT", owner.path, body: document, headers: version.map { ["If-Match": String($0)] } ?? [:])
            say("properties at version \(answer["version"]?.intValue ?? 0)")
        }
    }

    struct Patch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply an RFC 6902 patch (a file, or - for stdin).")
        @OptionGroup var options: ServerOptions
        @OptionGroup var owner: Owner
        @Argument(help: "The patch.") var file: String
        @Option(help: "Only if the current version is this one.") var version: Int?

        func run() async throws {
            let patch = try readJSONFile(file)
            let answer = try await options.client.request("PATCH", owner.path, body: patch, headers: version.map { ["If-Match": String($0)] } ?? [:])
            say("properties at version \(answer["version"]?.intValue ?? 0)")
        }
    }
}
