import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

/// The store on a real SQLite file.
@Suite struct StoreTests {
    func withStore(_ body: (Store, String) async throws -> Void) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID()).sqlite").path
        defer { for suffix in ["", "-wal", "-shm", ".key"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        try await body(try Store(path: path), path)
    }

    @Test func everyPropertiesVersionIsKeptWithItsWriter() async throws {
        try await withStore { store, _ in
            try await store.write { db in
                try Store.createProject(db, Project(code: "p", name: "P", gitRemote: "/r"))
                try Store.setProperties(db, "p", nil, ["a": 1], ifVersion: 1, step: nil)
                try Store.setProperties(db, "p", nil, ["a": 2], ifVersion: nil, step: "step-1")
            }
            let versions = try await store.read { db in
                try Row.fetchAll(db, sql: "SELECT version, document, written_by_step FROM properties WHERE project_code = 'p' ORDER BY version")
                    .map { "\($0["version"] as Int) \($0["document"] as String) \(($0["written_by_step"] as String?) ?? "-")" }
            }
            #expect(versions == ["1 {} -", "2 {\"a\":1} -", "3 {\"a\":2} step-1"])
            await #expect(throws: StoreError.conflict("the properties are at version 3, not 2")) {
                try await store.write { db in try Store.setProperties(db, "p", nil, ["a": 3], ifVersion: 2, step: nil) }
            }
        }
    }

    @Test func reopeningMigratesNothingTwiceAndKeepsTheData() async throws {
        try await withStore { store, path in
            try await store.write { db in try Store.createProject(db, Project(code: "p", name: "P", gitRemote: "/r")) }
            let reopened = try Store(path: path)
            #expect(try await reopened.read { db in try Store.projects(db).map(\.code) } == ["p"])
            let migrations = try await reopened.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
            #expect(migrations == Schema.migrator.migrations)
            #expect(try await reopened.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "wal")
        }
    }

    @Test func theOutboxHandsOutUnsentRowsInOrder() async throws {
        try await withStore { store, _ in
            try await store.write { db in
                for index in 0..<3 {
                    try Store.addToOutbox(db, exchange: "x", routingKey: "k\(index)", replyTo: nil, messageType: "t", body: Data([UInt8(index)]))
                }
            }
            let rows = try await store.read { db in try Store.unsentOutbox(db, limit: 10) }
            #expect(rows.map(\.routingKey) == ["k0", "k1", "k2"])
            let firstTwo = [rows[0].id, rows[1].id]
            try await store.write { db in try Store.markSent(db, firstTwo) }
            #expect(try await store.read { db in try Store.unsentOutbox(db, limit: 10) }.map(\.routingKey) == ["k2"])
        }
    }
}
