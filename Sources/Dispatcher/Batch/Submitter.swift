import Foundation
import Protocol
import StepRunner
import Synchronization

/// Creates changes and batches from requests, for the HTTP API and the request queue alike:
/// the project and environments must exist, `git_rev` resolves to a SHA once, and the action
/// must be defined in the actions file at that SHA. A request with a request id creates its
/// change or batch once: the same id again answers with what the first one created.
struct Submitter: Sendable {
    let engine: DispatcherEngine
    let mirrors: GitMirrorCache

    init(engine: DispatcherEngine, mirrors: GitMirrorCache? = nil) {
        self.engine = engine
        self.mirrors = mirrors ?? GitMirrorCache.shared(for: engine)
    }

    var store: Store { engine.store }

    func createChange(_ request: WorkRequest.ChangeRequest, user: String, requestId: String?) async throws -> (change: ChangeRecord, created: Bool) {
        if let requestId, let earlier = try await existing(requestId, kind: "change") {
            return (try await store.read { try Store.change($0, earlier) }, false)
        }
        let remote = try await store.read { db -> String in
            _ = try Store.environment(db, request.project, request.environment)
            return try Store.project(db, request.project).gitRemote
        }
        let resolved = try await GitResolver.resolve(remote: remote, revision: request.gitRev, git: engine.configuration.git, mirrors: mirrors)
        try await checkAction(request.action, remote: remote, sha: resolved.sha)
        guard let requestId else {
            let change = try await engine.createChange(
                project: request.project, environment: request.environment, action: request.action, gitRev: resolved.revision, gitSha: resolved.sha, user: user)
            return (change, true)
        }
        return try await engine.createChange(
            requestId: requestId, project: request.project, environment: request.environment, action: request.action, gitRev: resolved.revision,
            gitSha: resolved.sha, user: user)
    }

    func createBatch(_ request: WorkRequest.BatchRequest, user: String, requestId: String?) async throws -> (batch: BatchRecord, created: Bool) {
        if let requestId, let earlier = try await existing(requestId, kind: "batch") {
            return (try await store.read { try Store.batch($0, earlier) }, false)
        }
        let (remote, environments) = try await store.read { db -> (String, [String]) in
            let project = try Store.project(db, request.project)
            let existing = try Store.environments(db, request.project).map(\.code)
            return (project.gitRemote, try request.environments.resolve(among: existing, project: request.project))
        }
        guard request.canary <= environments.count else {
            throw APIError.badRequest("\"canary\" is \(request.canary) but the batch has only \(environments.count) environment\(environments.count == 1 ? "" : "s")")
        }
        let resolved = try await GitResolver.resolve(remote: remote, revision: request.gitRev, git: engine.configuration.git, mirrors: mirrors)
        try await checkAction(request.action, remote: remote, sha: resolved.sha)
        let spec = DispatcherEngine.BatchSpec(
            project: request.project, environments: environments, selector: request.environments.description, action: request.action,
            gitRev: resolved.revision, gitSha: resolved.sha, maxParallel: request.maxParallel, maxFailures: request.maxFailures, canary: request.canary,
            user: user, retryOf: nil)
        return try await engine.createBatch(spec, requestId: requestId)
    }

    /// The id a request id created before, if it created one of `kind`.
    private func existing(_ requestId: String, kind: String) async throws -> String? {
        guard let earlier = try await store.read({ try Store.request($0, requestId) }) else { return nil }
        guard earlier.kind == kind else { throw StoreError.conflict("request \(requestId) created a \(earlier.kind) (\(earlier.id)), not a \(kind)") }
        return earlier.id
    }

    /// Refuses an action the actions file at `sha` does not define (or a missing or invalid
    /// actions file), before anything is queued.
    func checkAction(_ action: String, remote: String, sha: String) async throws {
        let source: GitMirrorCache.ActionsSource?
        do {
            source = try await mirrors.actionsFile(remote: remote, sha: sha)
        } catch {
            throw APIError.badRequest(error.description)
        }
        let at = String(sha.prefix(12))
        guard let source else {
            throw APIError.badRequest(
                "the repository has no actions file at \(at) (\(ActionsFile.candidatePaths.joined(separator: ", "))): commit one, then create the change")
        }
        let file: ActionsFile
        do {
            file = try ActionsFile.parse(source.text, file: source.path)
        } catch {
            throw APIError.badRequest("\(error) (at \(at))")
        }
        guard file.actions[action] != nil else {
            throw APIError.badRequest(
                "action \"\(action)\" is not defined in \(source.path) at \(at) (defined: \(file.actions.keys.sorted().joined(separator: ", ")))")
        }
    }
}

extension GitMirrorCache {
    private static let byDirectory = Mutex<[String: GitMirrorCache]>([:])

    /// The one mirror cache of a dispatcher's database (`<database>.git-mirrors/`), shared by
    /// the HTTP API and the request queue so that fetches into a mirror never overlap.
    static func shared(for engine: DispatcherEngine) -> GitMirrorCache {
        let directory = engine.store.database.path + ".git-mirrors"
        return byDirectory.withLock { caches in
            if let cache = caches[directory] { return cache }
            let cache = GitMirrorCache(directory: directory, git: engine.configuration.git)
            caches[directory] = cache
            return cache
        }
    }
}
