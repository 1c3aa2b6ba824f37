import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension Spawn {
    /// What a program printed, and how it ended.
    public struct Captured: Sendable {
        /// The exit status (128 + the signal's number if a signal ended it).
        public let status: Int32
        /// Standard output; with `mergingErrors`, standard error too, in the order written.
        public let stdout: String
        /// Standard error (empty with `mergingErrors`).
        public let stderr: String
    }

    /// Runs a program to its end in `directory` (default: ours) and returns its status with its
    /// standard output and error, both read as they come so neither pipe can fill and block it.
    /// Standard input is /dev/null. Waits on the pid (never `Process.waitUntilExit`).
    ///
    /// Bounded: the program runs in a process group of its own, which is killed (SIGKILL) when
    /// `timeout` passes, and the call throws. Once the program has exited, what it wrote is
    /// read and the call returns, even if a child it left behind still holds the pipes open.
    public static func capture(
        _ executable: String, _ arguments: [String], in directory: String? = nil, mergingErrors: Bool = false, timeout: Duration = .seconds(600)
    ) throws -> Captured {
        var output: [Int32] = [0, 0]
        var errors: [Int32] = [-1, -1]
        guard makePipe(&output) else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        defer { close(output[0]) }
        guard mergingErrors || makePipe(&errors) else {
            close(output[1])
            throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        defer { if errors[0] >= 0 { close(errors[0]) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, mergingErrors ? output[1] : errors[1], 2)
        let pid: pid_t
        do {
            defer {
                close(output[1])
                if !mergingErrors { close(errors[1]) }
            }
            // posix_spawn_file_actions_addchdir_np is not in Swift's Glibc module: a shell changes
            // directory, then becomes the program.
            if let directory {
                pid = try spawn("/bin/sh", ["-c", #"cd -- "$0" && exec "$@""#, directory, executable] + arguments, &actions, newProcessGroup: true)
            } else {
                pid = try spawn(executable, arguments, &actions, newProcessGroup: true)
            }
        }
        var collected: [Int32: Data] = [output[0]: Data()]
        if !mergingErrors { collected[errors[0]] = Data() }
        var open = Array(collected.keys)
        let deadline = ContinuousClock.now + timeout
        var status: Int32?
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            if status == nil, let exited = reapIfExited(pid) { status = exited }
            if status == nil, ContinuousClock.now >= deadline {
                kill(-pid, SIGKILL)
                wait(pid)
                throw SpawnError(description: "\(executable) did not finish within \(timeout): killed it and its process group")
            }
            var descriptors = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            // After the exit, only what is already in the pipes is read (no waiting on children
            // that inherited them); before it, short polls so the exit is noticed.
            let ready = poll(&descriptors, nfds_t(descriptors.count), status == nil ? 100 : 0)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 {
                if status != nil { break }
                continue
            }
            for descriptor in descriptors where descriptor.revents != 0 {
                let count = read(descriptor.fd, &buffer, buffer.count)
                if count > 0 {
                    collected[descriptor.fd]!.append(contentsOf: buffer[0..<count])
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == descriptor.fd }
                }
            }
        }
        let final = status ?? wait(pid)
        return Captured(
            status: final, stdout: String(decoding: collected[output[0]]!, as: UTF8.self),
            stderr: mergingErrors ? "" : String(decoding: collected[errors[0]]!, as: UTF8.self))
    }

    /// The exit status if `pid` has ended (reaping it), nil while it runs.
    private static func reapIfExited(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
        guard result == pid else { return nil }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
