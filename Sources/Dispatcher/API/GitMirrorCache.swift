import Crypto
import Foundation
import HostCommand
import StepRunner

/// Bare mirrors of project repositories, next to the dispatcher's database
/// (`<database>.git-mirrors/`), read through the fleet's git runner: short SHAs are resolved
/// and the actions file is read from git's objects at a change's SHA before anything is
/// queued. A mirror fetches only when the commit it needs is missing.
///
/// Why a mirror rather than `git archive --remote`: `git archive --remote` needs the remote's
/// `upload-archive` service, which local paths, `file://` and http(s) remotes do not offer;
/// a fetch works with every remote the policy allows, and later changes at the same SHA read
/// the file without touching the remote. One actor: fetches into a mirror never overlap.
actor GitMirrorCache {
    let directory: String
    let git: Git

    init(directory: String, git: Git) {
        self.directory = directory
        self.git = git
    }

    /// The actions file committed at `sha`: its path and text. Throws a one-line reason.
    struct ActionsSource: Sendable {
        let path: String
        let text: String
    }

    /// The full SHAs of the commits whose name starts with `prefix` (hex, 7 to 39 digits),
    /// after fetching the remote's branches and tags.
    func commits(remote: String, prefix: String) async throws(Git.Failure) -> [String] {
        let mirror = try await fetched(remote)
        let names: String
        do {
            names = try await git.run(["-C", mirror, "rev-parse", "--disambiguate=\(prefix)"], what: "look up \(prefix)", timeout: .seconds(60))
        } catch {
            return []
        }
        var commits: [String] = []
        for name in names.split(whereSeparator: \.isNewline).map(String.init) where name.count == 40 {
            if (try? await git.run(["-C", mirror, "cat-file", "-t", name], what: "read \(name)", timeout: .seconds(30)))?.hasPrefix("commit") == true {
                commits.append(name)
            }
        }
        return commits
    }

    /// Reads the actions file at `sha` from git objects (fetching when the mirror lacks the
    /// commit); nil when the commit has none. Only a regular file up to
    /// `ActionsFile.maximumBytes` is read, as the worker does.
    func actionsFile(remote: String, sha: String) async throws(Git.Failure) -> ActionsSource? {
        let mirror = try await mirror(remote)
        if !(await hasCommit(mirror, sha)) {
            _ = try await fetched(remote)
            if !(await hasCommit(mirror, sha)) {
                // A commit no branch or tag reaches: ask for it by name (local and file remotes allow it).
                try? await exclusive(mirror) { () throws(Git.Failure) in
                    _ = try await git.run(["-C", mirror, "fetch", "--quiet", "--no-tags", "--", remote, sha], what: "fetch \(sha) from \(remote)")
                }
            }
            guard await hasCommit(mirror, sha) else { throw Git.Failure("commit \(sha) is not in \(remote)") }
        }
        let listing = try await git.run(
            ["-C", mirror, "ls-tree", "-l", sha, "--"] + ActionsFile.candidatePaths, what: "list the actions file at \(sha)", timeout: .seconds(30))
        var entries: [String: (mode: String, object: String, size: Int)] = [:]
        for line in listing.split(whereSeparator: \.isNewline) {
            let halves = line.split(separator: "\t", maxSplits: 1)
            let fields = halves.first?.split(separator: " ", omittingEmptySubsequences: true) ?? []
            guard halves.count == 2, fields.count == 4 else { continue }
            entries[String(halves[1])] = (String(fields[0]), String(fields[2]), Int(fields[3]) ?? Int.max)
        }
        guard let path = ActionsFile.candidatePaths.first(where: { entries[$0] != nil }), let entry = entries[path] else { return nil }
        guard entry.mode.hasPrefix("100") else {
            throw Git.Failure("\(path) at \(sha) is not a regular file (a symbolic link or a submodule); StepFleet reads only regular files committed to the repository")
        }
        guard entry.size <= ActionsFile.maximumBytes else {
            throw Git.Failure("\(path) at \(sha) is \(entry.size) bytes, more than the limit of \(ActionsFile.maximumBytes) bytes")
        }
        let text = try await git.run(["-C", mirror, "cat-file", "blob", entry.object], what: "read \(path) at \(sha)", timeout: .seconds(30))
        return ActionsSource(path: path, text: text)
    }

    private func hasCommit(_ mirror: String, _ sha: String) async -> Bool {
        (try? await git.run(["-C", mirror, "cat-file", "-e", "\(sha)^{commit}"], what: "look up \(sha)", timeout: .seconds(30))) != nil
    }

    /// The mirror of `remote`, made (empty) when missing.
    private func mirror(_ remote: String) async throws(Git.Failure) -> String {
        try git.check(remote: remote)
        let name = String(SHA256.hash(data: Data(remote.utf8)).map { String(format: "%02x", $0) }.joined().prefix(32))
        let path = directory + "/" + name + ".git"
        try await exclusive(path) { () throws(Git.Failure) in
            // Checked again once this call has the mirror to itself: changes for a new project
            // created at the same moment would otherwise both run `git init` on it.
            guard !FileManager.default.fileExists(atPath: path + "/HEAD") else { return }
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw Git.Failure("cannot make the git mirror folder \(directory): \(error.localizedDescription)")
            }
            try await git.run(["init", "--quiet", "--bare", "--", path], what: "make a git mirror in \(directory)", timeout: .seconds(30))
        }
        return path
    }

    /// Mirrors being made or fetched into, and who waits for each: the actor lets calls
    /// interleave at every `await`, so without this two fetches into one mirror overlap and
    /// one fails on git's lock files (seen with `stepfleet load` submitting changes at once).
    private var busy: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    private func exclusive<T>(_ mirror: String, _ body: () async throws(Git.Failure) -> T) async throws(Git.Failure) -> T {
        while busy.contains(mirror) {
            await withCheckedContinuation { waiting[mirror, default: []].append($0) }
        }
        busy.insert(mirror)
        defer {
            busy.remove(mirror)
            for waiter in waiting.removeValue(forKey: mirror) ?? [] { waiter.resume() }
        }
        return try await body()
    }

    /// The mirror after fetching the remote's branches and tags.
    private func fetched(_ remote: String) async throws(Git.Failure) -> String {
        let mirror = try await mirror(remote)
        try await exclusive(mirror) { () throws(Git.Failure) in
            _ = try await git.run(
                ["-C", mirror, "fetch", "--quiet", "--prune", "--no-tags", "--", remote, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                what: "fetch \(remote)")
        }
        return mirror
    }
}
