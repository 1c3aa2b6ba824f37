import Foundation
import HostCommand

/// The repository's own files, read from git's objects at the step's commit rather than from
/// the checkout on disk.
///
/// The worker reads `.opschain/Dockerfile` and the actions file on the host, as root. Read
/// through the file system, a committed symbolic link (`.opschain/Dockerfile -> /etc/shadow`)
/// would hand a host file to the step's error, and one to `/dev/zero` would read for ever.
/// From git, a file is what was committed: a regular blob of a known size, or refused.
struct RepositoryFiles: Sendable {
    /// A file larger than this is refused, not read.
    static let maximumBytes = 1 << 20

    /// The mirror, or a checkout with its `.git`.
    let checkout: String
    /// The commit whose tree is read.
    let sha: String
    /// What was read before (for a mirror; a checkout is made for one step and not cached).
    var cache: RepositoryFileCache? = nil

    /// The contents of `path` at the commit, nil when the commit has no such path; a failure
    /// when it is not a regular file or is too large.
    func read(_ path: String, maximumBytes: Int = RepositoryFiles.maximumBytes) async throws(StepFailure) -> Data? {
        let key = "file\n\(checkout)\n\(sha)\n\(maximumBytes)\n\(path)"
        switch cache?.value(key) {
        case .file(let data)?: return data
        case .refused(let failure)?: throw failure
        default: break
        }
        switch try await readFromGit(path, maximumBytes: maximumBytes) {
        case .success(let data):
            cache?.store(key, .file(data))
            return data
        case .failure(let refusal):
            cache?.store(key, .refused(refusal))
            throw refusal
        }
    }

    /// What git's objects decide about a path: its contents, or why it is refused (no regular
    /// file, or too large); a git that failed throws.
    private func readFromGit(_ path: String, maximumBytes: Int) async throws(StepFailure) -> Result<Data?, StepFailure> {
        func refused(_ description: String) -> Result<Data?, StepFailure> { .failure(StepFailure(description)) }
        // `ls-tree -l`: "<mode> <type> <object> <size>\t<path>", nothing when absent.
        let listing = try await git(["ls-tree", "-l", "--full-tree", sha, "--", path])
        guard let line = listing.split(separator: "\n").first(where: { $0.hasSuffix("\t" + path) }) else { return .success(nil) }
        let fields = line.prefix { $0 != "\t" }.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 4 else { return refused("\(path): git describes it as \"\(line)\", which StepFleet does not understand") }
        let mode = fields[0]
        let object = String(fields[2])
        switch mode {
        case "100644", "100755":
            break
        case "120000":
            return refused("\(path) is a symbolic link; StepFleet reads only regular files committed to the repository")
        case "040000":
            return refused("\(path) is a directory; StepFleet reads only regular files committed to the repository")
        default:
            return refused("\(path) is not a regular file (git mode \(mode)); StepFleet reads only regular files committed to the repository")
        }
        guard let size = Int(fields[3]) else { return refused("\(path): git gives no size for it") }
        guard size <= maximumBytes else {
            return refused("\(path) is \(size) bytes, more than the limit of \(maximumBytes) bytes")
        }
        guard object.count >= 40, object.allSatisfy(\.isHexDigit) else { return refused("\(path): git names no object for it") }
        return .success(Data(try await git(["cat-file", "blob", object]).utf8))
    }

    /// What repo.tar holds besides the commit's tree — its refs — in one form read alike from
    /// the mirror (`fromMirror`: its branches, tags and `HEAD`) and from a checkout cloned from
    /// it (its `origin/*` branches, tags and `origin/HEAD`): the commit, the branch `HEAD`
    /// names, every branch and tag with its object. A clone's refs are made from exactly these,
    /// so the build key can be had from the mirror, before (and, on a hit, without) a checkout.
    /// A tag or branch added or moved on the remote at the same SHA changes it, and so the key.
    /// With a `change` (read from the mirror, fetched for that change), the refs read for the
    /// change's first step are its other steps' too: one key for every step of a change.
    func refs(fromMirror: Bool, change: String? = nil) async throws(StepFailure) -> String {
        let key = change.map { "refs\n\(checkout)\n\(sha)\n\($0)" }
        if let key, fromMirror, case .refs(let text)? = cache?.value(key) { return text }
        let text = try await refsFromGit(fromMirror: fromMirror)
        if let key, fromMirror { cache?.store(key, .refs(text)) }
        return text
    }

    private func refsFromGit(fromMirror: Bool) async throws(StepFailure) -> String {
        let branches = fromMirror ? "refs/heads/" : "refs/remotes/origin/"
        let listing = try await git(["for-each-ref", "--format=%(objectname) %(refname)", String(branches.dropLast()), "refs/tags"])
        var lines: [String] = []
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 1)
            guard fields.count == 2 else { continue }
            let name = String(fields[1])
            if name.hasPrefix(branches) {
                // A clone's origin/HEAD is a name for a branch, not a branch.
                if !fromMirror && name == branches + "HEAD" { continue }
                lines.append("\(fields[0]) refs/heads/\(name.dropFirst(branches.count))")
            } else {
                lines.append("\(fields[0]) \(name)")
            }
        }
        var head = ""
        do {
            head = try await git(["symbolic-ref", "-q", fromMirror ? "HEAD" : "refs/remotes/origin/HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
            if head.hasPrefix(branches) { head = "refs/heads/" + String(head.dropFirst(branches.count)) }
        } catch {
            // A detached or unborn HEAD names no branch.
            head = ""
        }
        return "commit \(sha)\nHEAD \(head)\n" + lines.sorted().joined(separator: "\n") + "\n"
    }

    /// Runs the fleet's git (its own minimal environment, a deadline) in the checkout; user
    /// values come after `--` or were checked above.
    private func git(_ arguments: [String]) async throws(StepFailure) -> String {
        do {
            return try await Git(policy: GitRemotePolicy()).run(["-C", checkout] + arguments, what: "read the repository's files at \(sha)", timeout: .seconds(60))
        } catch {
            throw StepFailure(error.description)
        }
    }
}
