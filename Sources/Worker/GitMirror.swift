import Crypto
import Foundation
import HostCommand
import Protocol

/// A local mirror per remote repository; a step's checkout comes from it. The remote is
/// fetched only when the mirror lacks the requested commit.
public actor GitMirror {
    public let directory: String
    private let git: String
    /// One fetch at a time per remote; others wait for it.
    private var fetches: [String: Task<Void, any Error>] = [:]

    public init(directory: String, git: String = "/usr/bin/git") {
        self.directory = directory
        self.git = git
    }

    /// A checkout of `sha` (with `.git`) in `destination`, made from the mirror of `remote`.
    public func checkout(remote: String, sha: String, into destination: String) async throws(CheckoutError) {
        guard sha.count >= 7, sha.allSatisfy(\.isHexDigit) else {
            throw CheckoutError("\"\(sha)\" is not a git commit SHA")
        }
        let mirror = try await ensure(remote: remote, sha: sha)
        // Copies, not hard links: a link made or dropped by a concurrent clone or the mirror's
        // gc changes a shared inode's ctime, and tar then fails the build context with "file
        // changed as we read it" (seen under load in the poison scenario).
        try await runGit(["-c", "gc.auto=0", "clone", "--quiet", "--no-hardlinks", "--no-checkout", mirror, destination], what: "clone the mirror of \(remote)")
        try await runGit(["-C", destination, "checkout", "--quiet", "--detach", sha], what: "check out \(sha)")
        try await runGit(["-C", destination, "remote", "set-url", "origin", remote], what: "set the origin of the checkout")
    }

    /// The mirror's path, holding `sha` (fetching the remote if it does not yet).
    private func ensure(remote: String, sha: String) async throws(CheckoutError) -> String {
        let mirror = (directory as NSString).appendingPathComponent(Self.mirrorName(remote) + ".git")
        if await hasCommit(mirror, sha) { return mirror }
        if let running = fetches[mirror] {
            _ = try? await running.value
            if await hasCommit(mirror, sha) { return mirror }
        }
        let task = Task { [git] in
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
            let result: CommandRunner.Result
            if FileManager.default.fileExists(atPath: mirror) {
                result = try await CommandRunner.run(git, ["-C", mirror, "fetch", "--quiet", "--prune", "origin"])
            } else {
                let partial = mirror + ".partial-\(UUID().uuidString.prefix(8))"
                result = try await CommandRunner.run(git, ["clone", "--quiet", "--mirror", remote, partial])
                if result.status == 0 { try FileManager.default.moveItem(atPath: partial, toPath: mirror) } else { try? FileManager.default.removeItem(atPath: partial) }
            }
            guard result.status == 0 else { throw CheckoutError("cannot fetch \(remote): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))") }
        }
        fetches[mirror] = task
        defer { fetches[mirror] = nil }
        do {
            try await task.value
        } catch let error as CheckoutError {
            throw error
        } catch {
            throw CheckoutError("cannot fetch \(remote): \(error)")
        }
        guard await hasCommit(mirror, sha) else {
            throw CheckoutError("commit \(sha) is not in \(remote) (fetched just now)")
        }
        return mirror
    }

    private func hasCommit(_ mirror: String, _ sha: String) async -> Bool {
        guard FileManager.default.fileExists(atPath: mirror) else { return false }
        let result = try? await CommandRunner.run(git, ["-C", mirror, "cat-file", "-e", "\(sha)^{commit}"])
        return result?.status == 0
    }

    private func runGit(_ arguments: [String], what: String) async throws(CheckoutError) {
        let result: CommandRunner.Result
        do {
            result = try await CommandRunner.run(git, arguments)
        } catch {
            throw CheckoutError("cannot \(what): \(error)")
        }
        guard result.status == 0 else {
            throw CheckoutError("cannot \(what): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    static func mirrorName(_ remote: String) -> String {
        let digest = SHA256.hash(data: Data(remote.utf8)).hexString
        let readable = remote.split(separator: "/").last.map { String($0.prefix(40)).filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" } } ?? "repo"
        return "\(readable)-\(digest.prefix(16))"
    }
}

/// The repository or commit could not be had.
public struct CheckoutError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
