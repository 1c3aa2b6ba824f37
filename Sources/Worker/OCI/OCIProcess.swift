import Foundation
import HostCommand
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One `runc` process: standard input from /dev/null, standard output and error read apart
/// on threads of their own (never on Swift's cooperative pool), and a deadline past which
/// it is killed. Arguments are passed as an array, never through a shell.
final class OCIProcess: Sendable {
    struct Result: Sendable {
        var status: Int32
        var output: String
        var error: String
        var timedOut: Bool
    }

    struct SpawnFailure: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    private let state: State

    /// Shared with the threads that wait for the process and enforce its deadline.
    private final class State: Sendable {
        let exited = Mutex<(status: Int32?, waiters: [CheckedContinuation<Int32, Never>])>((nil, []))
        /// `generation` counts the deadlines set (`extendDeadline`): only the latest kills.
        let deadline = Mutex((finished: false, expired: false, generation: 0))
    }

    /// Starts `executable`; each chunk of its standard output and error goes to `output` (on
    /// a reader thread, in order per stream). The process is killed past `timeout`.
    /// Standard input is /dev/null, or `input` (the caller's to close).
    init(
        _ executable: String, _ arguments: [String], timeout: Duration, input: Int32? = nil, output: @escaping @Sendable (_ isError: Bool, Data) -> Void
    ) throws(SpawnFailure) {
        let started: (pid: pid_t, output: Int32, error: Int32)
        do {
            started = try Spawn.spawnPiped(executable, arguments, environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], input: input)
        } catch {
            throw SpawnFailure(description: "\(error)")
        }
        let pid = started.pid
        self.pid = pid
        let child = pid
        let readers = DispatchGroup()
        for (descriptor, isError) in [(started.output, false), (started.error, true)] {
            readers.enter()
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                    if count < 0 && errno == EINTR { continue }
                    if count <= 0 { break }
                    output(isError, Data(buffer[0..<count]))
                }
                close(descriptor)
                readers.leave()
            }
        }
        // The deadline kills the process unless it ended first; both under one lock, and the
        // end is noted before the process is reaped, so a late deadline never hits a reused pid.
        let state = State()
        self.state = state
        Self.arm(state, child, timeout)
        Thread.detachNewThread {
            var info = siginfo_t()
            while waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
            state.deadline.withLock { $0.finished = true }
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            // The output is complete once both pipes closed; a grandchild holding them open
            // (runc's container, killed with it) may take a moment more, never for ever.
            _ = readers.wait(timeout: .now() + 5)
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let waiters = state.exited.withLock { exited in
                exited.status = code
                defer { exited.waiters = [] }
                return exited.waiters
            }
            for waiter in waiters { waiter.resume(returning: code) }
        }
    }

    /// Replaces the deadline: the process is killed `timeout` from now unless it ends first.
    func extendDeadline(_ timeout: Duration) {
        Self.arm(state, pid, timeout)
    }

    private static func arm(_ state: State, _ child: pid_t, _ timeout: Duration) {
        let generation = state.deadline.withLock { deadline in
            deadline.generation += 1
            return deadline.generation
        }
        let (seconds, attoseconds) = timeout.components
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))) {
            state.deadline.withLock { deadline in
                guard !deadline.finished, deadline.generation == generation else { return }
                deadline.expired = true
                kill(child, SIGKILL)
            }
        }
    }

    /// The exit status (128 + signal for a killed process).
    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let done = state.exited.withLock { exited -> Int32? in
                if let status = exited.status { return status }
                exited.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    var timedOut: Bool { state.deadline.withLock { $0.expired } }

    /// True once the process has ended (and was reaped).
    var hasExited: Bool { state.exited.withLock { $0.status != nil } }

    /// Runs to the end, collecting its output (at most 1 MiB per stream).
    static func run(_ executable: String, _ arguments: [String], timeout: Duration) async throws(SpawnFailure) -> Result {
        let collected = Mutex((Data(), Data()))
        let process = try OCIProcess(executable, arguments, timeout: timeout) { isError, data in
            collected.withLock { buffers in
                if isError {
                    if buffers.1.count < 1 << 20 { buffers.1.append(data) }
                } else if buffers.0.count < 1 << 20 {
                    buffers.0.append(data)
                }
            }
        }
        let status = await process.wait()
        let (output, error) = collected.withLock { $0 }
        return Result(status: status, output: String(decoding: output, as: UTF8.self), error: String(decoding: error, as: UTF8.self), timedOut: process.timedOut)
    }
}
