import Crypto
import Foundation
import GRDB
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

/// Issue 11, item 10: secret values are not in the SQLite file (tables, WAL) in clear.
extension FleetTests {
    @Suite(.timeLimit(.minutes(5))) struct SecretsAtRestTests {
        static let secret = "at-rest-secret-0c6d1f"

        /// Whether any of the database's files holds `needle`, byte for byte.
        static func filesHold(_ path: String, _ needle: String) -> [String] {
            ["", "-wal", "-shm", "-journal"].compactMap { suffix in
                guard let data = FileManager.default.contents(atPath: path + suffix) else { return nil }
                return data.range(of: Data(needle.utf8)) == nil ? nil : path + suffix
            }
        }

        @Test func afterAChangeWithASecretRunsTheDatabaseHoldsNoSecretValue() async throws {
            let fleet = try await FleetHarness(workers: 1)
            let repo = try await fleet.project(
                "actions:\n  a: { run: 'grep -q \(Self.secret) \"$OPSCHAIN_PROJECT_PROPERTIES\"', steps: [b] }\n  b: { run: 'true' }",
                project: ["opschain": ["secrets": ["api_key": .string(Self.secret)]]],
                environment: ["opschain": ["secrets": ["nested": ["list": [.string(Self.secret + "-2"), 7]]]]])
            let id = try await fleet.createChange(repo, action: "a")
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .success, "\(tree.steps.values.map { "\($0.action): \($0.error ?? "-")" })")
            // The fleet read the secrets (the step saw the value) and the store still does.
            #expect(try await fleet.properties(repo).properties["opschain"]?["secrets"]?["api_key"] == .string(Self.secret))
            let context = try await fleet.store.read { db in try Store.stepContext(db, tree.step("a")!.id) }
            #expect(context?.project.properties["opschain"]?["secrets"]?["api_key"] == .string(Self.secret))
            let sealed = try await fleet.store.read { db in
                (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM steps WHERE context LIKE 'sfenc:v1:%'") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox WHERE substr(body, 1, 9) = CAST('sfenc:v1:' AS BLOB)") ?? 0)
            }
            #expect(sealed.0 == 2 && sealed.1 >= 2)
            await fleet.stopDispatcher()

            // Byte for byte: the database file, its WAL and shared memory.
            for needle in [Self.secret, Self.secret + "-2"] {
                #expect(Self.filesHold(fleet.databasePath, needle).isEmpty, "\(needle) in \(Self.filesHold(fleet.databasePath, needle))")
            }
            // And every table as sqlite3 dumps it.
            let dump = try runProgram("/usr/bin/sqlite3", [fleet.databasePath, ".dump"])
            #expect(dump.status == 0 && dump.output.contains("CREATE TABLE properties"))
            #expect(!dump.output.contains(Self.secret))

