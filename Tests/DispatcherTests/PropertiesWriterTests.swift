import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

/// Who wrote each properties version, through the real API of a real dispatcher on its SQLite
/// file: a PUT or PATCH records the name of the token it came with (a bearer token or the token
/// a dashboard session signed in with), and `GET …/properties/versions` (what the dashboard's
/// properties page shows) says so.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct PropertiesWriterTests {
        static func writers(_ fleet: FleetHarness, _ path: String) async throws -> [Int: JSON] {
            let versions = try #require(try await fleet.get(path).arrayValue, "no list from \(path)")
            return Dictionary(uniqueKeysWithValues: versions.map { ($0["version"]?.intValue ?? -1, $0["written_by"] ?? .null) })
        }

        @Test func aWriteThroughTheAPIRecordsItsTokensName() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }")
            let project = "/projects/\(repo.project)/properties"
            let environment = "/projects/\(repo.project)/environments/e/properties"

            // The harness's own token ("fleet-tests") PUTs; another operator's token PATCHes.
            let put = try await fleet.send("PUT", project, ["k": 1])
            let alice = try await fleet.store.createToken(name: "alice")
            let (status, patched) = try await fleet.raw(
                "PATCH", project, #"[{"op": "add", "path": "/j", "value": 2}]"#, headers: ["Authorization": "Bearer \(alice)"], authenticated: false)
            #expect(status == 200, "\(patched)")
            let writers = try await Self.writers(fleet, project + "/versions")
            #expect(writers[put["version"]?.intValue ?? -1] == ["kind": "api", "user": "fleet-tests"])
            #expect(writers[patched["version"]?.intValue ?? -1] == ["kind": "api", "user": "alice"])
            // The first version, made with the project, was written by nobody's request.
            #expect(writers[1] == ["kind": "api", "user": nil])

            // Through the dashboard: the session's token is the writer.
            let bob = try await fleet.store.createToken(name: "bob")
            let session = try await DashboardSessionTests.signIn(fleet, bob)
            let written = try await DashboardSessionTests.request(
                fleet, "PUT", environment, ["region": "eu"],
                headers: ["Cookie": "stepfleet_session=\(session.cookie)", "X-CSRF-Token": session.csrf, "Origin": "http://127.0.0.1:\(fleet.port)"])
            #expect(written.status == 200, "\(written.json)")
            let environmentWriters = try await Self.writers(fleet, environment + "/versions")
            #expect(environmentWriters[written.json["version"]?.intValue ?? -1] == ["kind": "api", "user": "bob"])
            // The dashboard reads the same list.
            let dashboard = try await fleet.get("/ui/properties?project=\(repo.project)&environment=e")
            #expect(dashboard == (try await fleet.get(environment + "/versions")))
            await fleet.stop()
        }

        /// A store made before the writer's name was kept opens with its versions intact, their
        /// user unknown (null), and records names from then on.
        @Test func versionsWrittenBeforeTheMigrationHaveNoUser() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("props-writer-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let path = folder + "/stepfleet.sqlite"
            do {
                let old = try DatabaseQueue(path: path)
                try Schema.migrator.migrate(old, upTo: "v6-web-sessions")
                try await old.write { db in
                    try db.execute(sql: "INSERT INTO projects (code, name, git_remote, created_at) VALUES ('p', 'p', '/x', 0)")
                    try db.execute(sql: """
                        INSERT INTO properties (project_code, environment_code, version, document, written_by_step, created_at) VALUES ('p', '', 1, '{}', NULL, 0), ('p', '', 2, '{"a":1}', NULL, 1)
                        """)
                }
                try old.close()
            }
            let store = try Store(path: path, secretsKey: .none)
            _ = try await store.write { db in try Store.setProperties(db, "p", nil, ["a": 2], ifVersion: 2, step: nil, user: "carol") }
            let versions = try await store.read { try PropertiesHistory.versions($0, "p", nil) }
            #expect(versions.arrayValue?.map { $0["written_by"] ?? .null } == [["kind": "api", "user": "carol"], ["kind": "api", "user": nil], ["kind": "api", "user": nil]])
        }
    }
}
