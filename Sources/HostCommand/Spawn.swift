import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a program to its end with `posix_spawn` and a blocking `waitpid` on its pid.
///
/// For callers that also keep long-lived `Foundation.Process` children: with those running,
/// `Process.waitUntilExit` on a short helper that had started a daemon (`setsid nohup …`) was
/// seen never to return, its child left a zombie. Waiting on the pid directly cannot miss it.
public enum Spawn {
    public struct SpawnError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Standard output is returned; standard error is discarded; `input` (if any) is written
    /// to standard input while the output is read, so neither side can block the other.
    public static func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> (status: Int32, output: String) {
        var output: [Int32] = [0, 0]
        var stdin: [Int32] = [0, 0]
        guard makePipe(&output) else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        defer { close(output[0]) }
        if input != nil {
            guard makePipe(&stdin) else {
                close(output[1])
                throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        if input != nil {
            posix_spawn_file_actions_adddup2(&actions, stdin[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        let pid: pid_t
        do {
            defer {
                close(output[1])
                if input != nil { close(stdin[0]) }
            }
            pid = try spawn(executable, arguments, &actions)
        } catch {
            if input != nil { close(stdin[1]) }
            throw error
        }
        var writer: Thread?
        if let input {
            let descriptor = stdin[1]
            writer = Thread {
                input.withUnsafeBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                        if written < 0 && errno == EINTR { continue }
                        if written <= 0 { break }  // the program stopped reading
                        offset += written
                    }
                }
                close(descriptor)
            }
            writer?.start()
        }
        let data = FileHandle(fileDescriptor: output[0], closeOnDealloc: false).readDataToEndOfFile()
        return (wait(pid), String(decoding: data, as: UTF8.self))
    }

    /// Starts a long-running program with standard output and error appended to `logPath`;
    /// returns its pid. Stop it with `kill` and reap it with `wait`.
    public static func launch(_ executable: String, _ arguments: [String], logPath: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        return try spawn(executable, arguments, &actions)
    }

    /// Starts `executable` with standard input from `/dev/null` (or `input`, which stays the
    /// caller's to close) and standard output and error on pipes of their own; returns its pid
    /// and the pipes' read ends (close-on-exec; the caller reads and closes them, and reaps the pid).
    public static func spawnPiped(
        _ executable: String, _ arguments: [String], newProcessGroup: Bool = false, environment: [String]? = nil, input: Int32? = nil
    ) throws -> (pid: pid_t, output: Int32, error: Int32) {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard makePipe(&out) else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        guard makePipe(&err) else {
            close(out[0]); close(out[1])
            throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input {
            posix_spawn_file_actions_adddup2(&actions, input, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        defer { close(out[1]); close(err[1]) }
        do {
            let pid = try spawn(executable, arguments, &actions, newProcessGroup: newProcessGroup, environment: environment)
            return (pid, out[0], err[0])
        } catch {
            close(out[0]); close(err[0])
            throw error
        }
    }

    /// Starts `executable` with the file `actions` given (descriptors 0–2) and nothing else of
    /// ours: no signal blocked, every signal at its default, no other descriptor; in a process
    /// group of its own when asked, with `environment` (`KEY=value`) or ours.
    public static func spawn(
        _ executable: String, _ arguments: [String], _ actions: inout posix_spawn_file_actions_t, newProcessGroup: Bool = false, environment: [String]? = nil
    ) throws -> pid_t {
        // The child starts clean whatever thread spawns it: no signal blocked (a Dispatch or
        // cooperative-pool thread blocks most, and posix_spawn hands the caller's mask on — a
        // child with SIGTERM blocked never ends on SIGTERM, and a caller waiting for it waits
        // for ever), every signal at its default action, and no descriptor of ours but the
        // three the actions give it (an inherited pipe end keeps that pipe's reader waiting).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        closeInheritedDescriptors(&actions)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup($0) } + [nil] }
        defer { for pointer in argv + (envp ?? []) { free(pointer) } }
        var pid: pid_t = 0
        let spawned = envp.map { envp in posix_spawn(&pid, executable, &actions, &attributes, argv, envp) } ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(spawned)))") }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+; not in Swift's Glibc module):
    /// every descriptor from 3 up is closed in the child after the actions' dup2s.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let addCloseFrom { _ = addCloseFrom(&actions, 3) }
    }

    /// How a program ended: its exit status, or the signal that killed it.
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Waits for `pid` to end (reaping it) and says how it ended; throws when its status
    /// cannot be had (`waitpid` failing other than by an interruption), never a made-up one.
    public static func termination(_ pid: pid_t) throws -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SpawnError(description: "cannot wait for process \(pid): \(String(cString: strerror(errno)))") }
        }
        return (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
    }

    /// Waits for `pid` to end (reaping it) and returns its exit status, 128 + N for signal N,
    /// or 255 when its status cannot be had (never a success).
    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        switch try? termination(pid) {
        case .exited(let status): status
        case .signalled(let signal): 128 + signal
        case nil: 255
        }
    }

    /// A pipe whose ends close on exec (the child gets only what the file actions give it).
    public static func makePipe(_ ends: inout [Int32]) -> Bool {
        guard pipe(&ends) == 0 else { return false }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return true
    }
}
