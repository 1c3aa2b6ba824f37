import Foundation
import Protocol

/// Reads a load run's changes back from the API: which are still open, and each finished
/// change's view with its step tree and time stamps.
struct LoadReader: Sendable {
    let client: APIClient
    let project: String

    /// Ids of the project's changes pending or running (pending first: a change that starts
    /// between the two lists is in one of them).
    func open() async throws -> Set<String> {
        var ids: Set<String> = []
        for status in ["pending", "running"] {
            let listed = try await client.request("GET", "/changes?project=\(project)&status=\(status)&limit=1000")
            for change in listed.arrayValue ?? [] { if let id = change["id"]?.stringValue { ids.insert(id) } }
        }
        return ids
    }

    /// The change, once it has finished; nil while it is still open.
    func finished(_ id: String) async throws -> LoadChangeSample? {
        let view = try await client.request("GET", "/changes/\(id)")
        guard let sample = LoadChangeSample(view: view) else { throw CLIError("the dispatcher's view of change \(id) lacks its id, status or creation time") }
        return ["success", "error", "cancelled"].contains(sample.status) ? sample : nil
    }
}
