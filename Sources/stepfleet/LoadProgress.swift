import Foundation

/// `stepfleet load`'s progress: on a terminal one line redrawn in place with a bar; into a
/// file or pipe a plain line every few seconds.
struct LoadProgress: Sendable {
    struct State: Sendable, Equatable {
        var submitted = 0
        var errors = 0
        var finished = 0
        var failed = 0
        /// Changes the run is to send, when known.
        var planned: Int?
        var elapsed: Double = 0
    }

    let terminal: Bool
    let width: Int

    init(terminal: Bool = isatty(STDOUT_FILENO) == 1, width: Int = 30) {
        self.terminal = terminal
        self.width = width
    }

    /// The line for `state`: `[#########.........] 120/200 done …`.
    func line(_ state: State) -> String {
        let total = state.planned ?? max(state.submitted, 1)
        let fraction = min(1, Double(state.finished) / Double(max(total, 1)))
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let rate = state.elapsed > 0 ? Double(state.finished) / state.elapsed : 0
        return String(
            format: "[%@] %d/%@ done, %d submitted, %d failed, %d refused, %.1f changes/s, %.0f s", bar as NSString, state.finished,
            (state.planned.map(String.init) ?? "?") as NSString, state.submitted, state.failed, state.errors, rate, state.elapsed)
    }

    /// Shows `state`: redrawn in place on a terminal; otherwise a plain line when `plainDue`.
    func show(_ state: State, plainDue: Bool) {
        if terminal {
            let text = "\r" + line(state) + "\u{1B}[K"
            _ = text.utf8CString.withUnsafeBufferPointer { write(STDOUT_FILENO, $0.baseAddress, $0.count - 1) }
        } else if plainDue {
            say(line(state))
        }
    }

    /// Ends the redrawn line so the report starts on a line of its own.
    func finish() {
        if terminal { say("") }
    }
}
