import Foundation
import GRDB
import Hummingbird
import Logging
import Protocol
import StepRunner

/// The dispatcher's JSON API.
public struct HTTPAPI: Sendable {
    let engine: DispatcherEngine
    let service: DispatcherService?
    /// Bare mirrors of the projects' repositories (`<database>.git-mirrors/`): short SHAs and
    /// the actions file at a change's SHA are read there.
    let mirrors: GitMirrorCache

    public init(engine: DispatcherEngine, service: DispatcherService?) {
        self.engine = engine
        self.service = service
        mirrors = GitMirrorCache.shared(for: engine)
    }

    var store: Store { engine.store }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: WebSecurityHeaders())
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: AuthMiddleware(store: store))
        WebRoutes(api: self).register(on: router)
        router.get("/healthz") { _, _ in JSONResponse.ok(["status": "ok"]) }
        router.get("/metrics") { _, _ in JSONResponse.text(try await metrics(), contentType: "text/plain; version=0.0.4") }

        router.post("/projects") { request, _ in try await createProject(request) }
        router.get("/projects") { _, _ in
            JSONResponse.ok(.array(try await store.read { try Store.projects($0) }.map(Views.project)))
        }
        router.get("/projects/:project") { _, context in
            let code = try context.parameters.require("project")
            return JSONResponse.ok(Views.project(try await store.read { try Store.project($0, code) }))
        }
        router.delete("/projects/:project") { _, context in
            let code = try context.parameters.require("project")
            return JSONResponse.ok(try await store.write { try Store.deleteProject($0, code) })
        }
        router.delete("/projects/:project/environments/:environment") { _, context in
            let (project, environment) = (try context.parameters.require("project"), try context.parameters.require("environment"))
            return JSONResponse.ok(try await store.write { try Store.deleteEnvironment($0, project, environment) })
        }
        router.post("/projects/:project/environments") { request, context in try await createEnvironment(request, context) }
        router.get("/projects/:project/environments") { _, context in
            let code = try context.parameters.require("project")
            return JSONResponse.ok(.array(try await store.read { try Store.environments($0, code) }.map(Views.environment)))
        }
        for path in ["/projects/:project/properties", "/projects/:project/environments/:environment/properties"] {
            router.get(RouterPath(path)) { _, context in
                let (project, environment) = try owner(context)
                return JSONResponse.ok(Views.properties(try await store.read { try Store.properties($0, project, environment) }))
            }
            router.put(RouterPath(path)) { request, context in try await putProperties(request, context) }
            router.patch(RouterPath(path)) { request, context in try await patchProperties(request, context) }
            router.get(RouterPath(path + "/versions")) { _, context in
                let (project, environment) = try owner(context)
                return JSONResponse.ok(try await store.read { try PropertiesHistory.versions($0, project, environment) })
            }
        }

        router.get("/workers") { _, _ in
            let (leaseSeconds, now) = (engine.configuration.leaseSeconds, Date().timeIntervalSince1970)
            let announced = service?.roster.recent(now: now) ?? []
            return JSONResponse.ok(.array(try await store.read { try FleetView.workers($0, leaseSeconds: leaseSeconds, now: now, announced: announced) }))
        }
        router.post("/changes") { request, _ in try await createChange(request) }
        router.get("/changes") { request, _ in
            let query = request.uri.queryParameters
            let limit = try listLimit(query.get("limit"))
            if let status = query.get("status"), ChangeStatus(rawValue: status) == nil {
                throw APIError.badRequest("unknown status \"\(status)\" (\(ChangeStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let changes = try await store.read {
                try Store.changes($0, project: query.get("project"), environment: query.get("environment"), status: query.get("status"), limit: limit)
            }
            return JSONResponse.ok(.array(changes.map(Views.change)))
        }
        router.get("/changes/:change") { _, context in
            let id = try context.parameters.require("change")
            let leaseSeconds = engine.configuration.leaseSeconds
            let (change, tree, attempts) = try await store.read { db in
                (try Store.change(db, id), try Store.tree(db, changeId: id, leaseSeconds: leaseSeconds), try Store.attempts(db, changeId: id))
            }
            return JSONResponse.ok(Views.changeWithSteps(change, tree, attempts: attempts))
        }
        router.get("/changes/:change/steps/:step") { _, context in
            let (id, stepId) = (try context.parameters.require("change"), try context.parameters.require("step"))
            let leaseSeconds = engine.configuration.leaseSeconds
            let (tree, attempts, result, stepContext) = try await store.read { db in
                _ = try Store.change(db, id)
                let tree = try Store.tree(db, changeId: id, leaseSeconds: leaseSeconds)
                guard tree.steps[stepId] != nil else { throw StoreError.notFound("change \(id) has no step \"\(stepId)\"") }
                return (tree, try Store.attempts(db, changeId: id), try Store.stepResult(db, stepId), try Store.stepContext(db, stepId))
            }
            return JSONResponse.ok(Views.stepWithProperties(tree, tree.steps[stepId]!, attempts, result: result, context: stepContext))
        }
        router.post("/changes/:change/cancel") { _, context in
            let change = try await engine.cancel(changeId: try context.parameters.require("change"))
            service?.outboxChanged()
            return JSONResponse.ok(Views.change(change))
        }
        router.post("/changes/:change/retry") { request, context in try await retryChange(request, context) }
        router.get("/changes/:change/logs") { request, context in try await logs(request, context) }
        addBatchRoutes(to: router)
        return router
    }

    // MARK: Handlers

    /// `?limit=`: 1 to 1000, 100 when absent.
    private func listLimit(_ text: String?) throws -> Int {
        guard let text else { return 100 }
        guard let value = Int(text), (1...1000).contains(value) else {
            throw APIError.badRequest("limit must be a whole number from 1 to 1000, not \"\(text.prefix(40))\"")
        }
        return value
    }

    private func createProject(_ request: Request) async throws -> Response {
        let body = try await request.jsonBody()
        let code = try body.requiredString("code")
        try validateCode(code, "project")
        let project = Project(code: code, name: try body.optionalString("name") ?? code, gitRemote: try body.requiredString("git_remote"))
        // An existing project is a conflict whatever its remote; a new one's remote must pass the policy.
        if try await store.read({ try Store.projects($0).contains { $0.code == code } }) {
            throw StoreError.conflict("project \"\(code)\" exists already")
        }
        if let refusal = engine.configuration.gitPolicy.refusal(project.gitRemote) { throw APIError.badRequest(refusal) }
        // A remote that does not answer now would fail the first change: say so at once.
        try await GitResolver.checkReachable(remote: project.gitRemote, git: engine.configuration.git)
        try await store.write { try Store.createProject($0, project) }
        return JSONResponse.ok(Views.project(project), status: .created)
    }

    private func createEnvironment(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let project = try context.parameters.require("project")
        let body = try await request.jsonBody()
        let code = try body.requiredString("code")
        try validateCode(code, "environment")
        let environment = Environment(projectCode: project, code: code, name: try body.optionalString("name") ?? code)
        try await store.write { try Store.createEnvironment($0, environment) }
        return JSONResponse.ok(Views.environment(environment), status: .created)
    }

    private func owner(_ context: BasicRequestContext) throws -> (String, String?) {
        (try context.parameters.require("project"), context.parameters.get("environment"))
    }

    /// `If-Match: <version>` (quotes allowed) makes a write conditional.
    private func ifMatch(_ request: Request) throws -> Int? {
        guard let header = request.headers[.ifMatch] else { return nil }
        let trimmed = header.trimmingCharacters(in: CharacterSet(charactersIn: "\" W/"))
        guard let version = Int(trimmed) else { throw APIError.badRequest("If-Match must be a properties version number, not \(header)") }
        return version
    }

    private func putProperties(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (project, environment) = try owner(context)
        let expected = try ifMatch(request)
        let document = try await request.jsonBody()
        guard case .object = document else { throw APIError.badRequest("properties must be a JSON object") }
        let version = try await store.write { db -> PropertiesVersion in
            // A document read from this API shows secrets as ****: those keep their stored values.
            let current = try Store.properties(db, project, environment)
            let restored = SecretProperties.restoringMasked(document, from: current.properties)
            return try Store.setProperties(db, project, environment, restored, ifVersion: expected, step: nil, user: APICaller.tokenName)
        }
        return JSONResponse.ok(Views.properties(version))
    }

    private func patchProperties(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (project, environment) = try owner(context)
        let expected = try ifMatch(request)
        let patch: JSONPatch
        do {
            patch = try JSONPatch(json: try await request.jsonBody())
        } catch let error as JSONPatchError {
            throw APIError.badRequest("invalid patch: \(error)")
        }
        if let refusal = SecretPatchGuard.refusal(patch) { throw APIError.badRequest(refusal) }
        let version = try await store.write { db -> PropertiesVersion in
            let current = try Store.properties(db, project, environment)
            let patched: JSON
            do {
                patched = try patch.apply(to: current.properties)
            } catch {
                // The reason may quote a value of the document: never a secret one.
                let reason = SecretProperties.maskValues(in: "\(error)", of: [current.properties])
                throw StoreError.conflict("the patch does not apply to version \(current.version): \(reason)")
            }
            let restored = SecretProperties.restoringMasked(patched, from: current.properties)
            return try Store.setProperties(db, project, environment, restored, ifVersion: expected ?? current.version, step: nil, user: APICaller.tokenName)
        }
        return JSONResponse.ok(Views.properties(version))
    }

    private func createChange(_ request: Request) async throws -> Response {
        let body = try await request.jsonBody()
        let asked = try WorkRequest.ChangeRequest(body)
        let (change, created) = try await submitter.createChange(asked, user: asked.user ?? "unknown", requestId: try body.requestId())
        service?.outboxChanged()
        return JSONResponse.ok(Views.change(change), status: created ? .created : .ok)
    }

    /// Creates changes and batches with the same checks as the request queue.
    var submitter: Submitter { Submitter(engine: engine, mirrors: mirrors) }

    private func retryChange(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try context.parameters.require("change")
        let body = try await request.jsonBody(optional: true)
        guard case .object = body else { throw APIError.badRequest("the body must be a JSON object") }
        let refresh = body["refresh_sha"]?.boolValue ?? false
        let user = try body.optionalString("user") ?? "unknown"
        var sha: String?
        if refresh {
            let old = try await store.read { try Store.change($0, id) }
            let remote = try await store.read { try Store.project($0, old.projectCode).gitRemote }
            let resolved = try await GitResolver.resolve(remote: remote, revision: old.gitRev, git: engine.configuration.git, mirrors: mirrors)
            try await checkAction(old.action, remote: remote, sha: resolved.sha)
            sha = resolved.sha
        }
        let change = try await engine.retry(changeId: id, refreshedSha: sha, user: user)
        service?.outboxChanged()
        return JSONResponse.ok(Views.change(change), status: .created)
    }

    /// Refuses an action the actions file at `sha` does not define (`Submitter.checkAction`).
    private func checkAction(_ action: String, remote: String, sha: String) async throws {
        try await submitter.checkAction(action, remote: remote, sha: sha)
    }

    /// The change's log: JSON lines (`?format=json`) or text; `?follow=true` streams until the
    /// change has finished.
    private func logs(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try context.parameters.require("change")
        let query = request.uri.queryParameters
        let json = query.get("format") == "json"
        let follow = query.get("follow") == "true"
        let store = store
        let leaseSeconds = engine.configuration.leaseSeconds
        _ = try await store.read { try Store.change($0, id) }
        @Sendable func render(_ lines: [Store.LogLine], _ actions: [String: String]) -> String {
            lines.map { json ? Views.logLine($0, actions: actions).serialized() : Views.logText($0, actions: actions) }.map { $0 + "\n" }.joined()
        }
        @Sendable func fetch(after row: Int64) async throws -> (lines: [(row: Int64, line: Store.LogLine)], actions: [String: String], finished: Bool) {
            try await store.read { db in
                let tree = try Store.tree(db, changeId: id, leaseSeconds: leaseSeconds)
                return (try Store.logs(db, changeId: id, afterRow: row), tree.steps.mapValues(\.action), try Store.change(db, id).status.isFinal)
            }
        }
        let contentType = json ? "application/x-ndjson" : "text/plain; charset=utf-8"
        guard follow else {
            let (lines, actions, _) = try await fetch(after: 0)
            return JSONResponse.text(render(lines.map(\.line), actions), contentType: contentType)
        }
        let body = ResponseBody { writer in
            var last: Int64 = 0
            while true {
                let (lines, actions, finished) = try await fetch(after: last)
                if let lastRow = lines.last?.row { last = lastRow }
                if !lines.isEmpty { try await writer.write(ByteBuffer(string: render(lines.map(\.line), actions))) }
                if finished && lines.isEmpty { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: contentType], body: body)
    }

    private func metrics() async throws -> String {
        let counts = try await store.read { db in
            try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM steps GROUP BY status").map { ($0["status"] as String, $0["n"] as Int) }
        }
        var byStatus = Dictionary(uniqueKeysWithValues: StepStatus.allCases.map { ($0.rawValue, 0) })
        for (status, count) in counts { byStatus[status] = count }
        engine.metrics.setSteps(byStatus)
        return engine.metrics.exposition()
    }
}
