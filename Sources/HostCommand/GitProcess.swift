import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One git process: its own process group (so a deadline kills git and every helper it
/// started), exactly the environment given, standard output and error read apart, off
/// Swift's cooperative pool.
enum GitProcess {
    struct Result: Sendable {
        var status: Int32
        var output: String
        var error: String
        var timedOut: Bool
    }

    struct SpawnFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Output kept per stream; the rest is read and dropped.
    static let outputLimit = 4 << 20

    static func run(_ executable: String, _ arguments: [String], environment: [String: String], timeout: Duration) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Outcome(catching: { try runBlocking(executable, arguments, environment: environment, timeout: timeout) }))
            }
        }
    }

    private typealias Outcome = Swift.Result<Result, any Error>

    private static func runBlocking(_ executable: String, _ arguments: [String], environment: [String: String], timeout: Duration) throws -> Result {
        let started: (pid: pid_t, output: Int32, error: Int32)
        do {
            started = try Spawn.spawnPiped(
                executable, arguments, newProcessGroup: true, environment: environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        } catch {
            throw SpawnFailure(description: "\(error)")
        }
        let pid = started.pid

        // The deadline: kill the whole group (git and its helpers); the pipes then close.
        let deadline = Deadline(group: pid)
        let killer = DispatchWorkItem { deadline.expire() }
        let (seconds, attoseconds) = timeout.components
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)), execute: killer)

        // Standard error on a thread of its own, so neither pipe can fill and block git.
        let errorText = Box()
        let errorDone = DispatchSemaphore(value: 0)
        let errorDescriptor = started.error
        Thread.detachNewThread {
            errorText.data = readAll(errorDescriptor)
            errorDone.signal()
        }
        let outputText = readAll(started.output)
        errorDone.wait()
        close(started.output)
        close(started.error)
        // Wait for git's end without reaping it: while it is a zombie its pid (and so its
        // group's id) cannot be reused, so the group kill below reaches only helpers git left
        // behind (none normally).
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        deadline.finish()
        killer.cancel()
        kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: exit, output: String(decoding: outputText, as: UTF8.self), error: String(decoding: errorText.data, as: UTF8.self), timedOut: deadline.expired)
    }

    /// Reads a descriptor to its end, keeping at most `outputLimit` bytes.
    private static func readAll(_ descriptor: Int32) -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            if data.count < outputLimit { data.append(contentsOf: buffer[0..<min(count, outputLimit - data.count)]) }
        }
        return data
    }

    private final class Box: @unchecked Sendable {
        var data = Data()
    }

    /// The deadline of one run: expiring kills the process group unless the run finished
    /// first. Both happen under one lock, and `finish` comes before git is reaped, so a late
    /// deadline can never kill a group whose id was reused.
    private final class Deadline: @unchecked Sendable {
        private let lock = NSLock()
        private let group: pid_t
        private var finished = false
        private var didExpire = false

        init(group: pid_t) { self.group = group }

        func expire() {
            lock.lock()
            defer { lock.unlock() }
            guard !finished else { return }
            didExpire = true
            kill(-group, SIGKILL)
        }

        func finish() {
            lock.lock()
            finished = true
            lock.unlock()
        }

        var expired: Bool {
            lock.lock()
            defer { lock.unlock() }
            return didExpire
        }
    }
}
