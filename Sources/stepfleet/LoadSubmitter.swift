import Foundation
import Protocol

/// How `stepfleet load` hands one change to the dispatcher. Over the HTTP API here; a
/// submitter over the AMQP request queue (`--via queue`) conforms to the same protocol, and
/// everything else (pacing, reading back, the report) stays as it is.
protocol LoadSubmitter: Sendable {
    /// What the report calls it (`http`).
    var via: String { get }
    /// Creates one change and returns its id; throws `LoadSubmitError` with the dispatcher's
    /// reason when it was refused or could not be sent.
    func submit(project: String, environment: String, action: String, gitRev: String?, user: String) async throws(LoadSubmitError) -> String
}

/// A submission that did not create a change, with the reason as the report counts it.
struct LoadSubmitError: Error, CustomStringConvertible {
    let description: String
}

/// `POST /changes`, as `stepfleet change create` does.
struct LoadHTTPSubmitter: LoadSubmitter {
    let client: APIClient
    var via: String { "http" }

    func submit(project: String, environment: String, action: String, gitRev: String?, user: String) async throws(LoadSubmitError) -> String {
        var body: [String: JSON] = ["project": .string(project), "environment": .string(environment), "action": .string(action), "user": .string(user)]
        if let gitRev { body["git_rev"] = .string(gitRev) }
        do {
            let change = try await client.request("POST", "/changes", body: .object(body))
            guard let id = change["id"]?.stringValue else { throw LoadSubmitError(description: "the dispatcher's answer has no change id") }
            return id
        } catch let error as LoadSubmitError {
            throw error
        } catch {
            throw LoadSubmitError(description: "\(error)")
        }
    }
}
