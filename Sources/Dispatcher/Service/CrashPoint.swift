import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A test-only crash point: a dispatcher started with `STEPFLEET_TEST_KILL_AFTER_REQUEST=ID`
/// sends itself SIGKILL right after the transaction that created request `ID`'s change or
/// batch has committed, before it answers the request or acks its delivery. That is the moment
/// "a dispatcher restart between create and ack" means, reached without guessing a time
/// (`RequestRestartTests`). Unset — always, outside that test — it does nothing.
enum CrashPoint {
    #if DEBUG
        private static let killAfterRequest = ProcessInfo.processInfo.environment["STEPFLEET_TEST_KILL_AFTER_REQUEST"].flatMap { $0.isEmpty ? nil : $0 }
    #endif

    /// Called once the request `requestId` created something (committed).
    /// Compiled into debug builds only (what the tests run): a release dispatcher has no
    /// way to be killed by its environment.
    static func requestCreated(_ requestId: String) {
        #if DEBUG
            guard let killAfterRequest, killAfterRequest == requestId else { return }
            kill(getpid(), SIGKILL)
        #endif
    }
}
