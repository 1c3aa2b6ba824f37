import Crypto
import Foundation
import HostCommand
import Protocol
import Synchronization

/// A local mirror per remote repository; a step's checkout comes from it. The remote is
/// fetched when the mirror lacks the requested commit, and once per change besides: the refs
/// a step sees (repo.tar holds them: a tag added at a SHA the mirror has already) are then at
/// least as new as its change, at one fetch per change and mirror, not one per step.
///
/// Every git call goes through the fleet's git runner (`Git`): the job's remote is checked
/// against this worker's `GitRemotePolicy` before anything is fetched (a job is only as
/// trustworthy as the project that made it), user values follow `--`, and each call has a
/// deadline.
public actor GitMirror {
    public let directory: String
    private let git: Git
    /// One fetch at a time per remote; others wait for it.
    private var fetches: [String: (task: Task<Void, any Error>, started: ContinuousClock.Instant)] = [:]
    /// The changes each mirror was fetched for (the latest few hundred).
    private var refreshed: [String: [String]] = [:]
    /// Commits a mirror was seen to hold (key: mirror and SHA), and when: a fetch only adds
    /// commits, so a step of a commit seen within `commitMemory` starts no git to look again.
    private var seenCommits: [String: ContinuousClock.Instant] = [:]
    static let commitMemory = Duration.seconds(600)
    static let seenCommitsLimit = 2_000

    public init(directory: String, git: String = "/usr/bin/git", policy: GitRemotePolicy = GitRemotePolicy(), timeout: Duration = .seconds(600)) {
        self.directory = directory
        self.git = Git(executable: git, policy: policy, timeout: timeout)
    }

    /// Checkouts made by the mirrors of each directory (`clone`), so that a test can check
    /// that a cache-hit step makes none.
    private static let clonesMade = Mutex<[String: Int]>([:])

    static func clones(in directory: String) -> Int { clonesMade.withLock { $0[directory] ?? 0 } }

    /// A checkout of `sha` (with `.git`) in `destination`, made from the mirror of `remote`,
    /// fetched first for `change` if no step of that change fetched it yet. Returns a note when
    /// that fetch failed and the mirror's refs were used as they were.
    @discardableResult
    public func checkout(remote: String, sha: String, into destination: String, change: String? = nil) async throws(CheckoutError) -> String? {
        let (mirror, note) = try await prepare(remote: remote, sha: sha, change: change)
        try await clone(mirror, remote: remote, sha: sha, into: destination)
        return note
    }

    /// The path of the mirror of `remote`, holding `sha` and fetched for `change` if no step
    /// of that change fetched it yet (what `checkout` does before it clones); with a note when
    /// that fetch failed and the mirror's refs are as last fetched. The repository's files
    /// and refs can be read from it at the SHA with no checkout (`RepositoryFiles`).
    public func prepare(remote: String, sha: String, change: String? = nil) async throws(CheckoutError) -> (mirror: String, note: String?) {
        guard sha.count >= 7, sha.count <= 64, sha.allSatisfy(\.isHexDigit) else {
            throw CheckoutError("\"\(sha)\" is not a git commit SHA")
        }
        do {
            try git.check(remote: remote)
        } catch {
            throw CheckoutError(error.description)
        }
        let requested = ContinuousClock.now
        let (mirror, fetchedForCommit) = try await ensure(remote: remote, sha: sha)
        var fetched = fetchedForCommit
        var note: String?
        if let change, !fetched, !(refreshed[mirror] ?? []).contains(change) {
            do {
                try await fetch(mirror, remote: remote, since: requested)
                fetched = true
            } catch {
                note = "could not fetch \(remote) for this change's refs (\(error)); the mirror's refs as last fetched are used"
            }
        }
        if fetched, let change { refreshed[mirror, default: []].append(change); refreshed[mirror]!.removeFirst(max(refreshed[mirror]!.count - 500, 0)) }
        return (mirror, note)
    }

    /// A checkout of `sha` (with `.git`) in `destination`, cloned from `mirror` (`prepare`'s).
    public func clone(_ mirror: String, remote: String, sha: String, into destination: String) async throws(CheckoutError) {
        Self.clonesMade.withLock { $0[directory, default: 0] += 1 }
        // Copies, not hard links: a link made or dropped by a concurrent clone or the mirror's
        // gc changes a shared inode's ctime, and tar then fails the build context with "file
        // changed as we read it" (seen under load in the poison scenario).
        try await runGit(["-c", "gc.auto=0", "clone", "--quiet", "--no-hardlinks", "--no-checkout", "--", mirror, destination], what: "clone the mirror of \(remote)")
        try await runGit(["-C", destination, "checkout", "--quiet", "--detach", sha, "--"], what: "check out \(sha)")
        try await runGit(["-C", destination, "remote", "set-url", "--", "origin", remote], what: "set the origin of the checkout")
    }

    /// The mirror's path, holding `sha` (fetching the remote if it does not yet), and whether
    /// it was fetched for this call.
    private func ensure(remote: String, sha: String) async throws(CheckoutError) -> (String, Bool) {
        let mirror = (directory as NSString).appendingPathComponent(Self.mirrorName(remote) + ".git")
        if await hasCommit(mirror, sha) { return (mirror, false) }
        let requested = ContinuousClock.now
        if let running = fetches[mirror] {
            _ = await running.task.result
            if await hasCommit(mirror, sha) { return (mirror, running.started >= requested) }
        }
        try await fetch(mirror, remote: remote, since: requested)
        guard await hasCommit(mirror, sha) else {
            throw CheckoutError("commit \(sha) is not in \(remote) (fetched just now)")
        }
        return (mirror, true)
    }

    /// Returns once a fetch of the mirror that started at `since` or later has ended: joins
    /// one running, or waits for an older one and starts another.
    private func fetch(_ mirror: String, remote: String, since: ContinuousClock.Instant) async throws(CheckoutError) {
        while let running = fetches[mirror] {
            let result = await running.task.result
            if running.started >= since { return try Self.check(result, remote) }
            if fetches[mirror]?.started == running.started { fetches[mirror] = nil }
        }
        let task = Task { [git, directory] in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            if FileManager.default.fileExists(atPath: mirror) {
                // The mirror's own origin is the remote it was cloned from (checked above).
                try await git.run(["-C", mirror, "fetch", "--quiet", "--prune", "origin"], what: "fetch \(remote)")
            } else {
                let partial = mirror + ".partial-\(UUID().uuidString.prefix(8))"
                do {
                    try await git.run(["clone", "--quiet", "--mirror", "--", remote, partial], what: "fetch \(remote)")
                    try FileManager.default.moveItem(atPath: partial, toPath: mirror)
                } catch {
                    try? FileManager.default.removeItem(atPath: partial)
                    throw error
                }
            }
        }
        let started = ContinuousClock.now
        fetches[mirror] = (task, started)
        let result = await task.result
        if fetches[mirror]?.started == started { fetches[mirror] = nil }
        try Self.check(result, remote)
    }

    private static func check(_ result: Result<Void, any Error>, _ remote: String) throws(CheckoutError) {
        switch result {
        case .success:
            return
        case .failure(let error as Git.Failure):
            throw CheckoutError(error.description)
        case .failure(let error):
            throw CheckoutError("cannot fetch \(remote): \(error)")
        }
    }

    private func hasCommit(_ mirror: String, _ sha: String) async -> Bool {
        guard FileManager.default.fileExists(atPath: mirror) else { return false }
        let key = mirror + "\n" + sha
        let now = ContinuousClock.now
        if let seen = seenCommits[key], now - seen < Self.commitMemory { return true }
        guard (try? await git.run(["-C", mirror, "cat-file", "-e", "\(sha)^{commit}"], what: "look for \(sha)", timeout: .seconds(30))) != nil else { return false }
        if seenCommits.count >= Self.seenCommitsLimit { seenCommits = seenCommits.filter { now - $0.value < Self.commitMemory } }
        if seenCommits.count >= Self.seenCommitsLimit { seenCommits.removeAll() }
        seenCommits[key] = now
        return true
    }

    private func runGit(_ arguments: [String], what: String) async throws(CheckoutError) {
        do {
            try await git.run(arguments, what: what)
        } catch {
            throw CheckoutError(error.description)
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
