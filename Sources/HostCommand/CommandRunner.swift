import Foundation

/// Runs a host program (git, tar) and captures its output (stdout and stderr together), off
/// Swift's cooperative pool.
///
/// The output is read with one blocking read-to-end on a dispatch queue: `FileHandle`'s
/// `readabilityHandler` registers a dispatch source on the pipe, and tearing that down while
/// the descriptor closes has crashed libdispatch's event loop on Linux.
public enum CommandRunner {
    public struct Result: Sendable {
        public let status: Int32
        public let output: String
    }

    public static func run(_ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
            if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
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
                let output = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: Result(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self)))
            }
        }
    }
}
