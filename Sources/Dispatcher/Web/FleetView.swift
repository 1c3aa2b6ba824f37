import Foundation
import GRDB
import Protocol

/// The workers the dispatcher has heard from recently: those that announced themselves
/// (`WorkerRoster`: every few seconds, idle or busy, with their pool and slots), and as its
/// store knows them: a worker's running steps (each holds one of its slots; its last heartbeat
/// is its lease's renewal) and the attempts it ended within the window.
enum FleetView {
    static let window: Double = 15 * 60

    struct Sighting {
        var name: String
        var brokerUser: String?
        var pool: String?
        var slotsInUse = 0
        /// Its slots, as it announced them (unknown for a worker known only from its steps).
        var slots: Int?
        var draining = false
        var running: [JSON] = []
        var lastHeard: Double = 0
    }

    static func workers(_ db: Database, leaseSeconds: Double, now: Double, announced: [WorkerRoster.Entry] = []) throws -> [JSON] {
        var seen: [String: Sighting] = [:]
        func pool(_ stepId: String) -> String? {
            guard let context = try? Store.stepContext(db, stepId) else { return nil }
            return context.mergedProperties["opschain"]?["config"]?["pool"]?.stringValue ?? Names.defaultPool
        }
        let running = try String.fetchAll(db, sql: "SELECT record FROM steps WHERE status = 'running'").map {
            try JSONDecoder().decode(StepRecord.self, from: Data($0.utf8))
        }
        for step in running where !step.ownDone {
            guard let worker = step.worker else { continue }
            var sighting = seen[worker] ?? Sighting(name: worker)
            sighting.slotsInUse += 1
            sighting.brokerUser = step.holder(of: step.attempt)?.user ?? sighting.brokerUser
            sighting.pool = sighting.pool ?? pool(step.id)
            sighting.running.append(["change": .string(step.changeId), "step": .string(step.id), "action": .string(step.action)])
            if let lease = step.leaseExpiresAt { sighting.lastHeard = max(sighting.lastHeard, lease - leaseSeconds) }
            seen[worker] = sighting
        }
        let ended = try Row.fetchAll(db, sql: """
            SELECT worker, step_id, MAX(ended_at) AS last FROM attempts WHERE worker IS NOT NULL AND ended_at >= ? GROUP BY worker
            """, arguments: [now - window])
        for row in ended {
            let worker: String = row["worker"]
            var sighting = seen[worker] ?? Sighting(name: worker)
            sighting.lastHeard = max(sighting.lastHeard, row["last"] as Double)
            sighting.pool = sighting.pool ?? pool(row["step_id"])
            seen[worker] = sighting
        }
        for entry in announced {
            var sighting = seen[entry.presence.worker] ?? Sighting(name: entry.presence.worker)
            sighting.pool = entry.presence.pool
            sighting.slots = entry.presence.slots
            sighting.draining = entry.presence.draining
            sighting.brokerUser = sighting.brokerUser ?? entry.brokerUser
            // Its steps in the store are newer than an announcement a few seconds old, unless it has none.
            if sighting.running.isEmpty { sighting.slotsInUse = entry.presence.slotsInUse }
            sighting.lastHeard = max(sighting.lastHeard, entry.heardAt)
            seen[entry.presence.worker] = sighting
        }
        return seen.values.sorted { $0.name < $1.name }.map { sighting in
            [
                "name": .string(sighting.name), "broker_user": sighting.brokerUser.map(JSON.string) ?? .null, "pool": sighting.pool.map(JSON.string) ?? .null,
                "slots_in_use": JSON(sighting.slotsInUse), "slots": sighting.slots.map { JSON($0) } ?? .null, "draining": .bool(sighting.draining),
                "running": .array(sighting.running),
                "last_heard_at": Views.time(sighting.lastHeard), "last_heard_seconds_ago": JSON(max(0, Int(now - sighting.lastHeard))),
            ]
        }
    }
}
