import HTTPTypes
import Hummingbird

/// Every endpoint but `/healthz` needs `Authorization: Bearer <token>` with a token made by
/// `stepfleet token create`. A refused request changes nothing.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let store: Store

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/healthz" { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "this API needs a token: Authorization: Bearer <token> (stepfleet token create; the CLI reads STEPFLEET_TOKEN)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", try await store.tokenName(for: String(parts[1])) != nil else {
            throw APIError(.unauthorized, "the token is not valid (revoked, mistyped, or for another dispatcher)")
        }
        return try await next(request, context)
    }
}
