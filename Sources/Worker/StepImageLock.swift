import Crypto
import Foundation
import Protocol

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps image builds and the step image cache's removals on one engine apart, across every
/// worker of the host: a build holds the lock shared while the engine builds (a layer it took
/// from the cache must not go under it), a removal holds it exclusively for one image and only
/// when no build runs. A `flock` on a file under `/run/lock` named after the engine's socket,
/// so workers that share nothing but the engine agree (and so do workers of one process).
struct StepImageLock: Sendable {
    let path: String

    init(engineSocket: String, directory: String = "/run/lock") {
        let tag = SHA256.hash(data: Data(engineSocket.utf8)).hexString.prefix(12)
        path = directory + "/stepfleet-step-images-\(tag).lock"
    }

    /// Runs `body` holding the lock shared. A removal holds it for a moment only: past
    /// `timeout`, or when the lock file cannot be had, `body` runs without it (the build's
    /// own retry of a vanished cache layer is then what is left).
    func shared<T>(timeout: Duration = .seconds(30), _ body: () async throws -> T) async rethrows -> T {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
        defer { if descriptor >= 0 { close(descriptor) } }
        if descriptor >= 0 {
            let deadline = ContinuousClock.now + timeout
            while flock(descriptor, LOCK_SH | LOCK_NB) != 0, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        return try await body()
    }

    /// Runs `body` holding the lock exclusively when no build holds it now; nil when one does
    /// (the removal waits for the next prune).
    func exclusiveIfFree<T>(_ body: () async throws -> T) async rethrows -> T? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
        guard descriptor >= 0 else { return try await body() }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { return nil }
        return try await body()
    }
}
