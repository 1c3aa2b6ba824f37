import Foundation
import HTTPTypes
import Hummingbird
import Protocol
import StepRunner

/// The dashboard: its page and files under `/ui` (compiled into the binary, no outside assets),
/// sign-in and sign-out, and the few reads the JSON API does not have (a change's live tree as
/// server-sent events, property versions and diffs, the workers and the broker connection, the
/// actions at a revision). Everything else the page shows it reads from the JSON API, with its
/// session cookie instead of a bearer token.
struct WebRoutes {
    static let signInPath = "/ui/session"
    static let signOutPath = "/ui/session/end"

    let api: HTTPAPI
    var store: Store { api.store }

    /// What anyone may fetch without a session: the page, its files, and the sign-in itself.
    static func isPublic(_ request: Request) -> Bool {
        switch (request.method, request.uri.path) {
        case (.get, "/"), (.get, "/ui"), (.get, "/ui/"), (.get, "/ui/app.js"), (.get, "/ui/app.css"), (.get, "/favicon.ico"): true
        case (.post, signInPath): true
        default: false
        }
    }

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/ui/"]) }
        router.get("/ui/") { _, _ in Self.asset(DashboardPage.html, "text/html; charset=utf-8") }
        router.get("/ui/app.js") { _, _ in Self.asset(DashboardScript.source, "text/javascript; charset=utf-8") }
        router.get("/ui/app.css") { _, _ in Self.asset(DashboardStyle.source, "text/css; charset=utf-8") }
        router.get("/favicon.ico") { _, _ in Response(status: .noContent) }
        router.post(RouterPath(Self.signInPath)) { request, _ in try await signIn(request) }
        router.get(RouterPath(Self.signInPath)) { request, _ in try await currentSession(request) }
        router.post(RouterPath(Self.signOutPath)) { request, _ in try await signOut(request) }
        router.get("/ui/changes/:change/events") { _, context in
            try await ChangeEventStream(store: store, leaseSeconds: api.engine.configuration.leaseSeconds).response(changeId: try context.parameters.require("change"))
        }
        router.get("/ui/properties") { request, _ in
            let (project, environment) = try Self.owner(request)
            return JSONResponse.ok(try await store.read { try PropertiesHistory.versions($0, project, environment) })
        }
        router.get("/ui/properties/diff") { request, _ in
            let (project, environment) = try Self.owner(request)
            let query = request.uri.queryParameters
            let (from, to) = (try Self.version(query.get("from"), "from"), try Self.version(query.get("to"), "to"))
            return JSONResponse.ok(try await store.read { try PropertiesHistory.diff($0, project, environment, from: from, to: to) })
        }
        router.get("/ui/fleet") { _, _ in try await fleet() }
        router.get("/ui/actions") { request, _ in try await actions(request) }
    }

    static func asset(_ text: String, _ type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: Sessions

    private func signIn(_ request: Request) async throws -> Response {
        // A sign-in form posted from another site would sign the browser in as the attacker.
        guard WebSessionGate.isSameOrigin(request) else { throw APIError(.forbidden, "sign in from the dashboard's own page (the Origin is not this dispatcher's)") }
        let body = try await request.jsonBody()
        let token = try body.requiredString("token").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let started = try await store.startWebSession(token: token) else {
            throw APIError(.unauthorized, "that token is not valid (revoked, expired, mistyped, or for another dispatcher)")
        }
        let (cookie, session) = started
        var attributes = ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=\(max(0, Int(session.expiresAt - Date().timeIntervalSince1970)))"]
        if WebSessionGate.overTLS(request) { attributes.append("Secure") }
        var response = JSONResponse.ok(Self.view(session), status: .created)
        response.headers[.setCookie] = (["\(WebSessionGate.cookieName)=\(cookie)"] + attributes).joined(separator: "; ")
        response.headers[.cacheControl] = "no-store"
        return response
    }

    private func currentSession(_ request: Request) async throws -> Response {
        guard let session = try await WebSessionGate(store: store).admit(request) else {
            throw APIError(.unauthorized, "not signed in: sign in with an API token")
        }
        var response = JSONResponse.ok(Self.view(session))
        response.headers[.cacheControl] = "no-store"
        return response
    }

    private func signOut(_ request: Request) async throws -> Response {
        if let cookie = WebSessionGate.sessionCookie(request) { try await store.endWebSession(cookie: cookie) }
        var response = JSONResponse.ok(["signed_out": true])
        response.headers[.setCookie] = "\(WebSessionGate.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        return response
    }

    static func view(_ session: Store.WebSession) -> JSON {
        ["name": .string(session.tokenName), "scope": .string(session.scope.rawValue), "csrf": .string(session.csrf), "expires_at": Views.time(session.expiresAt)]
    }

    // MARK: Reads for the pages

    private static func owner(_ request: Request) throws -> (String, String?) {
        let query = request.uri.queryParameters
        guard let project = query.get("project"), !project.isEmpty else { throw APIError.badRequest("missing ?project=") }
        let environment = query.get("environment").flatMap { $0.isEmpty ? nil : $0 }
        return (project, environment)
    }

    private static func version(_ text: String?, _ name: String) throws -> Int {
        guard let text, let value = Int(text), value >= 1 else { throw APIError.badRequest("?\(name)= must be a properties version number") }
        return value
    }

    private func fleet() async throws -> Response {
        let leaseSeconds = api.engine.configuration.leaseSeconds
        let now = Date().timeIntervalSince1970
        let announced = api.service?.roster.recent(now: now) ?? []
        let workers = try await store.read { try FleetView.workers($0, leaseSeconds: leaseSeconds, now: now, announced: announced) }
        var broker: JSON = .null
        if let service = api.service {
            let state = await service.brokerConnection()
            broker = ["connected": .bool(state.connected), "connections": JSON(state.connections)]
        }
        return JSONResponse.ok(["workers": .array(workers), "broker": broker, "seen_within_seconds": JSON(Int(FleetView.window))])
    }

    /// The actions the project's actions file defines at a revision (the default branch when
    /// none is given), for the create form.
    private func actions(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        guard let project = query.get("project"), !project.isEmpty else { throw APIError.badRequest("missing ?project=") }
        let remote = try await store.read { try Store.project($0, project).gitRemote }
        let resolved = try await GitResolver.resolve(remote: remote, revision: query.get("git_rev"), git: api.engine.configuration.git, mirrors: api.mirrors)
        let source: GitMirrorCache.ActionsSource?
        do {
            source = try await api.mirrors.actionsFile(remote: remote, sha: resolved.sha)
        } catch {
            throw APIError.badRequest(error.description)
        }
        guard let source else {
            throw APIError.badRequest("the repository has no actions file at \(resolved.sha.prefix(12)) (\(ActionsFile.candidatePaths.joined(separator: ", ")))")
        }
        let file: ActionsFile
        do {
            file = try ActionsFile.parse(source.text, file: source.path)
        } catch {
            throw APIError.badRequest("\(error) (at \(resolved.sha.prefix(12)))")
        }
        return JSONResponse.ok([
            "git_rev": .string(resolved.revision), "git_sha": .string(resolved.sha), "file": .string(source.path),
            "actions": .array(file.actions.keys.sorted().map(JSON.string)),
        ])
    }
}
