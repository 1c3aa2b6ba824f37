import AsyncHTTPClient
import Crypto
import Foundation
import GRDB
import NIOCore
import Protocol
import Testing
@testable import Dispatcher

/// The dashboard's doors over plain HTTP, against a real dispatcher and SQLite file: the page's
/// headers, sign-in (an API token for a hardened cookie, stored hashed), the CSRF token and the
/// Origin check on every write, read-only sessions, sign-out and revocation.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct DashboardSessionTests {
        struct Answer {
            let status: Int
            let headers: [String: String]
            let json: JSON
        }

        static func request(_ fleet: FleetHarness, _ method: String, _ path: String, _ body: JSON? = nil, headers: [String: String] = [:]) async throws -> Answer {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(fleet.port)\(path)")
            request.method = .init(rawValue: method)
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let body { request.body = .bytes(ByteBuffer(string: body.serialized())) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            let data = try await response.body.collect(upTo: 4 << 20)
            var fields: [String: String] = [:]
            for header in response.headers { fields[header.name.lowercased()] = header.value }
            return Answer(status: Int(response.status.code), headers: fields, json: (try? JSON.parse(bytes: data.readableBytesView)) ?? .string(String(buffer: data)))
        }

        /// Signs in with `token`; the cookie's value and the session's CSRF token.
        static func signIn(_ fleet: FleetHarness, _ token: String) async throws -> (cookie: String, csrf: String, setCookie: String) {
            let answer = try await request(fleet, "POST", "/ui/session", ["token": .string(token)], headers: ["Origin": "http://127.0.0.1:\(fleet.port)"])
            #expect(answer.status == 201)
            let setCookie = try #require(answer.headers["set-cookie"])
            let value = try #require(setCookie.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(String.init))
            return (value, try #require(answer.json["csrf"]?.stringValue), setCookie)
        }

        @Test func thePageForbidsInlineScriptAndFraming() async throws {
            let fleet = try await FleetHarness(workers: 0)
            for path in ["/ui/", "/ui/app.js", "/changes"] {
                let answer = try await Self.request(fleet, "GET", path)
                let policy = try #require(answer.headers["content-security-policy"], "no CSP on \(path)")
                #expect(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe-inline"))
                #expect(answer.headers["x-content-type-options"] == "nosniff")
            }
            let page = try await Self.request(fleet, "GET", "/ui/")
            #expect(page.status == 200 && page.headers["content-type"]?.hasPrefix("text/html") == true)
            // The page itself has no inline script: its one script is the dispatcher's own file.
            let html = try #require(page.json.stringValue)
            #expect(html.contains(#"<script src="/ui/app.js" defer></script>"#))
            #expect(html.components(separatedBy: "<script").count == 2)
            #expect(try await Self.request(fleet, "GET", "/ui/app.js").headers["content-type"]?.hasPrefix("text/javascript") == true)
            await fleet.stop()
        }

        @Test func signInGivesAHardenedCookieStoredHashed() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let token = try #require(fleet.token.value)
            let origin = "http://127.0.0.1:\(fleet.port)"
            // From another site, or from no page at all, a sign-in is refused.
            #expect(try await Self.request(fleet, "POST", "/ui/session", ["token": .string(token)], headers: ["Origin": "http://evil.example"]).status == 403)
            #expect(try await Self.request(fleet, "POST", "/ui/session", ["token": .string(token)]).status == 403)
            #expect(try await Self.request(fleet, "POST", "/ui/session", ["token": "sft_wrong"], headers: ["Origin": origin]).status == 401)
            let expired = try await fleet.store.createToken(name: "expired", expiresAt: Date().timeIntervalSince1970 - 1)
            #expect(try await Self.request(fleet, "POST", "/ui/session", ["token": .string(expired)], headers: ["Origin": origin]).status == 401)

            let (cookie, _, setCookie) = try await Self.signIn(fleet, token)
            let attributes = Set(setCookie.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict") && attributes.contains("Path=/"))
            #expect(!attributes.contains("Secure"), "plain HTTP: a Secure cookie would never come back")
            let overTLS = try await Self.request(fleet, "POST", "/ui/session", ["token": .string(token)], headers: ["Origin": "https://127.0.0.1:\(fleet.port)"])
            #expect(overTLS.status == 201 && overTLS.headers["set-cookie"]?.contains("; Secure") == true)

            // The store keeps the cookie's SHA-256, never the cookie.
            let stored = try await fleet.store.read { db in
                try Row.fetchAll(db, sql: "SELECT sha256, token_name, scope FROM web_sessions").map { [$0["sha256"] as String, $0["token_name"] as String, $0["scope"] as String] }
            }
            let digest = SHA256.hash(data: Data(cookie.utf8)).hexString
            #expect(stored.contains([digest, "fleet-tests", "operator"]))
            #expect(!stored.contains { $0.contains(cookie) })
            // The cookie alone reads the API.
            #expect(try await Self.request(fleet, "GET", "/changes", headers: ["Cookie": "stepfleet_session=\(cookie)"]).status == 200)
            #expect(try await Self.request(fleet, "GET", "/changes", headers: ["Cookie": "stepfleet_session=\(cookie)x"]).status == 401)
            await fleet.stop()
        }

        @Test func writesNeedTheSessionsCSRFTokenAndOwnOrigin() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }")
            let (cookie, csrf, _) = try await Self.signIn(fleet, try #require(fleet.token.value))
            let origin = "http://127.0.0.1:\(fleet.port)"
            let path = "/projects/\(repo.project)/environments"
            func create(_ code: String, _ headers: [String: String]) async throws -> Int {
                try await Self.request(fleet, "POST", path, ["code": .string(code)], headers: headers.merging(["Cookie": "stepfleet_session=\(cookie)"]) { $1 }).status
            }
            #expect(try await create("nocsrf", ["Origin": origin]) == 403)
            #expect(try await create("wrongcsrf", ["Origin": origin, "X-CSRF-Token": String(csrf.reversed())]) == 403)
            #expect(try await create("evil", ["Origin": "http://evil.example", "X-CSRF-Token": csrf]) == 403)
            #expect(try await create("noorigin", ["X-CSRF-Token": csrf]) == 403)
            let environments = try await fleet.get(path).arrayValue?.compactMap { $0["code"]?.stringValue } ?? []
            #expect(environments == ["e"], "a refused write changed nothing")
            #expect(try await create("ok", ["Origin": origin, "X-CSRF-Token": csrf]) == 201)

            // A read token's session reads only.
            let reader = try await fleet.store.createToken(name: "reader", scope: .read)
            let read = try await Self.signIn(fleet, reader)
            #expect(try await Self.request(fleet, "GET", path, headers: ["Cookie": "stepfleet_session=\(read.cookie)"]).status == 200)
            #expect(try await Self.request(fleet, "POST", path, ["code": "byreader"], headers: ["Cookie": "stepfleet_session=\(read.cookie)", "Origin": origin, "X-CSRF-Token": read.csrf]).status == 403)

            // Sign-out ends the session (and needs its CSRF token); revoking a token ends its sessions.
            #expect(try await Self.request(fleet, "POST", "/ui/session/end", headers: ["Cookie": "stepfleet_session=\(cookie)", "Origin": origin]).status == 403)
            let out = try await Self.request(fleet, "POST", "/ui/session/end", headers: ["Cookie": "stepfleet_session=\(cookie)", "Origin": origin, "X-CSRF-Token": csrf])
            #expect(out.status == 200 && out.headers["set-cookie"]?.contains("Max-Age=0") == true)
            #expect(try await Self.request(fleet, "GET", "/changes", headers: ["Cookie": "stepfleet_session=\(cookie)"]).status == 401)
            try await fleet.store.revokeToken(name: "reader")
            #expect(try await Self.request(fleet, "GET", "/changes", headers: ["Cookie": "stepfleet_session=\(read.cookie)"]).status == 401)
            await fleet.stop()
        }
    }
}
