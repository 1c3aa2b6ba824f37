/// `/opt/opschain/.opschain/step_result.json`: what a step hands back.
public struct StepResult: Codable, Sendable, Hashable {
    public var project: Diff
    public var environment: Diff
    public var step: StepProperties
    public var steps: Children
    /// StepFleet's addition to the seed's shape: why the action failed, written by
    /// `opschain-action` when it can say (unknown action, invalid properties copy, …). Absent on
    /// success, so successful results keep the seed's shape exactly.
    public var error: String?

    public init(
        project: Diff = Diff(), environment: Diff = Diff(), step: StepProperties = StepProperties(), steps: Children = Children(),
        error: String? = nil
    ) {
        self.project = project
        self.environment = environment
        self.step = step
        self.steps = steps
        self.error = error
    }

    /// `{"properties_diff": [RFC 6902 operations]}`.
    public struct Diff: Codable, Sendable, Hashable {
        public var propertiesDiff: JSONPatch

        public init(propertiesDiff: JSONPatch = JSONPatch()) {
            self.propertiesDiff = propertiesDiff
        }

        enum CodingKeys: String, CodingKey {
            case propertiesDiff = "properties_diff"
        }
    }

    /// `{"properties": merged properties applied to the action}`.
    public struct StepProperties: Codable, Sendable, Hashable {
        public var properties: JSON

        public init(properties: JSON = .emptyObject) {
            self.properties = properties
        }
    }

    /// `{"children": [...], "child_execution_strategy": "serial" | "parallel" | null}`.
    public struct Children: Codable, Sendable, Hashable {
        public var children: [ChildStep]
        public var childExecutionStrategy: ExecutionStrategy?

        public init(children: [ChildStep] = [], childExecutionStrategy: ExecutionStrategy? = nil) {
            self.children = children
            self.childExecutionStrategy = childExecutionStrategy
        }

        enum CodingKeys: String, CodingKey {
            case children
            case childExecutionStrategy = "child_execution_strategy"
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            children = try container.decodeIfPresent([ChildStep].self, forKey: .children) ?? []
            childExecutionStrategy = try container.decodeIfPresent(ExecutionStrategy.self, forKey: .childExecutionStrategy)
        }

        // The seed writes `"child_execution_strategy": null` explicitly; so do we.
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(children, forKey: .children)
            try container.encode(childExecutionStrategy, forKey: .childExecutionStrategy)
        }

        /// The strategy children run with: `serial` unless `parallel` was asked for.
        public var effectiveStrategy: ExecutionStrategy { childExecutionStrategy ?? .serial }
    }
}

/// A child step to run after the step's own action.
public struct ChildStep: Codable, Sendable, Hashable {
    public var action: String

    public init(action: String) {
        self.action = action
    }
}

/// How a step's children run.
public enum ExecutionStrategy: String, Codable, Sendable, Hashable, CaseIterable {
    /// One at a time, in order; a failure stops the rest.
    case serial
    /// All at once; the parent fails if any child fails.
    case parallel
}
