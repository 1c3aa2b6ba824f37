import Foundation
import Protocol

/// The batch a scenario runs: one change per environment, each a tree of six steps (serial
/// root, a parallel pair inside), every step adding 1 to its own counter in the environment's
/// properties — so a lost effect shows as 0 and a doubled one as 2.
struct ChaosBatch {
    static let stepsPerChange = 6

    /// `logLines` lines of output per step (shipped to the dispatcher as step logs).
    static func actions(retries: Int, rootSeconds: Double, stepSeconds: Double, logLines: Int = 0) -> String {
        let output = logLines > 0 ? #"seq -f "chaos log line %g" 1 \#(logLines); "# : ""
        func bump(_ seconds: Double) -> String { output + #"sleep \#(seconds); jq ".counters[\"$OPSCHAIN_ACTION\"] = ((.counters[\"$OPSCHAIN_ACTION\"] // 0) + 1)" "$OPSCHAIN_ENVIRONMENT_PROPERTIES" > /tmp/e && mv /tmp/e "$OPSCHAIN_ENVIRONMENT_PROPERTIES""# }
        func action(_ name: String, _ extra: String = "") -> String {
            "  \(name):\n    retries: \(retries)\n\(extra)    run: |\n      \(bump(name == "root" ? rootSeconds : stepSeconds))\n"
        }
        return "actions:\n"
            + action("root", "    steps: [pair, middle, last]\n    strategy: serial\n")
            + action("pair", "    steps: [left, right]\n    strategy: parallel\n")
            + action("left") + action("right") + action("middle") + action("last")
    }

    /// A git repository holding the batch's actions.
    static func repository(in folder: String, name: String, retries: Int, rootSeconds: Double, stepSeconds: Double, logLines: Int = 0) throws -> String {
        let path = folder + "/\(name).git"
        try LocalRepository.make(
            at: path, files: [".opschain/actions.yml": actions(retries: retries, rootSeconds: rootSeconds, stepSeconds: stepSeconds, logLines: logLines)])
        return path
    }
}

/// What a scenario left behind, counted from the dispatcher's API.
struct ChaosReport {
    var expected = 0
    var finished = 0
    var lost = 0
    var doubled = 0
    var reRunAfterStart = 0
    var statuses: [String: Int] = [:]
    /// Scenario-specific expectations that did not hold.
    var failures: [String] = []
    /// Why steps failed, with counts (failed steps are finished, not lost, but worth seeing).
    var stepErrors: [String: Int] = [:]

    var clean: Bool { lost == 0 && doubled == 0 && failures.isEmpty }

    func line(_ scenario: String, wall: Double) -> String {
        let changes = statuses.keys.sorted().map { "\($0)=\(statuses[$0]!)" }.joined(separator: " ")
        return String(
            format: "%@: steps expected %d, finished %d, lost %d, applied twice %d, re-run after run start %d, changes %@, wall %.1f s",
            scenario, expected, finished, lost, doubled, reRunAfterStart, changes, wall)
            + stepErrors.keys.sorted().map { "\n  step error ×\(stepErrors[$0]!): \($0)" }.joined()
            + failures.map { "\n  FAILED: \($0)" }.joined()
    }
}
