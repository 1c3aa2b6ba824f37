/// `step_context_env.json`, in the step image's build context: the `env` properties of the
/// project and environment (environment wins) and the project and environment context values,
/// for `opschain-exec`. It holds nothing that changes per change or step, so it does not defeat
/// the image build cache.
public struct StepContextEnv: Codable, Sendable, Hashable {
    public var env: [String: String]
    public var context: Context

    public struct Context: Codable, Sendable, Hashable {
        public var project: JSON
        public var environment: JSON

        public init(project: JSON, environment: JSON) {
            self.project = project
            self.environment = environment
        }
    }

    public init(env: [String: String], context: Context) {
        self.env = env
        self.context = context
    }

    /// Built from a step's context.
    public init(_ stepContext: StepContext) throws(PropertyShapeError) {
        env = try stepContext.mergedProperties.envProperties()
        context = Context(project: stepContext.context.project, environment: stepContext.context.environment)
    }

    /// The variables `opschain-exec` exports: the `env` properties, plus
    /// `OPSCHAIN_PROJECT_CODE`, `OPSCHAIN_PROJECT_NAME`, `OPSCHAIN_ENVIRONMENT_CODE` and
    /// `OPSCHAIN_ENVIRONMENT_NAME` where the context has them.
    public var variables: [String: String] {
        var result = env
        for (prefix, value) in [("OPSCHAIN_PROJECT", context.project), ("OPSCHAIN_ENVIRONMENT", context.environment)] {
            if let code = value["code"]?.stringValue { result["\(prefix)_CODE"] = code }
            if let name = value["name"]?.stringValue { result["\(prefix)_NAME"] = name }
        }
        return result
    }
}
