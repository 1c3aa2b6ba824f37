import Foundation
import HostCommand

/// The repository's root folder.
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A failure of test set-up, with what went wrong.
public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The `stepfleet` binary built next to the running test bundle (`swift build --build-tests`
/// builds it), or the debug build's.
public var stepfleetExecutable: String {
    let sibling = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("stepfleet").path
    if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
    return repositoryRoot.appendingPathComponent(".build/debug/stepfleet").path
}

/// Runs a program to its end; returns its exit status and its stdout and stderr together
/// (in the order written). Waits on the pid (`HostCommand.Spawn`), not `Process.waitUntilExit`,
/// which was seen never to return beside long-lived children. Past `timeout` the program and
/// its process group are killed and this throws: a hung program fails its test, not the run.
@discardableResult
public func runProgram(_ executable: String, _ arguments: [String], in directory: String? = nil, timeout: Duration = .seconds(300)) throws -> (status: Int32, output: String) {
    let result = try Spawn.capture(executable, arguments, in: directory, mergingErrors: true, timeout: timeout)
    return (result.status, result.stdout)
}

/// `runProgram` on a thread of its own, for programs that run a long time (a chaos scenario, a
/// load run): the wait holds none of Swift's cooperative threads (two on a 2-core machine),
/// which every other test running meanwhile needs — blocking them starved the whole suite, and
/// unit tests ran out their time limits without having run.
public func runProgramDetached(_ executable: String, _ arguments: [String], in directory: String? = nil, timeout: Duration = .seconds(300)) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result { try runProgram(executable, arguments, in: directory, timeout: timeout) })
        }.start()
    }
}

/// Runs a program to its end; returns its exit status, stdout and stderr apart.
public func runProgramSeparately(_ executable: String, _ arguments: [String], in directory: String? = nil, timeout: Duration = .seconds(300)) throws -> Spawn.Captured {
    try Spawn.capture(executable, arguments, in: directory, timeout: timeout)
}

/// `ops/rabbitmqctl` against a private node (default: the main one); throws on failure.
@discardableResult
public func rabbitmqctl(node: String? = nil, _ arguments: String...) throws -> String {
    let result = try runProgram(repositoryRoot.appendingPathComponent("ops/rabbitmqctl").path, (node.map { ["--node", $0] } ?? []) + arguments)
    guard result.status == 0 else { throw TestSetupError("rabbitmqctl \(arguments.joined(separator: " ")): \(result.output)") }
    return result.output
}

/// The step runtime the end-to-end suites give their workers: `STEPFLEET_TEST_RUNTIME`
/// (`docker` or `oci`), `docker` when unset. A value that is neither stops the run with what to
/// set, rather than quietly testing the other runtime.
public let testRuntimeName: String = {
    let value = ProcessInfo.processInfo.environment["STEPFLEET_TEST_RUNTIME"] ?? "docker"
    guard ["docker", "oci"].contains(value) else { fatalError("STEPFLEET_TEST_RUNTIME must be docker or oci, not \(value.prefix(40))") }
    return value
}()

/// A test vhost's name: `base`, plus `STEPFLEET_TEST_VHOST_SUFFIX` when set, so that test
/// runs from two checkouts on one broker never share queues.
public func testVhost(_ base: String) -> String {
    base + (ProcessInfo.processInfo.environment["STEPFLEET_TEST_VHOST_SUFFIX"] ?? "")
}

/// Creates a vhost on the main test node, with all permissions for guest (again is harmless);
/// throws with rabbitmqctl's words when it cannot.
public func ensureVhost(_ vhost: String) throws {
    try rabbitmqctl("add_vhost", vhost)
    try rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
}

/// A git repository made for a test, with one commit on branch main.
public struct TestRepository: Sendable {
    public let path: String
    public let sha: String

    /// Commits `files` (relative path → contents) to a new repository.
    public static func make(_ files: [String: String]) throws -> TestRepository {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("repo-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (name, contents) in files {
            let file = (path as NSString).appendingPathComponent(name)
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        }
        try git(path, "init", "--quiet", "--initial-branch=main")
        try git(path, "add", "-A")
        try git(path, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "-m", "test")
        return TestRepository(path: path, sha: try git(path, "rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @discardableResult
    public static func git(_ directory: String, _ arguments: String...) throws -> String {
        let result = try runProgram("/usr/bin/git", ["-C", directory] + arguments)
        guard result.status == 0 else { throw TestSetupError("git \(arguments.joined(separator: " ")): \(result.output)") }
        return result.output
    }
}
