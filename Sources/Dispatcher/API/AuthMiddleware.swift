import Foundation
import HTTPTypes
import Hummingbird

/// Every endpoint but `/healthz` (and the dashboard's page and sign-in) needs `Authorization: Bearer <token>` with a token made by
/// `stepfleet token create`: an unknown or expired token is a 401, a `read` token on anything
/// but `GET`/`HEAD` a 403. A refused request changes nothing.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let store: Store

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/healthz" || WebRoutes.isPublic(request) { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            // The dashboard's requests carry its session cookie instead (CSRF-checked).
            if let session = try await WebSessionGate(store: store).admit(request) {
                return try await APICaller.$tokenName.withValue(session.tokenName) { try await next(request, context) }
            }
            throw APIError(.unauthorized, "this API needs a token: Authorization: Bearer <token> (stepfleet token create; the CLI reads STEPFLEET_TOKEN)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", let grant = try await store.grant(for: String(parts[1])) else {
            throw APIError(.unauthorized, "the token is not valid (revoked, mistyped, or for another dispatcher)")
        }
        if let expiresAt = grant.expiresAt, expiresAt <= Date().timeIntervalSince1970 {
            let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: expiresAt))
            throw APIError(.unauthorized, "the token \"\(grant.name)\" expired at \(when); ask an operator for a new one (stepfleet token create --name … --expires …)")
        }
        if grant.scope == .read, request.method != .get, request.method != .head {
            throw APIError(.forbidden, "the token \"\(grant.name)\" is read-only (scope read): it may only GET; \(request.method) needs a token made with --scope operator")
        }
        return try await APICaller.$tokenName.withValue(grant.name) { try await next(request, context) }
    }
}
