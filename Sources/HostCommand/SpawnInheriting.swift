import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension Spawn {
    /// Runs a program to its end with our standard input, output and error (what it writes
    /// goes straight out, as it writes it), in `directory`, with exactly `environment`.
    /// Waits on the pid (never `Process.waitUntilExit`); the program starts clean as
    /// `spawn` starts every child (no signal blocked, signals at their defaults, no other
    /// descriptor of ours).
    ///
    /// Not bounded: the caller is the program's whole reason to run (`opschain-action` in a
    /// step container, which the worker bounds and kills).
    public static func runInheritingStandardStreams(
        _ executable: String, _ arguments: [String], in directory: String, environment: [String: String]
    ) throws -> Termination {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let variables = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        // posix_spawn_file_actions_addchdir_np is not in Swift's Glibc module: a shell changes
        // directory, then becomes the program (same pid, so the status is the program's).
        let pid = try spawn(
            "/bin/sh", ["-c", #"cd -- "$0" && exec "$@""#, directory, executable] + arguments, &actions, environment: variables)
        return try termination(pid)
    }
}
