import AMQP
import Foundation
import Protocol
import Worker

extension ChaosScenario {
    /// Injects the scenario's fault while the batch runs.
    func inject(fleet: ChaosFleet, client: APIClient, ids: [String], settled: LockedValue<Bool>) async throws {
        switch name {
        case "kill-workers":
            while !settled.value {
                try await Task.sleep(for: .seconds(3))
                guard !settled.value, let victim = fleet.workerNames.randomElement() else { break }
                fleet.killWorker(victim)
                try fleet.startWorker()
            }
        case "dispatcher-restart":
            for pause in [3, 4] {
                try await Task.sleep(for: .seconds(pause))
                fleet.killDispatcher()
                try await Task.sleep(for: .seconds(2))
                try fleet.startDispatcher()
            }
        case "connections-dropped":
            for _ in 0..<5 {
                try await Task.sleep(for: .seconds(2))
                try broker("close_all_connections", "chaos: dropping every connection")
            }
        case "broker-restart":
            try await Task.sleep(for: .seconds(3))
            try broker("stop_app")
            try await Task.sleep(for: .seconds(3))
            try broker("start_app")
        case "broker-kill":
            // A crash, not a shutdown: the node's VM gets SIGKILL, then boots from its disk.
            try await Task.sleep(for: .seconds(3))
            try control("kill", node)
            try await Task.sleep(for: .seconds(2))
            try control("start", node)
        case "cluster-node-loss":
            // The node every client connected to first, and where the queues' leaders are.
            try await Task.sleep(for: .seconds(3))
            try control("kill", node)
            say("cluster-node-loss: \(node) killed with SIGKILL; the batch goes on with the two survivors")
            while !settled.value { try await Task.sleep(for: .milliseconds(500)) }
            try control("start", node)
        case "broker-alarm":
            try await Task.sleep(for: .seconds(2))
            try broker("set_vm_memory_high_watermark", "0.000001")
            try await Task.sleep(for: .seconds(5))
            try broker("set_vm_memory_high_watermark", "0.4")
        case "broker-flow":
            // The memory alarm (raised before the changes were submitted) while the dispatcher
            // sends its backlog of root jobs and workers ship step logs; cleared after 15 s.
            try await Task.sleep(for: .seconds(15))
            try broker("set_vm_memory_high_watermark", "0.4")
            say("broker-flow: memory alarm cleared after 15 s")
        case "poison":
            try await poison(client: client, ids: ids)
        case "worker-lost-during-run":
            try await loseWorkersDuringRun(fleet: fleet, client: client, ids: ids)
        case "sigterm-workers":
            try await terminateWorkers(fleet: fleet, client: client, ids: ids, settled: settled)
        case "sigterm-dispatcher":
            try await terminateDispatcher(fleet: fleet, client: client, ids: ids)
        default:
            break
        }
    }

    func broker(_ arguments: String...) throws {
        guard try LocalRepository.run(ops + "/rabbitmqctl", ["--node", node] + arguments).status == 0 else {
            throw CLIError("rabbitmqctl \(arguments.joined(separator: " ")) failed")
        }
    }

    /// ops/broker-node: start, kill or stop a private node, or start/stop the cluster.
    func control(_ arguments: String...) throws {
        guard try LocalRepository.run(ops + "/broker-node", arguments).status == 0 else {
            throw CLIError("ops/broker-node \(arguments.joined(separator: " ")) failed")
        }
    }

