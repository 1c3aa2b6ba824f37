/// `/opt/opschain/.opschain/step_context.json`: what a step's action gets to see.
public struct StepContext: Codable, Sendable, Hashable {
    /// Context values derived from the current step (project, environment, change, step, user).
    public var context: Values
    public var project: PropertySet
    public var environment: PropertySet

    public init(context: Values, project: PropertySet, environment: PropertySet) {
        self.context = context
        self.project = project
        self.environment = environment
    }

    /// Free-form objects, one per context kind, as the seed's context guide describes.
    public struct Values: Codable, Sendable, Hashable {
        public var project: JSON
        public var environment: JSON
        public var change: JSON
        public var step: JSON
        public var user: JSON

        public init(project: JSON, environment: JSON, change: JSON, step: JSON, user: JSON) {
            self.project = project
            self.environment = environment
            self.change = change
            self.step = step
            self.user = user
        }
    }

    /// `{"properties": {...}}` for the project or the environment.
    public struct PropertySet: Codable, Sendable, Hashable {
        public var properties: JSON

        public init(properties: JSON) {
            self.properties = properties
        }
    }

    /// The merged set an action sees: project properties deep-merged with environment
    /// properties (environment wins).
    public var mergedProperties: JSON {
        project.properties.deepMerged(with: environment.properties)
    }
}
