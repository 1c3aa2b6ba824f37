import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// A repository with `links` (path → target) committed as symbolic links beside `files`: the
/// repository and the SHA of the commit that adds the links.
func repositoryWithLinks(_ files: [String: String], links: [String: String]) throws -> (repository: TestRepository, sha: String) {
    let base = try TestRepository.make(files)
    for (path, target) in links {
        let full = (base.path as NSString).appendingPathComponent(path)
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: full, withDestinationPath: target)
    }
    try TestRepository.git(base.path, "add", "-A")
    try TestRepository.git(base.path, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "-m", "links")
    return (base, try TestRepository.git(base.path, "rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines))
}

/// The worker reads the repository's Dockerfile and actions file from git's objects: a
/// committed symbolic link never reaches a host file, and nothing is read past a size cap.
@Suite(.timeLimit(.minutes(10))) struct RepositoryFilesTests {
    @Test(.timeLimit(.minutes(1))) func regularFilesAreReadAndEverythingElseRefused() async throws {
        let repository = try repositoryWithLinks(
            [".opschain/Dockerfile": "FROM x\n", "big": String(repeating: "x", count: 2000), "dir/file": "y"],
            links: [".opschain/actions.yml": "/etc/passwd"])
        let files = RepositoryFiles(checkout: repository.repository.path, sha: repository.sha)
        #expect(try await files.read(".opschain/Dockerfile") == Data("FROM x\n".utf8))
        #expect(try await files.read(".opschain/actions.json") == nil)
        await #expect(throws: StepFailure(".opschain/actions.yml is a symbolic link; StepFleet reads only regular files committed to the repository")) {
            _ = try await files.read(".opschain/actions.yml")
        }
        await #expect(throws: StepFailure("dir is a directory; StepFleet reads only regular files committed to the repository")) {
            _ = try await files.read("dir")
        }
        await #expect(throws: StepFailure("big is 2000 bytes, more than the limit of 1000 bytes")) {
            _ = try await files.read("big", maximumBytes: 1000)
        }
        // A user value that looks like an option is a path after `--`.
        #expect(try await files.read("--output=/tmp/x") == nil)
    }

    /// With a cache, a second step of the same commit (or change, for the refs) starts no
    /// git: the answers, refusals included, come back with the repository gone.
    @Test(.timeLimit(.minutes(1))) func cachedAnswersNeedNoGit() async throws {
        let repository = try repositoryWithLinks([".opschain/Dockerfile": "FROM x\n"], links: [".opschain/actions.yml": "/etc/passwd"])
        let cache = RepositoryFileCache()
        let files = RepositoryFiles(checkout: repository.repository.path, sha: repository.sha, cache: cache)
        let refs = try await files.refs(fromMirror: false, change: "c1")
        #expect(try await files.read(".opschain/Dockerfile") == Data("FROM x\n".utf8))
        #expect(try await files.read(".opschain/actions.json") == nil)
        let refusal = StepFailure(".opschain/actions.yml is a symbolic link; StepFleet reads only regular files committed to the repository")
        await #expect(throws: refusal) { _ = try await files.read(".opschain/actions.yml") }

        try FileManager.default.removeItem(atPath: repository.repository.path + "/.git")
        #expect(try await files.read(".opschain/Dockerfile") == Data("FROM x\n".utf8))
        #expect(try await files.read(".opschain/actions.json") == nil)
        await #expect(throws: refusal) { _ = try await files.read(".opschain/actions.yml") }
        // Refs are kept only when read from a mirror for a change.
        await #expect(throws: StepFailure.self) { _ = try await files.refs(fromMirror: false, change: "c1") }
        #expect(!refs.isEmpty)
        // Without the cache, git is asked, and fails now.
        await #expect(throws: StepFailure.self) { _ = try await RepositoryFiles(checkout: repository.repository.path, sha: repository.sha).read(".opschain/Dockerfile") }
    }

    @Test(.timeLimit(.minutes(1))) func aMirrorsRefsAreKeptPerChange() async throws {
        let repository = try TestRepository.make([".opschain/actions.yml": "actions: {}\n"])
        let mirror = FileManager.default.temporaryDirectory.appendingPathComponent("mirror-\(UUID().uuidString.prefix(6)).git").path
        try TestRepository.git(FileManager.default.temporaryDirectory.path, "clone", "--quiet", "--mirror", "--", repository.path, mirror)
        defer { try? FileManager.default.removeItem(atPath: mirror) }
        let sha = try TestRepository.git(mirror, "rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines)
        let files = RepositoryFiles(checkout: mirror, sha: sha, cache: RepositoryFileCache())
        let first = try await files.refs(fromMirror: true, change: "c1")
        try TestRepository.git(mirror, "tag", "v9", sha)
        // The same change keeps the refs its first step saw; another change reads the new tag.
        #expect(try await files.refs(fromMirror: true, change: "c1") == first)
        let second = try await files.refs(fromMirror: true, change: "c2")
        #expect(second.contains("refs/tags/v9") && !first.contains("refs/tags/v9"), "\(second)")
    }
}

