import Foundation

/// Resolves a git revision of a remote to a commit SHA when a change is created.
enum GitResolver {
    static func resolve(remote: String, revision: String) async throws -> String {
        if revision.count == 40, revision.allSatisfy(\.isHexDigit) { return revision.lowercased() }
        let (status, output) = try await run("/usr/bin/git", ["ls-remote", remote, revision, "refs/heads/\(revision)", "refs/tags/\(revision)", "refs/tags/\(revision)^{}"])
        guard status == 0 else {
            throw APIError.badRequest("cannot read the git repository \(remote): \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        var refs: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "\t")
            if parts.count == 2 { refs[String(parts[1])] = String(parts[0]) }
        }
        for name in ["refs/tags/\(revision)^{}", "refs/heads/\(revision)", "refs/tags/\(revision)", revision] {
            if let sha = refs[name] { return sha }
        }
        throw APIError.badRequest("git revision \"\(revision)\" is not a branch, tag or full SHA of \(remote)")
    }

    private static func run(_ executable: String, _ arguments: [String]) async throws -> (Int32, String) {
        try await withCheckedThrowingContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(["GIT_TERMINAL_PROMPT": "0"]) { $1 }
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            process.standardInput = FileHandle.nullDevice
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
                return
            }
            DispatchQueue.global().async {
                let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, output))
            }
        }
    }
}
