import Foundation
import GRDB
import HostCommand
import Protocol
import TestSupport
import Testing
@testable import Dispatcher
@testable import Worker

/// Issue 11, item 1: a git remote is data, never a command. Through a real dispatcher's API on
/// a real SQLite file, with a real git.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct GitRemoteSecurityTests {
        /// A remote that, read as an option of `git ls-remote`, runs a shell: it would make a
        /// marker file and print `INJECTED-42` (the text is not in the remote itself).
        static func injection(marker: String) -> String {
            "--upload-pack=touch \(marker); echo INJECTED-$((6*7)) >&2; env >&2; :"
        }

        @Test func anOptionAsRemoteIsRefusedAndNeverRuns() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let marker = FileManager.default.temporaryDirectory.appendingPathComponent("injected-\(UUID().uuidString.prefix(8))").path
            let remote = Self.injection(marker: marker)

            // At the door.
            let (created, answer) = try await fleet.raw("POST", "/projects", (["code": "evil", "git_remote": .string(remote)] as JSON).serialized())
            #expect(created == 400, "\(answer)")
            #expect(answer["error"]?.stringValue?.contains("starts with '-'") == true, "\(answer)")

            // A row stored before the policy existed cannot bypass it: the dispatcher checks at each git use.
            try await fleet.store.write { db in
                if try Row.fetchOne(db, sql: "SELECT 1 FROM projects WHERE code = 'evil'") == nil {
                    try Store.createProject(db, Project(code: "evil", name: "evil", gitRemote: remote))
                }
                try Store.createEnvironment(db, Environment(projectCode: "evil", code: "e", name: "e"))
            }
            let (status, change) = try await fleet.raw("POST", "/changes", #"{"project": "evil", "environment": "e", "action": "a"}"#)
            #expect(status == 400, "\(change)")
            let message = change["error"]?.stringValue ?? ""
            #expect(message.contains("starts with '-'"), "\(message)")
            #expect(!message.contains("INJECTED-42") && !message.contains("PATH=") && !message.contains("amqp"), "\(message)")
            #expect(!message.contains("\n"), "one line: \(message)")
            #expect(!FileManager.default.fileExists(atPath: marker), "the injected command ran")
            try? FileManager.default.removeItem(atPath: marker)
            await fleet.stop()
        }

        @Test func retryWithRefreshShaGoesThroughThePolicyToo() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }")
            let id = try await fleet.createChange(repo, action: "a")
            _ = try await fleet.post("/changes/\(id)/cancel", nil)
            let marker = FileManager.default.temporaryDirectory.appendingPathComponent("injected-\(UUID().uuidString.prefix(8))").path
            let project = repo.project
            try await fleet.store.write { db in
                try db.execute(sql: "UPDATE projects SET git_remote = ? WHERE code = ?", arguments: [Self.injection(marker: marker), project])
            }
            let (status, answer) = try await fleet.raw("POST", "/changes/\(id)/retry", #"{"refresh_sha": true}"#)
            #expect(status == 400, "\(answer)")
            #expect(answer["error"]?.stringValue?.contains("INJECTED-42") == false)
            #expect(!FileManager.default.fileExists(atPath: marker), "the injected command ran")
            await fleet.stop()
            try await fleet.dropQueuedJobs()
        }

        @Test func remoteHelpersHostFilesAndLoopbackAreRefusedAtProjectCreation() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let marker = FileManager.default.temporaryDirectory.appendingPathComponent("injected-\(UUID().uuidString.prefix(8))").path
            let cases: [(String, String)] = [
                ("ext::sh -c touch% \(marker)", "remote helper"),
                (repositoryRoot.path, "outside the configured roots"),
                ("/etc", "outside the configured roots"),
                ("file:///etc", "outside the configured roots"),
                ("http://127.0.0.1:\(fleet.port)/projects", "loopback"),
                ("http://169.254.169.254/latest/meta-data/", "loopback"),
                ("git@localhost:repo.git", "loopback"),
            ]
            for (index, (remote, reason)) in cases.enumerated() {
                let (status, answer) = try await fleet.raw("POST", "/projects", (["code": .string("bad\(index)"), "git_remote": .string(remote)] as JSON).serialized())
                #expect(status == 400, "\(remote): \(answer)")
                #expect(answer["error"]?.stringValue?.contains(reason) == true, "\(remote): \(answer)")
            }
            #expect(try await fleet.get("/projects").arrayValue?.isEmpty == true)
            #expect(!FileManager.default.fileExists(atPath: marker))
            await fleet.stop()
        }

        @Test func theWorkersMirrorRefusesWhatThePolicyRefuses() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mirror-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let marker = folder + "-injected"
            let listener = try LoopbackListener()
            // The repository exists and holds the commit, but lies outside the worker's one root.
            let repository = try TestRepository.make(["a": "1"])
            let mirror = GitMirror(directory: folder + "/git", policy: GitRemotePolicy(localRoots: [folder + "/allowed"]))
            for remote in [Self.injection(marker: marker), "ext::sh -c touch% \(marker)", repository.path, "file://" + repository.path,
                           "http://127.0.0.1:\(listener.port)/r.git"] {
                await #expect(throws: CheckoutError.self, "\(remote)") {
                    try await mirror.checkout(remote: remote, sha: repository.sha, into: folder + "/checkout-\(UUID().uuidString.prefix(4))")
                }
            }
            #expect(!FileManager.default.fileExists(atPath: marker), "the injected command ran")
            #expect(listener.connections == 0, "the worker connected to a loopback address")
            // A remote under a root still mirrors and checks out.
            let allowed = GitMirror(directory: folder + "/git", policy: GitRemotePolicy(localRoots: [FileManager.default.temporaryDirectory.path]))
            try await allowed.checkout(remote: repository.path, sha: repository.sha, into: folder + "/checkout")
            #expect(FileManager.default.fileExists(atPath: folder + "/checkout/a"))
        }

        @Test func theDispatcherMakesNoRequestToALoopbackRemote() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let listener = try LoopbackListener()
            let remote = "http://127.0.0.1:\(listener.port)/projects"
            let (created, answer) = try await fleet.raw("POST", "/projects", (["code": "loop", "git_remote": .string(remote)] as JSON).serialized())
            #expect(created == 400 && answer["error"]?.stringValue?.contains("loopback") == true, "\(answer)")
            try await fleet.store.write { db in
                if try Row.fetchOne(db, sql: "SELECT 1 FROM projects WHERE code = 'loop'") == nil {
                    try Store.createProject(db, Project(code: "loop", name: "loop", gitRemote: remote))
                }
                try Store.createEnvironment(db, Environment(projectCode: "loop", code: "e", name: "e"))
            }
            let (status, change) = try await fleet.raw("POST", "/changes", #"{"project": "loop", "environment": "e", "action": "a"}"#)
            #expect(status == 400 && change["error"]?.stringValue?.contains("--git-allow-loopback") == true, "\(change)")
            #expect(listener.connections == 0, "the dispatcher connected to a loopback address")
            await fleet.stop()
        }

        @Test func aGitCallPastItsDeadlineIsKilledAndSaysSo() async throws {
            // A git:// server that accepts and never answers.
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(listener) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
            listen(listener, 8)
            let port = UInt16(bigEndian: address.sin_port)
            let git = Git(policy: GitRemotePolicy(allowLoopback: true), timeout: .seconds(2))
            let started = ContinuousClock.now
            await #expect {
                try await git.run(["ls-remote", "--", "git://127.0.0.1:\(port)/r.git"], what: "read the repository")
            } throws: { error in
                "\(error)".contains("did not finish within") && "\(error)".contains("killed")
            }
            #expect(ContinuousClock.now - started < .seconds(10))
        }

        @Test func gitRunsWithoutTheCallersEnvironment() async throws {
            let repository = try TestRepository.make(["a": "1"])
            // A shell alias prints the environment git gives its children.
            let git = Git(policy: GitRemotePolicy(localRoots: [FileManager.default.temporaryDirectory.path]))
            let output = try await git.run(["-C", repository.path, "-c", "alias.showenv=!env", "showenv"], what: "print git's environment")
            // No variable of this process reaches git (it is not changed here: tests run in
            // parallel), except those git's own environment sets, git's own and the shell's.
            let ours = Set(Git.environment().keys).union(["PWD", "OLDPWD", "SHLVL", "_"])
            let callers = ProcessInfo.processInfo.environment.keys.filter { !ours.contains($0) && !$0.hasPrefix("GIT_") }
            try #require(!callers.isEmpty, "this process has no variable of its own to look for")
            let shown = Set(output.split(separator: "\n").compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
            #expect(shown.isDisjoint(with: callers), "reached git: \(shown.intersection(callers).sorted())")
            #expect(output.contains("GIT_CONFIG_NOSYSTEM=1") && output.contains("GIT_ALLOW_PROTOCOL=file:git:http:https:ssh"), "\(output)")
            let configuration = try await git.run(["-C", repository.path, "config", "--list"], what: "list git's configuration")
            #expect(configuration.contains("protocol.ext.allow=never"), "\(configuration)")
        }
    }
}

/// A TCP listener on 127.0.0.1 that accepts and at once closes every connection, counting them.
final class LoopbackListener: @unchecked Sendable {
    let port: UInt16
    private let descriptor: Int32
    private let lock = NSLock()
    private var count = 0

    init() throws {
        let opened = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        descriptor = opened
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(opened, $0, length) } }
        guard bound == 0, listen(opened, 16) == 0 else { throw TestSetupError("cannot listen on 127.0.0.1") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(opened, $0, &length) } }
        port = UInt16(bigEndian: address.sin_port)
        let listening = descriptor
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listening, nil, nil)
                if client < 0 { return }
                lock.lock()
                count += 1
                lock.unlock()
                close(client)
            }
        }
    }

    var connections: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    deinit { shutdown(descriptor, Int32(SHUT_RDWR)); close(descriptor) }
}
