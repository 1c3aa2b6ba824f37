import ArgumentParser
import Foundation
import Protocol

struct PatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patch",
        abstract: "Apply or compute RFC 6902 JSON patches.",
        subcommands: [Apply.self, Diff.self]
    )

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print DOCUMENT with PATCH applied.")

        @Argument(help: "The JSON document: a file, or - for stdin.")
        var document: String
        @Argument(help: "The JSON patch: a file, or - for stdin.")
        var patch: String
        @Flag(help: "Indent the output.")
        var pretty = false

        func validate() throws {
            if document == "-" && patch == "-" { throw ValidationError("only one of DOCUMENT and PATCH can be -") }
        }

        func run() throws {
            let documentJSON = try readJSON(document, what: "document")
            let patchJSON = try readJSON(patch, what: "patch")
            let result = try JSONPatch(json: patchJSON).apply(to: documentJSON)
            say(result.serialized(pretty: pretty))
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the patch that turns OLD into NEW.")

        @Argument(help: "The old JSON document: a file, or - for stdin.")
        var old: String
        @Argument(help: "The new JSON document: a file, or - for stdin.")
        var new: String
        @Flag(help: "Indent the output.")
        var pretty = false

        func validate() throws {
            if old == "-" && new == "-" { throw ValidationError("only one of OLD and NEW can be -") }
        }

        func run() throws {
            let patch = JSONPatch.diff(from: try readJSON(old, what: "old document"), to: try readJSON(new, what: "new document"))
            say(patch.json.serialized(pretty: pretty))
        }
    }
}

private func readJSON(_ path: String, what: String) throws -> JSON {
    let data = try InputFile.read(path)
    do {
        return try JSON.parse(bytes: data)
    } catch {
        throw CLIError("\(what) \(path == "-" ? "(stdin)" : path): \(error)")
    }
}
