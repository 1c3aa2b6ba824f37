import Foundation
import HostCommand
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A step container started before its step is known: its file system mounted, its bundle
/// written and `runc run` of `opschain-action --wait` begun, the process waiting for the
/// action's name on its standard input. A step takes it (`go`) and the container is its own
/// from there on, as a container started for it would be; it is never used twice.
final class OCIWarmContainer: Sendable {
    let id: String
    let step: String
    /// The user the bundle runs as (`step_context.json` is written as it). What the container
    /// was made for (image, user, limits) is its pool entry's key (`OCIWarmPool.Key`).
    let user: ContainerUser
    /// The `run: as user …` line the step's log gets.
    let note: String
    let process: OCIProcess
    private let input: Mutex<Int32?>
    private let route = Route()

    /// Where the container's output goes: kept (a little) until a step takes it.
    private final class Route: Sendable {
        let state = Mutex<(output: (@Sendable (Bool, Data) -> Void)?, early: Data)>((nil, Data()))
    }

    /// Starts `runc run` of the prepared bundle, its standard input a pipe that `go` writes.
    init(
        id: String, step: String, user: ContainerUser, note: String, runc: OCIRunc, deadline: Duration
    ) throws(StepFailure) {
        var ends: [Int32] = [0, 0]
        // Close-on-exec: only the runc started here gets the read end (as its standard input).
        guard Spawn.makePipe(&ends) else { throw StepFailure("cannot make a pipe for a warm container: \(String(cString: strerror(errno)))") }
        let route = route
        do {
            process = try runc.run(id: id, bundle: step, timeout: deadline, input: ends[0]) { isError, data in
                let output = route.state.withLock { route -> (@Sendable (Bool, Data) -> Void)? in
                    if route.output == nil, route.early.count < 65536 { route.early.append(data.prefix(65536 - route.early.count)) }
                    return route.output
                }
                output?(isError, data)
            }
        } catch {
            close(ends[0])
            close(ends[1])
            throw StepFailure("cannot start runc: \(error)")
        }
        close(ends[0])
        input = Mutex(ends[1])
        self.id = id
        self.step = step
        self.user = user
        self.note = note
    }

    /// What the container wrote before a step took it (an error of its start, usually).
    var earlyOutput: String { route.state.withLock { String(decoding: $0.early, as: UTF8.self) } }

    /// Hands the container to its step: output to `output` from now on, runc's deadline
    /// `deadline` from now, and the action's name written; false when the container is gone.
    func go(action: String, deadline: Duration, output: @escaping @Sendable (Bool, Data) -> Void) -> Bool {
        route.state.withLock { $0.output = output }
        process.extendDeadline(deadline)
        guard let descriptor = input.withLock({ descriptor -> Int32? in
            defer { descriptor = nil }
            return descriptor
        }) else { return false }
        defer { close(descriptor) }
        let bytes = Array((action + "\n").utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            written += count
        }
        return true
    }

    /// Closes its standard input unused: `opschain-action --wait` then ends by itself.
    func release() {
        if let descriptor = input.withLock({ descriptor -> Int32? in
            defer { descriptor = nil }
            return descriptor
        }) {
            close(descriptor)
        }
    }
}
