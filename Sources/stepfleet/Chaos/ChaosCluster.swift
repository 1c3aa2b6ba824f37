import Foundation

/// The three-node cluster of `cluster-node-loss`, brought to a known state from whatever it
/// finds (stopped, half-stopped, a node waiting for peers that never come) within a bounded
/// time: first as it is, then, if that does not give three running members in time, from
/// fresh data directories (the cluster holds nothing worth keeping between runs). Every step is
/// said, so a slow start-up is never a silent one.
struct ChaosCluster {
    let ops: String
    static let nodes = ["stepfleet-c1", "stepfleet-c2", "stepfleet-c3"]
    /// How long one attempt at starting the cluster may take.
    static let startLimitSeconds = 150

    func prepare() throws {
        say("cluster-node-loss: starting the cluster (\(Self.nodes.joined(separator: ", "))), at most \(Self.startLimitSeconds) s; found: \(states())")
        if start(), let members = runningMembers(), members == 3 { return }
        say("cluster-node-loss: the cluster did not come up with 3 running members (\(states())); wiping the cluster nodes' data and forming it afresh")
        for node in Self.nodes.reversed() { _ = run(["stop", node], limit: 30) }
        for node in Self.nodes where answers(node) { _ = run(["kill", node], limit: 30) }
        for node in Self.nodes {
            try? FileManager.default.removeItem(atPath: Self.state + "/rabbitmq/\(node)/mnesia")
        }
        guard start(), let members = runningMembers(), members == 3 else {
            throw CLIError(
                "the three-node cluster did not start within \(Self.startLimitSeconds) s even from fresh data (\(states())); see the nodes' logs in \(Self.state)/rabbitmq/stepfleet-c*/log")
        }
    }

    private static var state: String {
        ProcessInfo.processInfo.environment["STEPFLEET_STATE"] ?? FileManager.default.currentDirectoryPath + "/.state"
    }

    private func start() -> Bool { run(["cluster"], limit: Self.startLimitSeconds) }

    /// Running members as stepfleet-c1 sees them.
    private func runningMembers() -> Int? {
        guard let result = try? LocalRepository.run(
            "/usr/bin/timeout", ["20", ops + "/rabbitmqctl", "--node", "stepfleet-c1@localhost", "-q", "cluster_status", "--formatter", "json"]),
            result.status == 0,
            let json = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
            let running = json["running_nodes"] as? [String]
        else { return nil }
        return running.count
    }

    private func answers(_ node: String) -> Bool {
        (try? LocalRepository.run("/usr/bin/timeout", ["10", ops + "/rabbitmqctl", "--node", node + "@localhost", "-q", "ping"]).status) == 0
    }

    private func states() -> String {
        Self.nodes.map { "\($0) \(answers($0) ? "answers" : "down")" }.joined(separator: ", ")
    }

    /// Runs ops/broker-node for at most `limit` seconds. Its output goes to a file, not a pipe:
    /// the node start-up loops it leaves behind when `timeout` ends it would otherwise hold the
    /// pipe open, and reading it would wait for them (seen: a bounded start that never returned).
    private func run(_ arguments: [String], limit: Int) -> Bool {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-chaos-cluster.log").path
        let script = #"log=$1; limit=$2; shift 2; exec timeout "$limit" "$@" >>"$log" 2>&1 </dev/null"#
        return (try? LocalRepository.run("/bin/sh", ["-c", script, "sh", log, String(limit), ops + "/broker-node"] + arguments).status) == 0
    }
}
