import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// Bad input at the door: a seeded run of random and malformed requests against the real API
    /// over a real SQLite file. Never a 5xx, every error answer a JSON `error` message, and the
    /// store byte-for-byte unchanged by every rejected request.
    @Suite(.timeLimit(.minutes(10))) struct APIFuzzTests {
        @Test func randomAndMalformedRequestsGet4xxAndLeaveTheStoreAlone() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["k": 1])
            var random = SeededGenerator(seed: 0x5EED_F1EE7)
            var rejected = 0
            var accepted = 0
            for round in 0..<400 {
                let request = FuzzRequest.make(project: repo.project, using: &random)
                let before = try await Self.dump(fleet.store)
                let authenticated = Int.random(in: 0..<8, using: &random) != 0
                let (status, answer) = try await fleet.raw(request.method, request.path, request.body, headers: request.headers, authenticated: authenticated)
                if !authenticated { #expect(status == 401, "round \(round): \(request) without a token → \(status)") }
                #expect(status < 500, "round \(round): \(request) → \(status) \(answer)")
                if status >= 400 {
                    rejected += 1
                    #expect(answer["error"]?.stringValue?.isEmpty == false, "round \(round): \(request) → \(status) without an error message: \(answer)")
                    let after = try await Self.dump(fleet.store)
                    #expect(before == after, "round \(round): \(request) → \(status) changed the store")
                } else {
                    accepted += 1
                }
            }
            #expect(rejected > 300, "the fuzzer should mostly send bad requests (\(rejected) rejected, \(accepted) accepted)")
            #expect(try await fleet.get("/healthz")["status"] == "ok")
            await fleet.stop()
        }

        /// Every row of every table, in order.
        static func dump(_ store: Store) async throws -> String {
            try await store.read { db in
                let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
                return try tables.map { table in
                    "\(table): " + (try Row.fetchAll(db, sql: "SELECT * FROM \(table) ORDER BY rowid").map(\.description).joined(separator: "; "))
                }.joined(separator: "\n")
            }
        }
    }
}

/// A SplitMix64 generator: the same seed, the same run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One random request: a real route or a near miss, with a body that is random JSON, broken
/// JSON, an invalid patch, a wrong type or far too big.
struct FuzzRequest: CustomStringConvertible {
    let method: String
    let path: String
    let body: String?
    let headers: [String: String]

    var description: String { "\(method) \(path) \(body.map { String($0.prefix(80)) } ?? "-") \(headers)" }

    static func make(project: String, using random: inout SeededGenerator) -> FuzzRequest {
        let ids = [project, "nope", "", "%00", "..", "a/b", String(repeating: "x", count: 300), "ü", "1' OR '1'='1", UUID().uuidString]
        let id = ids.randomElement(using: &random)!
        let paths = [
            "/projects", "/projects/\(id)", "/projects/\(id)/environments", "/projects/\(id)/properties", "/projects/\(id)/environments/\(id)/properties",
            "/projects/\(project)/environments/e/properties", "/projects/\(project)/properties", "/changes", "/changes/\(id)",
            "/changes/\(id)/cancel", "/changes/\(id)/retry", "/changes/\(id)/logs?format=json", "/changes?status=\(id)&limit=\(id)",
        ]
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        var headers: [String: String] = [:]
        if Bool.random(using: &random) { headers["If-Match"] = ["\"1\"", "W/\"0\"", "999999", "abc", "-1", ""].randomElement(using: &random)! }
        if Bool.random(using: &random) { headers["Content-Type"] = ["application/json", "text/plain", "application/x-www-form-urlencoded"].randomElement(using: &random)! }
        return FuzzRequest(
            method: methods.randomElement(using: &random)!, path: paths.randomElement(using: &random)!, body: body(project: project, using: &random),
            headers: headers)
    }

    static func body(project: String, using random: inout SeededGenerator) -> String? {
        switch Int.random(in: 0..<10, using: &random) {
        case 0: return nil
        case 1: return String(randomJSON(depth: 3, using: &random).serialized().dropLast(Int.random(in: 1...3, using: &random)))
        case 2: return String((0..<Int.random(in: 1...64, using: &random)).map { _ in Character(UnicodeScalar(UInt8.random(in: 32...126, using: &random))) })
        case 3:
            let operations = ["add", "remove", "replace", "move", "copy", "test", "jump", ""]
            let op = operations.randomElement(using: &random)!
            let paths = ["/k", "", "/", "/missing/deep", "~2", "/k/-", "k"]
            return #"[{"op": "\#(op)", "path": "\#(paths.randomElement(using: &random)!)", "from": "/nope", "value": 1}]"#
        case 4: return "[" + String(repeating: "[", count: Int.random(in: 100...5000, using: &random)) + "1"
        case 5: return String(repeating: "7", count: Int.random(in: 1 << 20...(1 << 20) + 4096, using: &random))
        case 6: return #"{"code": 42, "git_remote": [], "project": {}, "environment": null, "action": true, "name": 1.5e400}"#
        case 7: return #"{"project": "\#(project)", "environment": "e", "action": "a", "git_rev": "refs/heads/../../etc"}"#
        case 8: return #"{"code": "\#(String(repeating: "c", count: Int.random(in: 0...80, using: &random)))", "git_remote": "/nonexistent"}"#
        default: return randomJSON(depth: 4, using: &random).serialized()
        }
    }

    static func randomJSON(depth: Int, using random: inout SeededGenerator) -> JSON {
        switch Int.random(in: 0..<(depth > 0 ? 7 : 5), using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2: return JSON(Int.random(in: -1_000_000...1_000_000, using: &random))
        case 3: return .string(["", "k", "ü∂", "\u{0}", "op", "/k"].randomElement(using: &random)!)
        case 4: return .number(JSONNumber(Double.random(in: -1e300...1e300, using: &random)))
        case 5: return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in randomJSON(depth: depth - 1, using: &random) })
        default:
            var members: [String: JSON] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &random) {
                members[["code", "git_remote", "op", "path", "value", "k", "project", "environment", "action"].randomElement(using: &random)!] =
                    randomJSON(depth: depth - 1, using: &random)
            }
            return .object(members)
        }
    }
}