/// The cache's bounds: entries and bytes, the least recently used leaving first.
@Suite(.timeLimit(.minutes(1))) struct RepositoryFileCacheTests {
    @Test func theLeastRecentlyUsedLeaveFirst() {
        let cache = RepositoryFileCache(maximumEntries: 2, maximumBytes: 1 << 20)
        cache.store("a", .file(Data("1".utf8)))
        cache.store("b", .file(nil))
        #expect(cache.value("a") == .file(Data("1".utf8)))
        cache.store("c", .refs("r"))
        #expect(cache.value("b") == nil)
        #expect(cache.value("a") == .file(Data("1".utf8)))
        #expect(cache.value("c") == .refs("r"))
        #expect(cache.count == 2)
    }

    @Test func bytesAreBounded() {
        let cache = RepositoryFileCache(maximumEntries: 100, maximumBytes: 100)
        cache.store("k1", .file(Data(count: 40)))
        cache.store("k2", .file(Data(count: 40)))
        #expect(cache.bytes == 84)
        cache.store("k3", .file(Data(count: 40)))
        #expect(cache.value("k1") == nil && cache.value("k2") != nil && cache.value("k3") != nil)
        #expect(cache.bytes == 84)
        // An entry larger than the whole cache is not kept, and evicts nothing.
        cache.store("huge", .file(Data(count: 200)))
        #expect(cache.value("huge") == nil && cache.count == 2)
        // Storing a key again replaces it and its size.
        cache.store("k3", .refused(StepFailure("no")))
        #expect(cache.value("k3") == .refused(StepFailure("no")) && cache.bytes == 42 + 4)
    }
}

extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(10))) struct RepositorySymlinkTests {
        /// `ln -s <host file> .opschain/Dockerfile`: the step fails saying why, and no line of
        /// the host file reaches the outcome or the log.
        @Test(.timeLimit(.minutes(3))) func aDockerfileLinkedToAHostFileIsRefused() async throws {
            let hostFile = FileManager.default.temporaryDirectory.appendingPathComponent("host-only-\(UUID().uuidString.prefix(6))").path
            let hostLine = "host-secret-line-\(UInt32.random(in: 100_000...999_999))"
            try "\(hostLine)\nsecond line\n".write(toFile: hostFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: hostFile) }
            let harness = try await WorkerHarness()
            let repository = try repositoryWithLinks([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"], links: [".opschain/Dockerfile": hostFile])
            var job = harness.job(repository.repository, action: "ok")
            job.git.sha = repository.sha
            let outcome = try await harness.run(job)
            #expect(outcome.status == .error)
            #expect(outcome.error == ".opschain/Dockerfile is a symbolic link; StepFleet reads only regular files committed to the repository", "\(outcome.error ?? "")")
            #expect(!outcome.runStarted)
            let log = await harness.logLines(for: outcome.ref).map(\.text).joined(separator: "\n")
            #expect(!log.contains(hostLine) && !(outcome.error ?? "").contains(hostLine), "\(log)")

            // An actions file linked to /dev/zero is refused at once instead of read for ever.
            let zero = try repositoryWithLinks(["README": "x"], links: [".opschain/actions.yml": "/dev/zero"])
            // Read for ever, /dev/zero would give no outcome within run's 60 s.
            var zeroJob = harness.job(zero.repository, action: "ok")
            zeroJob.git.sha = zero.sha
            let refused = try await harness.run(zeroJob, timeout: .seconds(60))
            #expect(refused.error == ".opschain/actions.yml is a symbolic link; StepFleet reads only regular files committed to the repository", "\(refused.error ?? "")")
            #expect(try await harness.run(harness.job(try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"]), action: "ok")).status == .success)
            await harness.stop()
        }
    }
}
