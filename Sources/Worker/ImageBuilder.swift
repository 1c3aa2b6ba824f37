import Protocol

/// What determines a step image.
public struct BuildRequest: Sendable {
    /// The build's secrets and the token that names them.
    public struct Secrets: Sendable {
        /// The HMAC of the values (`BuildSecretStore.token`): what the build key and the URL
        /// take from them.
        public var token: String
        public var variables: [String: String]

        public init(token: String, variables: [String: String]) {
            self.token = token
            self.variables = variables
        }
    }

    /// The checkout of the project at the step's SHA (with `.git`).
    public var checkout: String
    /// The checkout's refs and `HEAD` (`RepositoryFiles.refs`): repo.tar holds them, so the
    /// build key does too.
    public var repositoryRefs: String = ""
    /// The project's `.opschain/Dockerfile`, or the default one.
    public var dockerfile: String
    /// `step_context_env.json`.
    public var contextEnv: StepContextEnv
    /// `GIT_REV`, `GIT_SHA`, `OPSCHAIN_BASE_RUNNER`, `OPSCHAIN_VERSION`. The builder adds
    /// `OPSCHAIN_BUILD_SECRETS_URL` (empty when there are no secrets).
    public var buildArgs: [String: String]
    /// nil when the build has no secrets: then nothing about secrets enters the build key, and
    /// the build runs with no network at all.
    public var secrets: Secrets?
    /// The image the build-secret container runs (the runner image: it has `opschain-exec`).
    public var runnerImage: String
    /// Labels of the build-secret container (who made it, so a dead worker's is reaped).
    public var labels: [String: String]
    /// How long this step waits for its image; past it, it gives up, and the build is stopped
    /// unless another step still waits for the same image.
    public var timeout: Duration

    public init(
        checkout: String, dockerfile: String, contextEnv: StepContextEnv, buildArgs: [String: String], secrets: Secrets? = nil,
        runnerImage: String, labels: [String: String] = [:], timeout: Duration = .seconds(1800)
    ) {
        self.checkout = checkout
        self.dockerfile = dockerfile
        self.contextEnv = contextEnv
        self.buildArgs = buildArgs
        self.secrets = secrets
        self.runnerImage = runnerImage
        self.labels = labels
        self.timeout = timeout
    }

    /// What the build key takes from the secrets: their token, nil when there are none.
    public var secretsCacheKey: String? { secrets?.token }
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
    /// Cancelling the calling task gives up waiting (a `StepFailure` saying so) and stops the
    /// build when no other caller waits for it.
    func image(for request: BuildRequest, log: @escaping @Sendable (String) -> Void) async throws(StepFailure) -> BuiltImage
    /// The image of the request's build key when one exists already, nil when it must be
    /// built: needs no checkout (`request.checkout` is not read).
    func existingImage(for request: BuildRequest) async throws(StepFailure) -> BuiltImage?
}
