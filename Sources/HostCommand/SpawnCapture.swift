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
    /// standard output and error; both are read at once, so neither pipe can fill and block it.
    /// Standard input is /dev/null. Waits on the pid (never `Process.waitUntilExit`).
    public static func capture(_ executable: String, _ arguments: [String], in directory: String? = nil, mergingErrors: Bool = false) throws -> Captured {
        var output: [Int32] = [0, 0]
        var errors: [Int32] = [0, 0]
        guard makePipe(&output) else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        defer { close(output[0]) }
        guard mergingErrors || makePipe(&errors) else {
            close(output[1])
            throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
        }
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
                pid = try spawn("/bin/sh", ["-c", #"cd -- "$0" && exec "$@""#, directory, executable] + arguments, &actions)
            } else {
                pid = try spawn(executable, arguments, &actions)
            }
        } catch {
            if !mergingErrors { close(errors[0]) }
            throw error
        }
        let errorText = ErrorText()
        var reader: Thread?
        let finished = DispatchSemaphore(value: 0)
        if !mergingErrors {
            let descriptor = errors[0]
            reader = Thread {
                let data = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true).readDataToEndOfFile()
                errorText.set(String(decoding: data, as: UTF8.self))
                finished.signal()
            }
            reader?.start()
        }
        let data = FileHandle(fileDescriptor: output[0], closeOnDealloc: false).readDataToEndOfFile()
        let status = wait(pid)
        // The pipe's write end closed with the program (or its last child): the reader ends.
        if reader != nil { finished.wait() }
        return Captured(status: status, stdout: String(decoding: data, as: UTF8.self), stderr: errorText.get())
    }
}

/// Standard error as the reading thread hands it over.
private final class ErrorText: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""
    func set(_ value: String) { lock.withLock { text = value } }
    func get() -> String { lock.withLock { text } }
}
