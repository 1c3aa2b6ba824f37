import Dispatch
import Foundation

/// Calls `handler` on SIGTERM and SIGINT (once each): `stepfleet chaos` stops the fleet it
/// started before it exits.
func onTerminationSignals(_ handler: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
    [SIGTERM, SIGINT].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler(handler: handler)
        source.resume()
        return source
    }
}
