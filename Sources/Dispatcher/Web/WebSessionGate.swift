import Foundation
import HTTPTypes
import Hummingbird

/// Admits the dashboard's requests by their session cookie (`AuthMiddleware` asks it when a
/// request has no `Authorization` header). A request that changes state must come from the
/// dashboard itself: its `Origin` must be the dispatcher's own and its `X-CSRF-Token` the
/// session's; a session made from a `read` token may only read.
struct WebSessionGate {
    static let cookieName = "stepfleet_session"
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!

    let store: Store

    /// The request's session; nil when it carries no session cookie. Throws 401 for a session
    /// that has ended, 403 for a state-changing request the session may not make.
    func admit(_ request: Request) async throws -> Store.WebSession? {
        guard let cookie = Self.sessionCookie(request) else { return nil }
        guard let session = try await store.webSession(cookie: cookie) else {
            throw APIError(.unauthorized, "the dashboard session has ended (signed out, expired, or its token was revoked): sign in again")
        }
        guard request.method != .get, request.method != .head else { return session }
        guard Self.isSameOrigin(request) else {
            throw APIError(.forbidden, "a state-changing request from another site (its Origin is not this dispatcher's) is refused")
        }
        guard let presented = request.headers[Self.csrfHeader], Self.constantTimeEqual(presented, session.csrf) else {
            throw APIError(.forbidden, "the request lacks this session's X-CSRF-Token: reload the dashboard and try again")
        }
        if session.scope == .read, !Self.isSignOut(request) {
            throw APIError(.forbidden, "the token \"\(session.tokenName)\" is read-only (scope read): the dashboard can only show; sign in with a token made with --scope operator")
        }
        return session
    }

    static func isSignOut(_ request: Request) -> Bool {
        request.method == .post && request.uri.path == WebRoutes.signOutPath
    }

    /// The session cookie's value, if the request carries one.
    static func sessionCookie(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == cookieName {
                    let value = parts[1].trimmingCharacters(in: .whitespaces)
                    if !value.isEmpty { return value }
                }
            }
        }
        return nil
    }

    /// `Origin` names the host and port the request was sent to (`Host`). A browser sends
    /// `Origin` with every POST; a request without one is refused.
    static func isSameOrigin(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin], let host = request.head.authority else { return false }
        for scheme in ["http://", "https://"] where origin.lowercased().hasPrefix(scheme) {
            return origin.dropFirst(scheme.count).lowercased() == host.lowercased()
        }
        return false
    }

    /// Whether the browser reached the dispatcher over TLS (itself, or a proxy in front of it
    /// that says so): the cookie is then `Secure`.
    static func overTLS(_ request: Request) -> Bool {
        request.headers[.origin]?.lowercased().hasPrefix("https://") == true || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}
