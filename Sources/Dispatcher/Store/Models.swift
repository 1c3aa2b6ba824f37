import Protocol

public struct Project: Codable, Sendable, Equatable {
    public var code: String
    public var name: String
    public var gitRemote: String
}

public struct Environment: Codable, Sendable, Equatable {
    public var projectCode: String
    public var code: String
    public var name: String
}

/// One version of a properties document.
public struct PropertiesVersion: Codable, Sendable, Equatable {
    public var version: Int
    public var properties: JSON
}

public struct ChangeRecord: Codable, Sendable, Equatable {
    public var id: String
    public var projectCode: String
    public var environmentCode: String
    public var action: String
    public var gitRev: String
    /// The SHA `gitRev` resolved to when the change was created.
    public var gitSha: String
    public var status: ChangeStatus
    public var user: String
    public var retryOf: String?
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
}

/// A request the store refuses: the HTTP API turns these into 4xx answers.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(String)
    case conflict(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .notFound(let what): what
        case .conflict(let what): what
        case .invalid(let what): what
        }
    }
}
