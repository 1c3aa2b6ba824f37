import Foundation
import HostCommand

/// Resolves a git revision of a remote to a commit SHA when a change is created (and on
/// `retry --refresh-sha`), through the fleet's one git runner: the remote is checked against
/// the policy again (a project stored before the policy existed cannot bypass it) and every
/// user value follows `--`.
enum GitResolver {
    static func resolve(remote: String, revision: String, git: Git) async throws -> String {
        do {
            try git.check(remote: remote)
        } catch {
            throw APIError.badRequest(error.description)
        }
        if revision.count == 40, revision.allSatisfy(\.isHexDigit) { return revision.lowercased() }
        guard !revision.isEmpty, !revision.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw APIError.badRequest("git revision \(revision.debugDescription) is not a branch, tag or full SHA")
        }
        let output: String
        do {
            output = try await git.run(
                ["ls-remote", "--", remote, revision, "refs/heads/\(revision)", "refs/tags/\(revision)", "refs/tags/\(revision)^{}"],
                what: "read the git repository \(remote)", timeout: .seconds(60))
        } catch {
            throw APIError.badRequest(error.description)
        }
        var refs: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "\t")
            if parts.count == 2 { refs[String(parts[1])] = String(parts[0]) }
        }
        for name in ["refs/tags/\(revision)^{}", "refs/heads/\(revision)", "refs/tags/\(revision)", revision] {
            if let sha = refs[name] { return sha }
        }
        throw APIError.badRequest("git revision \"\(revision)\" is not a branch, tag or full SHA of \(remote)")
    }
}
