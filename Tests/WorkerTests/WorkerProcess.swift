import Foundation
import HostCommand
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif
import TestSupport

/// A `stepfleet` process a test starts (standard output and error to `logPath`): signalled,
/// waited for without blocking, and killed by `kill()` on every exit path of the test.
final class WorkerProcess: Sendable {
    let pid: pid_t
    private let logPath: String
    /// The exit status once the process was reaped.
    private let reaped = Mutex<Int32?>(nil)

    init(arguments: [String], logPath: String) throws {
        self.logPath = logPath
        pid = try Spawn.launch(stepfleetExecutable, arguments, logPath: logPath)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func terminate() {
        reaped.withLock { if $0 == nil { _ = Glibc.kill(pid, SIGTERM) } }
    }

    /// The exit status if the process has ended (reaping it), nil while it runs.
    func exitStatus() -> Int32? {
        reaped.withLock { status in
            if status != nil { return status }
            var raw: Int32 = 0
            guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
            status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            return status
        }
    }

    /// SIGKILL and reap, unless it already ended (its pid is never signalled once reaped).
    func kill() {
        reaped.withLock { status in
            guard status == nil else { return }
            _ = Glibc.kill(pid, SIGKILL)
            status = Spawn.wait(pid)
        }
    }
}
