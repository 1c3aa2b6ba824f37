import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The fleet's one way to run git (dispatcher and workers).
///
/// - every remote is checked against the `GitRemotePolicy` before git sees it, and callers put
///   user values after `--`;
/// - git runs with a minimal environment of its own (never the caller's, which holds the broker
///   URL and its password): `PATH`, `HOME` set to an empty private folder, no system or global
///   configuration, no terminal prompts, only the transports the policy allows, and
///   `protocol.ext.allow=never`;
/// - every call has a deadline; past it the whole process group is killed and the call fails
///   saying so;
/// - a failure is one line: git's own `fatal:`/`error:` line, never the rest of the output.
public struct Git: Sendable {
    public let executable: String
    public let policy: GitRemotePolicy
    /// How long one git call may take (a clone of a large repository included).
    public let timeout: Duration

    public init(executable: String = "/usr/bin/git", policy: GitRemotePolicy, timeout: Duration = .seconds(300)) {
        self.executable = executable
        self.policy = policy
        self.timeout = timeout
    }

    /// Transports git may use at all (`GIT_ALLOW_PROTOCOL`); the policy narrows further.
    public static let allowedProtocols = "file:git:http:https:ssh"

    /// Options put before every git command.
    static let hardening = ["-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never", "-c", "credential.helper="]

    /// A failed or refused git call, in one line.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Throws the policy's one-line refusal when `remote` may not be read.
    public func check(remote: String) throws(Failure) {
        if let refusal = policy.refusal(remote) { throw Failure(refusal) }
    }

    /// Runs `git <arguments>` (after `check`ing any remote they hold); returns standard output.
    /// A non-zero exit throws git's one-line reason prefixed with `what`.
    @discardableResult
    public func run(_ arguments: [String], what: String, timeout: Duration? = nil) async throws(Failure) -> String {
        let deadline = timeout ?? self.timeout
        let result: GitProcess.Result
        do {
            result = try await GitProcess.run(executable, Self.hardening + arguments, environment: Self.environment(), timeout: deadline)
        } catch {
            throw Failure("cannot \(what): \(error)")
        }
        if result.timedOut {
            throw Failure("cannot \(what): git did not finish within \(deadline) and was killed")
        }
        guard result.status == 0 else {
            throw Failure("cannot \(what): \(Self.reason(result.error, status: result.status))")
        }
        return result.output
    }

    /// The environment git runs with.
    public static func environment() -> [String: String] {
        [
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": emptyHome,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            "GIT_ALLOW_PROTOCOL": allowedProtocols,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_PROTOCOL_FROM_USER": "0",
            "LC_ALL": "C",
        ]
    }

    /// An empty folder only git's calls use as HOME (no `.gitconfig`, no `.ssh` of the caller's).
    static let emptyHome: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-git-home-\(getuid())").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return path
    }()

    /// git's own reason, one line: its first `fatal:`/`error:` line, else its last line.
    static func reason(_ stderr: String, status: Int32) -> String {
        let lines = stderr.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let line = lines.first { $0.hasPrefix("fatal:") || $0.hasPrefix("error:") } ?? lines.last ?? "git exited with status \(status)"
        return line.count > 300 ? String(line.prefix(300)) + "…" : line
    }
}
