import Foundation
import Protocol

/// `opschain-exec CMD…`: runs a command (in a Dockerfile `RUN`) with the variables of
/// `step_context_env.json` exported.
public enum ExecEnvironment {
    public static let defaultPath = "/opt/opschain/.opschain/step_context_env.json"

    /// The variables to add to the command's environment, from the file at `path`.
    public static func variables(path: String) throws(ExecError) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ExecError("\(path) not found: COPY step_context_env.json into the image before using opschain-exec")
        }
        do {
            return try JSONDecoder().decode(StepContextEnv.self, from: data).variables
        } catch {
            throw ExecError("\(path) is not valid: \(error)")
        }
    }
}

public struct ExecError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
