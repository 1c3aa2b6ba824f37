import Foundation
import HostCommand

/// Resolves a git revision of a remote to a commit SHA when a change is created.
enum GitResolver {
    static func resolve(remote: String, revision: String) async throws -> String {
        if revision.count == 40, revision.allSatisfy(\.isHexDigit) { return revision.lowercased() }
        let result = try await CommandRunner.run(
            "/usr/bin/git", ["ls-remote", remote, revision, "refs/heads/\(revision)", "refs/tags/\(revision)", "refs/tags/\(revision)^{}"],
            environment: ["GIT_TERMINAL_PROMPT": "0"])
        let (status, output) = (result.status, result.output)
        guard status == 0 else {
            throw APIError.badRequest("cannot read the git repository \(remote): \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
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
