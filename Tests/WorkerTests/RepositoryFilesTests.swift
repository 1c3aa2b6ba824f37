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
