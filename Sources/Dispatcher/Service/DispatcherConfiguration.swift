import Protocol

public struct DispatcherConfiguration: Sendable {
    /// Seconds a claim or heartbeat keeps an attempt's lease (three worker heartbeats by default).
    public var leaseSeconds: Double
    /// `OPSCHAIN_BASE_RUNNER` and `OPSCHAIN_VERSION` for step images.
    public var runner: RunnerSettings
    /// The build-secret set used when neither project nor environment lists any.
    public var defaultBuildSecrets: [String]

    public init(
        leaseSeconds: Double = 20, runner: RunnerSettings = RunnerSettings(baseImage: "stepfleet/runner:\(StepFleetVersion.current)", version: StepFleetVersion.current),
        defaultBuildSecrets: [String] = ["opschain-build-env"]
    ) {
        self.leaseSeconds = leaseSeconds
        self.runner = runner
        self.defaultBuildSecrets = defaultBuildSecrets
    }
}