    /// Thousands of bad messages into every queue, from Debian's amqp-publish (not our client):
    /// malformed, truncated, wrong schema, wrong type, oversized, and well-formed ones for an
    /// attempt that does not exist.
    private func poison(client: APIClient, ids: [String]) async throws {
        try await Task.sleep(for: .seconds(1))
        let change = try await client.request("GET", "/changes/\(ids[0])")
        let stepId = change["root"]?["id"]?.stringValue ?? "unknown"
        let ref = AttemptRef(stepId: stepId, attempt: 99)
        let valid = String(decoding: WireCodec.encode(WorkerEvent(kind: .claimed, ref: ref, worker: "intruder", at: 0)), as: UTF8.self)
        let bodies = [
            "{not json", String(valid.prefix(40)), #"{"schema":99,"type":"worker_event"}"#, #"{"schema":1,"type":"control","kind":"drain","worker":"nobody"}"#,
            valid,
            String(decoding: WireCodec.encode(WorkerEvent(kind: .heartbeat, ref: ref, worker: "intruder", at: 0)), as: UTF8.self),
            String(decoding: WireCodec.encode(StepOutcome(ref: ref, worker: "intruder", status: .success, result: StepResult(project: .init(propertiesDiff: JSONPatch([.add(path: JSONPointer(tokens: ["poisoned"]), value: true)]))), runStarted: true)), as: UTF8.self),
            String(decoding: WireCodec.encode(LogBatch(ref: ref, worker: "intruder", lines: [.init(seq: 0, stream: .stdout, text: "intruder", at: 0)])), as: UTF8.self),
        ]
        let targets = [
            (Names.jobsExchange, Names.defaultPool), (Names.eventsExchange, Names.eventsRoutingKey), (Names.eventsExchange, Names.logsRoutingKey),
            ("", Names.outcomesQueue), (Names.controlExchange, ""),
        ]
        let url = amqp.components(separatedBy: "?")[0]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (exchange, key) in targets {
                group.addTask {
                    let lines = (0..<50).flatMap { _ in bodies }.joined(separator: "\n") + "\n"
                    try publish(url: url, exchange: exchange, key: key, input: Data(lines.utf8), lineBuffered: true)
                    try publish(url: url, exchange: exchange, key: key, input: Data(repeating: 0x7B, count: 17 << 20), lineBuffered: false)
                }
            }
            try await group.waitForAll()
        }
    }

    private func publish(url: String, exchange: String, key: String, input: Data, lineBuffered: Bool) throws {
        let arguments = ["--url=\(url)", "-e", exchange, "-r", key, "-p"] + (lineBuffered ? ["-l"] : [])
        guard try LocalRepository.run("/usr/bin/amqp-publish", arguments, input: input).status == 0 else {
            throw CLIError("amqp-publish to \(exchange)/\(key) failed")
        }
    }

    /// Kills the workers while both changes' root steps run, starts a fresh one, and checks that
    /// the dead workers' containers are gone within the lease.
    private func loseWorkersDuringRun(fleet: ChaosFleet, client: APIClient, ids: [String]) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            var started = 0
            for id in ids {
                let change = try await client.request("GET", "/changes/\(id)")
                if change["root"]?["attempts"]?.arrayValue?.last?["run_started"] == true { started += 1 }
            }
            if started == ids.count { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let victims = fleet.workerNames
        let victimPIDs = Set(victims.compactMap { fleet.workerPID($0) })
        for victim in victims { fleet.killWorker(victim) }
        let killedAt = ContinuousClock.now
        try fleet.startWorker()
        let engine = try DockerEngine()
        while ContinuousClock.now - killedAt < .seconds(Double(fleet.lease) + 20) {
            var left = 0
            for victim in victims { left += try await engine.containers(label: "org.stepfleet.worker=\(victim)").count }
            if left == 0 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let outlived = (ContinuousClock.now - killedAt).seconds
        say(String(format: "worker-lost-during-run: the dead workers' containers were gone %.1f s after the kill (lease %d s)", outlived, fleet.lease))
        if outlived > Double(fleet.lease) + 5 { throw CLIError("containers outlived their dead worker by more than the lease") }
        // The oci runtime's state: runc containers, step directories and mounts under the dead
        // workers' work directories, their cgroups and layer leases — removed by the next
        // worker's start (it finds the dead workers' directories through the layer cache).
        var left: [String] = []
        while ContinuousClock.now - killedAt < .seconds(Double(fleet.lease) + 20) {
            left = victims.flatMap { victim in
                OCIContainerRuntime.leftovers(workDirectory: fleet.folder + "/" + victim) { id in
                    OCIContainerRuntime.owner(ofStep: id).map(victimPIDs.contains) ?? false
                }
            }
            if left.isEmpty { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        say("worker-lost-during-run: --runtime \(fleet.runtime): \(left.isEmpty ? "no runc state, step directory, mount, cgroup or layer lease of the killed workers left" : "left: " + left.joined(separator: "; "))")
        if !left.isEmpty { throw CLIError("the killed workers' oci steps were not cleaned up by the next worker: \(left.joined(separator: "; "))") }
    }
}
