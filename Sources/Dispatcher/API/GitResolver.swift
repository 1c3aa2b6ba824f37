import Foundation
import HostCommand

/// Resolves a git revision of a remote to a commit SHA when a change is created (and on
/// `retry --refresh-sha`), through the fleet's one git runner: the remote is checked against
/// the policy again (a project stored before the policy existed cannot bypass it) and every
/// user value follows `--`.
enum GitResolver {
    /// A revision as stored with a change (what to resolve again on retry) and its SHA.
    struct Resolved: Sendable, Equatable {
        let revision: String
        let sha: String
    }

    /// `revision` nil: the remote's default branch (its `HEAD`). A branch or tag by name wins
    /// over a short SHA (as in git); a short SHA (7 to 39 hex digits) resolves when exactly one
    /// commit starts with it.
    static func resolve(remote: String, revision: String?, git: Git, mirrors: GitMirrorCache) async throws -> Resolved {
        do {
            try git.check(remote: remote)
        } catch {
            throw APIError.badRequest(error.description)
        }
        guard let revision, !revision.isEmpty else { return try await defaultBranch(remote: remote, git: git) }
        if revision.count == 40, revision.allSatisfy(\.isHexDigit) { return Resolved(revision: revision, sha: revision.lowercased()) }
        guard !revision.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw APIError.badRequest("git revision \(revision.debugDescription) is not a branch, tag or SHA")
        }
        let refs = try await listRefs(remote: remote, ["refs/heads/\(revision)", "refs/tags/\(revision)", "refs/tags/\(revision)^{}", revision], git: git)
        for name in ["refs/tags/\(revision)^{}", "refs/heads/\(revision)", "refs/tags/\(revision)", revision] {
            if let sha = refs[name] { return Resolved(revision: revision, sha: sha) }
        }
        if (7...39).contains(revision.count), revision.allSatisfy(\.isHexDigit) {
            let prefix = revision.lowercased()
            let commits: [String]
            do {
                commits = try await mirrors.commits(remote: remote, prefix: prefix)
            } catch {
                throw APIError.badRequest(error.description)
            }
            switch commits.count {
            case 1: return Resolved(revision: revision, sha: commits[0])
            case 0: throw APIError.badRequest("git revision \"\(revision)\" is not a branch, tag or full SHA of \(remote), and no commit's SHA starts with it")
            default:
                throw APIError.badRequest(
                    "the short SHA \"\(revision)\" is ambiguous in \(remote): \(commits.count) commits start with it (\(commits.sorted().prefix(5).joined(separator: ", "))); give more digits")
            }
        }
        throw APIError.badRequest("git revision \"\(revision)\" is not a branch, tag or full SHA of \(remote) (a short SHA has 7 to 39 hex digits)")
    }

    /// The remote's `HEAD`: the branch it points to, and its SHA.
    static func defaultBranch(remote: String, git: Git) async throws -> Resolved {
        let output: String
        do {
            output = try await git.run(["ls-remote", "--symref", "--", remote, "HEAD"], what: "read the git repository \(remote)", timeout: .seconds(60))
        } catch {
            throw APIError.badRequest(error.description)
        }
        var branch: String?
        var sha: String?
        for line in output.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "\t")
            guard parts.count == 2, parts[1] == "HEAD" else { continue }
            if parts[0].hasPrefix("ref: refs/heads/") {
                branch = String(parts[0].dropFirst("ref: refs/heads/".count))
            } else if parts[0].count == 40 {
                sha = String(parts[0])
            }
        }
        guard let sha else {
            throw APIError.badRequest("the git repository \(remote) has no default branch (no HEAD: is it empty?); give --git-rev")
        }
        return Resolved(revision: branch ?? "HEAD", sha: sha)
    }

    /// Checks that `remote` answers, for `project create`; throws git's one-line reason.
    static func checkReachable(remote: String, git: Git) async throws {
        do {
            try git.check(remote: remote)
            try await git.run(["ls-remote", "--", remote, "HEAD"], what: "read the git repository \(remote)", timeout: .seconds(60))
        } catch {
            throw APIError.badRequest(error.description)
        }
    }

    private static func listRefs(remote: String, _ patterns: [String], git: Git) async throws -> [String: String] {
        let output: String
        do {
            output = try await git.run(["ls-remote", "--", remote] + patterns, what: "read the git repository \(remote)", timeout: .seconds(60))
        } catch {
            throw APIError.badRequest(error.description)
        }
        var refs: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "\t")
            if parts.count == 2 { refs[String(parts[1])] = String(parts[0]) }
        }
        return refs
    }
}
