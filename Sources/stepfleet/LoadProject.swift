import Foundation
import Protocol

/// The project a `stepfleet load` run submits changes to: a synthetic one made on the spot
/// (a git repository with one commit, the project and its environments through the API), or
/// one that exists.
struct LoadProject: Sendable {
    var code: String
    var environments: [String]
    var action: String

    /// The synthetic project's actions: `deploy` runs, then its two children run in parallel
    /// (three steps, three containers per change), each recording itself in the properties.
    static let actions = """
        # Made by `stepfleet load`: three steps per change, two of them in parallel.
        actions:
          deploy:
            run: echo "deploying $(git rev-parse --short HEAD)"
            steps: [configure, release]
            strategy: parallel
          configure:
            run: echo configured
          release:
            run: echo released

        """

    /// Makes the repository in a new folder under `folder` (which must lie under one of the
    /// dispatcher's `--git-local-roots`), then the project and `environments` environments.
    static func make(_ client: APIClient, folder: String, environments: Int) async throws -> LoadProject {
        let id = UUID().uuidString.prefix(8).lowercased()
        let code = "load-\(id)"
        let path = (folder as NSString).appendingPathComponent("stepfleet-load-\(id)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try LocalRepository.make(at: path, files: [".opschain/actions.yml": actions])
        do {
            _ = try await client.request("POST", "/projects", body: ["code": .string(code), "name": .string("stepfleet load \(id)"), "git_remote": .string(path)])
        } catch {
            throw CLIError("cannot create the synthetic project (its repository is \(path); the dispatcher must allow it with --git-local-roots, or pass --repo-dir under one of its roots): \(error)")
        }
        let names = (1...environments).map { "env-\($0)" }
        for name in names {
            _ = try await client.request("POST", "/projects/\(code)/environments", body: ["code": .string(name)])
        }
        return LoadProject(code: code, environments: names, action: "deploy")
    }

    /// An existing project: the environments given, or all of its own.
    static func existing(_ client: APIClient, code: String, environments: [String], action: String) async throws -> LoadProject {
        let listed = try await client.request("GET", "/projects/\(code)/environments").arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
        let chosen = environments.isEmpty ? listed : environments
        if let unknown = chosen.first(where: { !listed.contains($0) }) {
            throw CLIError("project \(code) has no environment \"\(unknown)\" (it has: \(listed.joined(separator: ", ")))")
        }
        guard !chosen.isEmpty else { throw CLIError("project \(code) has no environments: create one, or let stepfleet load make a synthetic project") }
        return LoadProject(code: code, environments: chosen, action: action)
    }
}
