import Foundation
import HostCommand
import Testing

/// A program started by `Spawn` gets a clean signal state, whatever the caller's thread blocks:
/// a child that inherits a blocked SIGTERM cannot be stopped by `timeout` or `kill`.
@Suite struct SpawnSignalTests {
    @Test(.timeLimit(.minutes(1))) func aChildStartsWithNothingBlockedWhateverTheCallerBlocks() throws {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGTERM)
        sigaddset(&blocked, SIGINT)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        // Started directly: a shell would reset its own mask and hide what it was given.
        let result = try Spawn.run("/bin/grep", ["^SigBlk:", "/proc/self/status"])
        #expect(result.status == 0)
        let mask = result.output.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(mask.flatMap { UInt64($0, radix: 16) } == 0, "the child's blocked signals: \(result.output)")
    }

    @Test(.timeLimit(.minutes(6))) func aTimeoutStopsAChildEvenWhenTheCallerBlocksSIGTERM() throws {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGTERM)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let clock = ContinuousClock()
        let start = clock.now
        // `timeout` sends SIGTERM to `sleep` after 1 s; sleep would take 300 s.
        let result = try Spawn.run("/usr/bin/timeout", ["1", "/bin/sleep", "300"])
        #expect(result.status == 124)
        #expect(clock.now - start < .seconds(100), "the child outlived its timeout: \(clock.now - start)")
    }
}