            // The fleet still works on the same files after a restart.
            try await fleet.startDispatcher()
            let again = try await fleet.createChange(repo, action: "a")
            #expect(try await fleet.waitForChange(again).0.status == .success)
            await fleet.stop()
        }

        @Test func aWrongKeyFailsClearly() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let path = folder + "/db.sqlite"
            do {
                let store = try Store(path: path)
                try await store.write { db in
                    try Store.createProject(db, Project(code: "p", name: "p", gitRemote: "https://example.com/r.git"))
                    try Store.setProperties(db, "p", nil, ["opschain": ["secrets": ["k": .string(Self.secret)]]], ifVersion: nil, step: nil)
                }
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: path + ".key")
            #expect((attributes[.posixPermissions] as? Int) == 0o600 && (attributes[.size] as? Int) == 32)
            #expect(Self.filesHold(path, Self.secret).isEmpty)

            let other = folder + "/other.key"
            _ = try Store(path: folder + "/unrelated.sqlite", secretsKey: .file(other))
            #expect { try Store(path: path, secretsKey: .file(other)) } throws: { "\($0)".contains("does not open with this secrets key") }
            try Data(repeating: 1, count: 12).write(to: URL(fileURLWithPath: folder + "/short.key"))
            #expect { try Store(path: path, secretsKey: .file(folder + "/short.key")) } throws: { "\($0)".contains("holds 12 bytes, not 32") }
            try FileManager.default.createDirectory(atPath: folder + "/dir.key", withIntermediateDirectories: true)
            #expect { try Store(path: path, secretsKey: .file(folder + "/dir.key")) } throws: { "\($0)".contains("cannot read the secrets key file") }
            // The right key still opens it.
            let reopened = try Store(path: path)
            #expect(try await reopened.read { db in try Store.properties(db, "p", nil) }.properties["opschain"]?["secrets"]?["k"] == .string(Self.secret))
        }

        @Test func aSecretThatLooksSealedIsStoredAndReadAsWritten() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lookalike-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let path = folder + "/db.sqlite"
            let lookalike: JSON = ["opschain": ["secrets": ["k": "sfenc:v1:bm90IGEgc2VhbGVkIHZhbHVl"]]]
            do {
                let store = try Store(path: path)
                try await store.write { db in
                    try Store.createProject(db, Project(code: "p", name: "p", gitRemote: "https://example.com/r.git"))
                    try Store.setProperties(db, "p", nil, lookalike, ifVersion: nil, step: nil)
                }
                #expect(try await store.read { db in try Store.properties(db, "p", nil) }.properties == lookalike)
            }
            // Reopening (the key check reads a sealed value) still works.
            let reopened = try Store(path: path)
            #expect(try await reopened.read { db in try Store.properties(db, "p", nil) }.properties == lookalike)
        }

        @Test func anOldDatabaseWithClearSecretsOpensAndIsEncrypted() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("old-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let path = folder + "/db.sqlite"
            let context = StepContext(
                context: .init(project: [:], environment: [:], change: [:], step: [:], user: [:]),
                project: .init(properties: ["opschain": ["secrets": ["k": .string(Self.secret)]]]), environment: .init(properties: [:]))
            do {
                // As a version without encryption wrote it.
                let old = try Store(path: path, secretsKey: .none)
                try await old.write { db in
                    try Store.createProject(db, Project(code: "p", name: "p", gitRemote: "https://example.com/r.git"))
                    try Store.setProperties(db, "p", nil, ["opschain": ["secrets": ["k": .string(Self.secret)]]], ifVersion: nil, step: nil)
                    try db.execute(sql: "INSERT INTO steps (id, change_id, record, status) VALUES ('s', 'c', '{}', 'success')")
                    try Store.setStepContext(db, "s", context)
                    try Store.addToOutbox(db, exchange: "x", routingKey: "k", replyTo: nil, messageType: "step_job", body: Data(context.project.properties.serialized().utf8))
                }
            }
            #expect(!Self.filesHold(path, Self.secret).isEmpty, "the old store wrote the secret in clear")
            let store = try Store(path: path)
            #expect(Self.filesHold(path, Self.secret).isEmpty, "\(Self.filesHold(path, Self.secret))")
            #expect(try await store.read { db in try Store.properties(db, "p", nil) }.properties["opschain"]?["secrets"]?["k"] == .string(Self.secret))
            #expect(try await store.read { db in try Store.stepContext(db, "s") } == context)
            let body = try await store.read { db in try Store.unsentOutbox(db, limit: 10) }.first?.body
            #expect(body.map { String(decoding: $0, as: UTF8.self) }?.contains(Self.secret) == true)
        }

        @Test func sealingEveryContextCostsLittle() throws {
            let cipher = SecretsCipher(key: SymmetricKey(size: .bits256))
            // A context of ~8 KiB of properties, as a large project might have.
            let properties = JSON.object(Dictionary(uniqueKeysWithValues: (0..<200).map { ("key-\($0)", JSON.string(String(repeating: "v", count: 32))) }))
            let text = properties.serialized()
            let rounds = 2000
            let clock = ContinuousClock()
            let elapsed = try clock.measure {
                for _ in 0..<rounds { _ = try cipher.open(text: try cipher.seal(text: text)) }
            }
            let perRound = elapsed / rounds
            print("secrets at rest: seal+open of \(text.utf8.count) bytes: \(perRound) per context")
            #expect(perRound < .milliseconds(2))
        }
    }
}
