import AMQP
import Foundation
import Logging
import Protocol
import StepRunner
import Synchronization

/// Runs one attempt of one step: check out, build, run, and say how it ended. Every failure
/// becomes an outcome whose error says exactly what went wrong; nothing here throws.
struct StepExecutor: Sendable {
    let configuration: WorkerConfiguration
    let mirror: GitMirror
    let builder: any ImageBuilder
    let runtime: any ContainerRuntime
    let publisher: EventPublisher
    let secrets: BuildSecretsProvider
    /// The mirror's files and refs read for earlier steps (of the same commit or change).
    let repositoryFiles = RepositoryFileCache()

    /// Returns once the step's last log lines and every phase event are confirmed (they went
    /// out without waiting, and are confirmed together): the outcome may go.
    func execute(_ job: StepJob, claimedAt: EpochMilliseconds, cancellation: StepCancellation, log: LogShipper) async -> StepOutcome {
        let phases = PhaseEvents(publisher: publisher)
        let outcome = await execute(job, claimedAt: claimedAt, cancellation: cancellation, log: log, phases: phases)
        async let logs: Void = log.finish()
        await phases.confirmed()
        await logs
        return outcome
    }

    private func execute(_ job: StepJob, claimedAt: EpochMilliseconds, cancellation: StepCancellation, log: LogShipper, phases: PhaseEvents) async -> StepOutcome {
        let ref = AttemptRef(stepId: job.stepId, attempt: job.attempt)
        var outcome = StepOutcome(ref: ref, worker: configuration.name, status: .error, runStarted: false)
        outcome.claimedAt = claimedAt
        let clock = ContinuousClock()
        let scratch = (configuration.workDirectory as NSString).appendingPathComponent("steps/\(Self.safe(job.stepId))-\(job.attempt)-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        // Secret properties never reach the log (the step itself gets them).
        log.mask(SecretProperties.values(job.context.mergedProperties))

        // Build phase: checkout and image.
        let buildStart = clock.now
        log.system("build: started")
        phase(phases, ref, .build, .started)
        // Refused before any work: a network this worker does not offer.
        let network: String?
        do {
            network = try StepNetwork.resolve(job.context.mergedProperties, allowed: configuration.stepNetworks)
        } catch {
            return fail(&outcome, log, error.description)
        }
        let checkout = (scratch as NSString).appendingPathComponent("repo")
        let mirrorPath: String
        do {
            let prepared = try await mirror.prepare(remote: job.git.remote, sha: job.git.sha, change: job.changeId)
            mirrorPath = prepared.mirror
            if let note = prepared.note { log.system(note) }
        } catch {
            return fail(&outcome, log, "checkout failed: \(error)")
        }
        // The repository's own files and refs come from git's objects at the SHA in the
        // mirror, never through a checkout's file system (a committed symbolic link must not
        // reach a host file): a checkout is made only when the image must be built.
        let files = RepositoryFiles(checkout: mirrorPath, sha: job.git.sha, cache: repositoryFiles)
        let dockerfile: String
        let action: ActionsFile.Action?
        let refs: String
        do {
            dockerfile = try await files.read(DefaultDockerfile.path).map { String(decoding: $0, as: UTF8.self) } ?? DefaultDockerfile.text
            action = try await actionsFile(files)?.actions[job.action]
            refs = try await files.refs(fromMirror: true, change: job.changeId)
        } catch {
            return fail(&outcome, log, error.description)
        }
        outcome.policy = action?.policy
        let contextEnv: StepContextEnv
        do {
            contextEnv = try StepContextEnv(job.context)
        } catch {
            return fail(&outcome, log, "the env properties are invalid: \(error)")
        }
        let baseImage = configuration.runnerImage ?? job.runner.baseImage
        let buildSecrets: BuildRequest.Secrets?
        let buildTimeout: Duration
        do {
            buildSecrets = try secrets.secrets(job.buildSecrets)
            let resolved = try BuildTimeout.resolve(job.context.mergedProperties, maximum: configuration.buildTimeout)
            buildTimeout = resolved.timeout
            if let note = resolved.note { log.system(note) }
        } catch {
            return fail(&outcome, log, error.description)
        }
        log.mask(buildSecrets.map { Array($0.variables.values) } ?? [])
        var request = BuildRequest(
            checkout: checkout, dockerfile: dockerfile, contextEnv: contextEnv,
            buildArgs: ["GIT_REV": job.git.rev, "GIT_SHA": job.git.sha, "OPSCHAIN_BASE_RUNNER": baseImage, "OPSCHAIN_VERSION": job.runner.version],
            secrets: buildSecrets, runnerImage: baseImage,
            labels: ContainerLabels.labels(worker: configuration.name, ref: ref, pool: configuration.pool), timeout: buildTimeout)
        request.repositoryRefs = refs
        // The build key from the mirror: an image of it exists already (a cache hit), or a
        // checkout is made for the build.
        let existing: BuiltImage?
        do {
            existing = try await builder.existingImage(for: request)
        } catch {
            return fail(&outcome, log, error.description)
        }
        if existing == nil {
            do {
                try await mirror.clone(mirrorPath, remote: job.git.remote, sha: job.git.sha, into: checkout)
                // The mirror may have been fetched since its refs were read: repo.tar holds the
                // checkout's, and so does the key.
                request.repositoryRefs = try await RepositoryFiles(checkout: checkout, sha: job.git.sha).refs(fromMirror: false)
            } catch let error as CheckoutError {
                return fail(&outcome, log, "checkout failed: \(error)")
            } catch {
                return fail(&outcome, log, "\(error)")
            }
        }
        let buildRequest = request
        let initialiseMs = Clock.milliseconds(clock.now - buildStart)
        outcome.phases = PhaseDurations(buildInitialiseMs: initialiseMs)
        log.system(
            "build: initialised in \(initialiseMs) ms (\(existing == nil ? "checkout of \(job.git.sha.prefix(12))" : "no checkout: the image of this build key exists"), "
                + "\(refs.split(separator: "\n").count - 2) refs, \(dockerfile == DefaultDockerfile.text ? "the default Dockerfile" : "the project's Dockerfile"))")
        // The build runs in a task of its own so that a cancel can stop it (the builder then
        // stops the engine's build unless another step waits for the same image).
        let builder = builder
        let build = Task { () -> Result<BuiltImage, StepFailure> in
            if let existing { return .success(existing) }
            do throws(StepFailure) {
                return .success(try await builder.image(for: buildRequest) { line in log.write(.stdout, line) })
            } catch {
                return .failure(error)
            }
        }
        cancellation.onCancel { build.cancel() }
        let image: BuiltImage
        switch await build.value {
        case .success(let built):
            image = built
        case .failure(let error):
            if cancellation.isCancelled { return cancelled(&outcome, log, cancellation, during: "the image build") }
            return fail(&outcome, log, error.description)
        }
        let buildMs = Clock.milliseconds(clock.now - buildStart)
        outcome.buildMs = buildMs
        outcome.phases?.buildMs = buildMs
        WorkerMetrics.buildCache(hit: image.reused)
        log.system("build: finished in \(buildMs) ms (\(image.reused ? "existing image reused" : "image built"): \(image.reference))")
        phase(phases, ref, .build, .finished, duration: buildMs, durations: outcome.phases)
        if cancellation.isCancelled { return cancelled(&outcome, log, cancellation) }

        // Run phase: create the container and copy the context in (initialise), run it, read
        // its output and result (completing).
        let runPhaseStart = clock.now
        log.system("run: started")
        let timeoutSeconds = job.timeoutSeconds ?? action?.timeout
        let timeout = timeoutSeconds.map { Duration.seconds($0) } ?? configuration.defaultTimeout
        let stepContext: Data
        do {
            stepContext = try JSONEncoder().encode(job.context)
        } catch {
            return fail(&outcome, log, "cannot encode step_context.json: \(error)")
        }
        let run = ContainerRun(
            image: image.reference, action: job.action, stepContext: stepContext, timeout: timeout,
            labels: ContainerLabels.labels(worker: configuration.name, ref: ref, pool: configuration.pool), limits: configuration.limits,
            network: network, imageUser: image.user)
        let runStart = RunStart()
        let result: ContainerResult
        do {
            result = try await runtime.run(
                run, cancellation: cancellation,
                started: {
                    // Said (and confirmed) before the container starts: from here on a lost
                    // worker means a run that may have had effects.
                    let initialiseMs = Clock.milliseconds(clock.now - runPhaseStart)
                    log.system("run: initialised in \(initialiseMs) ms (container created, step_context.json copied in); starting the container")
                    phase(phases, ref, .run, .started, policy: action?.policy)
                    await phases.confirmed()
                    runStart.mark(at: clock.now, initialiseMs: initialiseMs)
                },
                output: { stream, data in log.output(stream, data) })
        } catch {
            log.endOutput()
            outcome.runStarted = runStart.mark != nil
            return fail(&outcome, log, error.description)
        }
        log.endOutput()
        let mark = runStart.mark
        outcome.runStarted = mark != nil
        if case let (started, initialiseMs)? = mark {
            let now = clock.now
            let exited = result.exitedAt ?? now
            let completingMs = Clock.milliseconds(now - exited)
            let runMs = Clock.milliseconds(now - runPhaseStart)
            outcome.runMs = runMs
            outcome.phases?.runInitialiseMs = initialiseMs
            outcome.phases?.runningMs = Clock.milliseconds(exited - started)
            outcome.phases?.runCompletingMs = completingMs
            outcome.phases?.runMs = runMs
            log.system("run: completing in \(completingMs) ms (output and step_result.json read after the container exited; sending the outcome)")
            log.system("run: finished in \(runMs) ms (exit code \(result.exitCode.map(String.init) ?? "none"))")
            phase(phases, ref, .run, .finished, duration: runMs, durations: outcome.phases)
        }
        outcome.exitCode = result.exitCode
        if result.cancelled { return cancelled(&outcome, log, cancellation) }
        if result.timedOut {
            return fail(&outcome, log, "the step ran longer than its timeout of \(timeoutSeconds.map { "\($0) s" } ?? "\(timeout)") and was killed")
        }
        if result.diskExceeded {
            return fail(&outcome, log, "the step wrote more than its disk limit of \(configuration.limits.diskBytes >> 20) MiB and was killed")
        }
        if result.outOfMemory {
            let limit = "\(configuration.limits.memoryBytes >> 20) MiB"
            guard result.exitCode == 0 else {
                return fail(
                    &outcome, log,
                    "the step ran out of memory: a process passed the container's limit of \(limit) and was killed (exit code \(result.exitCode ?? -1))")
            }
            log.system("run: a process passed the container's memory limit of \(limit) and was killed; the action still succeeded")
        }
        guard let resultData = result.stepResult else {
            return fail(&outcome, log, "the action exited with code \(result.exitCode ?? -1) and wrote no /opt/opschain/.opschain/step_result.json")
        }
        let stepResult: StepResult
        do {
            stepResult = try JSONDecoder().decode(StepResult.self, from: resultData)
        } catch let error as DecodingError {
            return fail(&outcome, log, "step_result.json is invalid: \(DecodingProblem(error, file: "/opt/opschain/.opschain/step_result.json", data: resultData))")
        } catch {
            return fail(&outcome, log, "step_result.json is invalid: \(error)")
        }
        outcome.result = stepResult
        guard result.exitCode == 0 else {
            return fail(&outcome, log, stepResult.error ?? "the action exited with code \(result.exitCode ?? -1)")
        }
        if let error = stepResult.error { return fail(&outcome, log, error) }
        outcome.status = .success
        return outcome
    }

    /// Sends a phase event behind the step's earlier ones, without waiting for its confirm.
    private func phase(
        _ phases: PhaseEvents, _ ref: AttemptRef, _ name: Phase.Name, _ state: Phase.State, duration: Int? = nil, durations: PhaseDurations? = nil,
        policy: ActionPolicy? = nil
    ) {
        let publisher = publisher
        let at = Clock.epochMilliseconds()
        phases.send { () throws(AMQPError) in
            try await publisher.event(.phase, ref, phase: Phase(name: name, state: state, durationMs: duration, durations: durations), policy: policy, at: at)
        }
    }

    private func fail(_ outcome: inout StepOutcome, _ log: LogShipper, _ error: String) -> StepOutcome {
        outcome.status = .error
        outcome.error = log.masked(error)
        log.system("error: \(error)")
        return outcome
    }

    /// The actions file at the SHA, nil when there is none or it does not parse (the step's
    /// runner then says why); refused when it is not a regular file or is too large.
    private func actionsFile(_ files: RepositoryFiles) async throws(StepFailure) -> ActionsFile? {
        for path in ActionsFile.candidatePaths {
            guard let data = try await files.read(path, maximumBytes: ActionsFile.maximumBytes) else { continue }
            return try? ActionsFile.parse(String(decoding: data, as: UTF8.self), file: path)
        }
        return nil
    }

    private func cancelled(_ outcome: inout StepOutcome, _ log: LogShipper, _ cancellation: StepCancellation, during phase: String? = nil) -> StepOutcome {
        switch cancellation.reason {
        case .cancelled:
            outcome.status = .cancelled
            outcome.error = phase.map { "cancelled during \($0)" } ?? "cancelled"
            log.system(outcome.error!)
            return outcome
        case .killed(let why):
            return fail(&outcome, log, why)
        }
    }

    private static func safe(_ text: String) -> String {
        String(text.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }.prefix(64))
    }
}

/// Labels on every step container: who runs it, for what, and from which process, so a
/// worker can find containers a dead worker on its host left behind.
enum ContainerLabels {
    static let worker = "org.stepfleet.worker"
    static let step = "org.stepfleet.step"
    static let attempt = "org.stepfleet.attempt"
    static let pool = "org.stepfleet.pool"
    static let host = "org.stepfleet.host"
    static let pid = "org.stepfleet.pid"

    static func labels(worker name: String, ref: AttemptRef, pool: String) -> [String: String] {
        [
            worker: name, step: ref.stepId, attempt: String(ref.attempt), pool: pool,
            host: ProcessInfo.processInfo.hostName, pid: String(getpid()),
        ]
    }
}

/// When the step's container was started and how long its initialisation took: set once by
/// the runtime's `started` callback, read after the run.
private final class RunStart: Sendable {
    private let state = Mutex<(at: ContinuousClock.Instant, initialiseMs: Int)?>(nil)

    var mark: (at: ContinuousClock.Instant, initialiseMs: Int)? { state.withLock { $0 } }

    func mark(at instant: ContinuousClock.Instant, initialiseMs: Int) {
        state.withLock { $0 = (instant, initialiseMs) }
    }
}
