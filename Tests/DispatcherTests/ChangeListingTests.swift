import AsyncHTTPClient
import Foundation
import NIOCore
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// `GET /changes` filters (project, environment, status, limit) and its order (newest
    /// first); `GET /changes/ID/logs` as JSON lines, followed while the change runs.
    @Suite(.timeLimit(.minutes(8))) struct ChangeListingTests {
        @Test func listFiltersAndOrder() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("actions:\n  ok: { run: 'true' }\n  boom: { run: 'exit 3' }")
            _ = try await fleet.post("/projects/\(repo.project)/environments", ["code": "f"])
            let first = try await fleet.createChange(repo, action: "ok")
            let onF = try await fleet.post("/changes", ["project": .string(repo.project), "environment": "f", "action": "boom"])
            let second = try #require(onF["id"]?.stringValue)
            let third = try await fleet.createChange(repo, action: "ok")
            for id in [first, second, third] { try await fleet.waitForChange(id) }

            func ids(_ query: String) async throws -> [String] {
                try #require(try await fleet.get("/changes\(query)").arrayValue).compactMap { $0["id"]?.stringValue }
            }
            #expect(try await ids("") == [third, second, first])
            #expect(try await ids("?project=\(repo.project)") == [third, second, first])
            #expect(try await ids("?project=no-such-project").isEmpty)
            #expect(try await ids("?environment=e") == [third, first])
            #expect(try await ids("?environment=f") == [second])
            #expect(try await ids("?status=error") == [second])
            #expect(try await ids("?status=success&environment=e") == [third, first])
            #expect(try await ids("?limit=2") == [third, second])
            #expect(try await ids("?limit=1&status=success") == [third])
            await fleet.stop()
        }

        @Test func logsFollowedAsJSONLinesArriveWhileTheChangeRunsAndEndWithIt() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 1)
            let repo = try await fleet.project("actions:\n  talk: { run: 'echo first-line; sleep 4; echo second-line' }")
            let id = try await fleet.createChange(repo, action: "talk")
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(fleet.port)/changes/\(id)/logs?follow=true&format=json")
            request.headers.add(name: "Authorization", value: "Bearer \(try #require(fleet.token.value))")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(180))
            #expect(response.status == .ok)
            #expect(response.headers.first(name: "content-type") == "application/x-ndjson")
            var text = ""
            var statusWhenFirstLineCame: ChangeStatus?
            for try await chunk in response.body {
                text += String(buffer: chunk)
                if statusWhenFirstLineCame == nil, text.contains("first-line") { statusWhenFirstLineCame = try await fleet.snapshot(id).0.status }
            }
            // The stream ended by itself (within the request's deadline) once the change had.
            #expect(try await fleet.snapshot(id).0.status == .success)
            #expect(statusWhenFirstLineCame.map { !$0.isFinal } == true, "the first line came only at the end: \(String(describing: statusWhenFirstLineCame))")
            let lines = try text.split(separator: "\n").map { try JSON.parse(String($0)) }
            #expect(lines.allSatisfy { $0["action"] == "talk" && $0["step"]?.stringValue != nil && $0["seq"] != nil && $0["stream"] != nil && $0["at"] != nil })
            let texts = lines.compactMap { $0["text"]?.stringValue }
            let firstAt = try #require(texts.firstIndex(of: "first-line"))
            let secondAt = try #require(texts.firstIndex(of: "second-line"))
            #expect(firstAt < secondAt)
            #expect(lines.first { $0["text"] == "first-line" }?["stream"] == "stdout")
            // Followed or not, the same lines.
            let (_, whole) = try await fleet.raw("GET", "/changes/\(id)/logs?format=json", nil)
            #expect(whole.stringValue == text)
            await fleet.stop()
        }
    }
}
