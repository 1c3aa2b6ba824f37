/// The Dockerfile used for a step image when the repository has no `.opschain/Dockerfile`;
/// `stepfleet dev create-dockerfile` writes it there to be customised.
public enum DefaultDockerfile {
    public static let path = ".opschain/Dockerfile"

    public static let text = """
        # StepFleet step runner image. Build context: repo.tar (the project repository at
        # GIT_SHA, .git included) and step_context_env.json (env properties and context values
        # for opschain-exec). Build args: GIT_REV, GIT_SHA, OPSCHAIN_BASE_RUNNER, OPSCHAIN_VERSION,
        # and OPSCHAIN_BUILD_SECRETS_URL, from which opschain-exec fetches the build secrets (they
        # reach only its command's environment: never a layer, the history or the cache).
        # Keep to RUN, COPY, ENV and ADD; do not change the ENTRYPOINT. Steps and RUN lines run as
        # the base image's unprivileged user opschain, who owns /opt/opschain; for a RUN that
        # needs root, put USER root before it and USER opschain after it.
        ARG OPSCHAIN_BASE_RUNNER
        FROM ${OPSCHAIN_BASE_RUNNER}

        ARG GIT_REV
        ARG GIT_SHA
        ARG OPSCHAIN_VERSION
        ARG OPSCHAIN_BUILD_SECRETS_URL

        WORKDIR /opt/opschain
        ADD repo.tar ./
        COPY step_context_env.json .opschain/step_context_env.json

        # Example: prepare the image with the project's settings and build secrets.
        # RUN opschain-exec ./prepare.sh

        """
}
