import Protocol

/// What determines a step image.
public struct BuildRequest: Sendable {
    /// The checkout of the project at the step's SHA (with `.git`).
    public var checkout: String
    /// The project's `.opschain/Dockerfile`, or the default one.
    public var dockerfile: String
    /// `step_context_env.json`.
    public var contextEnv: StepContextEnv
    /// `GIT_REV`, `GIT_SHA`, `OPSCHAIN_BASE_RUNNER`, `OPSCHAIN_VERSION`, and
    /// `OPSCHAIN_BUILD_SECRETS_URL` (see `SecretServer`).
    public var buildArgs: [String: String]
    /// What the build key takes from the build secrets instead of the URL (whose port differs
    /// between workers): the HMAC token of their values, nil when there are none.
    public var secretsCacheKey: String?

    public init(checkout: String, dockerfile: String, contextEnv: StepContextEnv, buildArgs: [String: String], secretsCacheKey: String? = nil) {
        self.secretsCacheKey = secretsCacheKey
        self.checkout = checkout
        self.dockerfile = dockerfile
        self.contextEnv = contextEnv
        self.buildArgs = buildArgs
    }
}

/// An image ready to run a step.
public struct BuiltImage: Sendable, Equatable {
    public let reference: String
    /// The hash of everything that determines the image.
    public let key: String
    /// True when an existing image was reused and nothing was built.
    public let reused: Bool
    /// The image's `USER` (empty: root), read with the image, so the run needs no second look.
    public let user: String
}

/// Builds (or finds) the image a step runs in.
public protocol ImageBuilder: Sendable {
    func image(for request: BuildRequest, log: @escaping @Sendable (String) -> Void) async throws(StepFailure) -> BuiltImage
}
