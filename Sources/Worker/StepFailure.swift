/// Why a step ended in error, in words for its log and outcome.
public struct StepFailure: Error, Sendable, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
