import AMQP
import Fleet
import Foundation
import Logging
import Protocol
import ServiceLifecycle

/// A worker process: takes at most one job per free slot from its pool's queue (a credit
/// subscription: a job holds its slot from delivery until it finished), claims each (the
/// claim is confirmed before the job is acked), runs it, and publishes the outcome through
/// `stepfleet.events`. It runs only jobs the dispatcher's broker account published.
/// Stateless: kill it at any moment and the dispatcher's leases bring its steps home.
///
/// A swift-service-lifecycle `Service`: in a `ServiceGroup`, the group's graceful shutdown
/// (SIGTERM, SIGINT) stops it as `shutdown()` does, and `run()` returns once it has stopped.
public actor WorkerService: Service {
    public let configuration: WorkerConfiguration
    private let client: AMQPClient
    private let engine: DockerEngine
    private let executor: StepExecutor
    private let publisher: EventPublisher
    private var logger: Logger
    private let controlQueue: String

    private var jobs: AMQPSubscription?
    private var running: [AttemptRef: StepCancellation] = [:]
    /// Deliveries being claimed (not yet acked).
    private var claiming = 0
    private var engineHealthy = true
    /// Set while the work directory or the engine's disk has less free space than allowed.
    private var diskLow = false
    private var draining = false
    /// Where the stop is: asked by the service group's graceful shutdown or by `shutdown()`.
    private var stop = StopState.serving
    /// `run()` and second `shutdown()` calls waiting for the stop to end.
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private var tasks: [Task<Void, Never>] = []
    private var stepTasks: [AttemptRef: Task<Void, Never>] = [:]

    enum StopState {
        /// Taking jobs (or starting up).
        case serving
        /// `shutdown()` runs.
        case stopping
        /// Stopped: the broker connection is closed.
        case stopped

        var isServing: Bool { if case .serving = self { true } else { false } }
    }

    /// How long the steps killed when the grace period ran out are waited for before the
    /// worker stops anyway (the dispatcher's leases then bring them home).
    static let killedStepsWait = Duration.seconds(15)

    public init(configuration: WorkerConfiguration, brokers: [AMQPConfiguration], engine: DockerEngine, logger: Logger) {
        self.configuration = configuration
        self.engine = engine
        var logger = logger
        logger[metadataKey: "worker"] = "\(configuration.name)"
        self.logger = logger
        controlQueue = Names.controlQueue(worker: configuration.name)
        client = AMQPClient(endpoints: brokers, topology: FleetTopology.worker(controlQueue: controlQueue), logger: logger)
        publisher = EventPublisher(client: client, worker: configuration.name, brokerUser: brokers[0].user)
        executor = StepExecutor(
            configuration: configuration,
            mirror: GitMirror(directory: (configuration.workDirectory as NSString).appendingPathComponent("git"), policy: configuration.gitPolicy),
            builder: DockerImageBuilder(
                engine: engine, scratchDirectory: (configuration.workDirectory as NSString).appendingPathComponent("build"),
                maximumConcurrentBuilds: configuration.maximumConcurrentBuilds, repository: configuration.imageRepository,
                maximumBuildTime: configuration.buildTimeout),
            runtime: configuration.runtime == .oci
                ? OCIContainerRuntime(
                    engine: engine, workDirectory: configuration.workDirectory, runc: OCIRunc.locate() ?? "/usr/sbin/runc",
                    layerDirectory: configuration.layerCacheDirectory, warmContainers: configuration.warmContainers ?? configuration.slots)
                : DockerContainerRuntime(engine: engine),
            publisher: publisher,
            secrets: BuildSecretsProvider(directory: configuration.secretsDirectory, workDirectory: configuration.workDirectory))
    }

    /// Runs until the service group's graceful shutdown or `shutdown()` has stopped the worker.
    public func run() async {
        // The group's graceful shutdown, or its cancellation (the shutdown took too long): stop
        // either way; `serve()` returns once stopped.
        await withTaskCancellationOrGracefulShutdownHandler {
            await serve()
        } onCancelOrGracefulShutdown: {
            Task { await self.shutdown() }
        }
    }

    private func serve() async {
        logger.info("worker starting", metadata: ["pool": "\(configuration.pool)", "slots": "\(configuration.slots)", "runtime": "\(configuration.runtime.rawValue)"])
        engineHealthy = await engine.ping()
        if engineHealthy {
            await reapLeftoverContainers()
        } else {
            logger.error("the Docker engine at \(engine.socketPath) does not answer: not taking jobs until it does")
        }
        await checkDisk()
        // A stop asked during start-up ran `shutdown()` before anything below existed.
        guard stop.isServing else { return await untilStopped() }
        await client.start()
        await waitForPoolQueue()
        // A stop asked while waiting: `shutdown()` stops the client.
        guard stop.isServing else { return await untilStopped() }
        let jobs = await client.subscribe(queue: Names.stepsQueue(pool: configuration.pool), capacity: configuration.slots, paused: !engineHealthy || diskLow)
        self.jobs = jobs
        let control = await client.subscribe(queue: controlQueue, prefetch: 50)
        tasks.append(Task { for await delivery in jobs { await self.received(delivery) } })
        tasks.append(Task { for await delivery in control { await self.control(delivery) } })
        tasks.append(Task { await self.heartbeats() })
        tasks.append(Task { [client, publisher] in await PresenceAnnouncer(client: client, brokerUser: publisher.brokerUser).run { await self.presence() } })
        tasks.append(Task { await self.watchEngine() })
        tasks.append(Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                await self.checkDisk()
            }
        })
        tasks.append(Task { await self.pruneImages() })
        tasks.append(Task {
            // Containers of a worker that died on this host go within seconds, not when it restarts.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(3))
                await self.reapLeftoverContainers()
            }
        })
        // A shutdown that began while the subscriptions were being made found less to stop.
        if !stop.isServing {
            await jobs.cancel()
            for task in tasks { task.cancel() }
            await client.stop()
        }
        await untilStopped()
    }

    /// Returns when `shutdown()` has finished (at once if it has).
    private func untilStopped() async {
        await withCheckedContinuation { continuation in
            if case .stopped = stop { continuation.resume() } else { stopWaiters.append(continuation) }
        }
    }

    /// The dispatcher's account from `configuration`, or (unset: a fleet sharing one account)
    /// the account this worker connects as.
    private var dispatcherUser: String { configuration.dispatcherUser ?? publisher.brokerUser }

    /// The pool's queue is the dispatcher's to declare (a worker's account may not): until it
    /// exists, wait and say why.
    private func waitForPoolQueue() async {
        let queue = Names.stepsQueue(pool: configuration.pool)
        var told = ContinuousClock.now - .seconds(3600)
        while stop.isServing && !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                _ = try await client.connected(timeout: .seconds(10)).messageCount(queue: queue)
                return
            } catch {
                if ContinuousClock.now - told > .seconds(60) {
                    told = ContinuousClock.now
                    logger.warning(
                        "waiting for the pool's queue \(queue): the dispatcher declares it at start (default pool) and before the pool's first job; check that a dispatcher runs on this broker and vhost",
                        metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }

    /// Steps running right now.
    public var runningSteps: [AttemptRef] { Array(running.keys) }

    private func presence() -> WorkerPresence {
        WorkerPresence(
            worker: configuration.name, pool: configuration.pool, slots: configuration.slots, slotsInUse: running.count + claiming, draining: draining,
            at: Clock.epochMilliseconds())
    }

    // MARK: Jobs

    private func received(_ delivery: AMQPDelivery) async {
        let job: StepJob
        do {
            job = try WireCodec.decode(StepJob.self, from: delivery.body)
        } catch {
            logger.warning("rejecting a job that does not decode; it is dead-lettered", metadata: ["reason": "\(error)"])
            try? await delivery.reject(requeue: false)
            await jobs?.release()
            return
        }
        let ref = AttemptRef(stepId: job.stepId, attempt: job.attempt)
        guard delivery.properties.userId == dispatcherUser else {
            // Behind the broker's permissions (only the dispatcher's account may write to the
            // jobs exchange): a job from any other account is never run.
            logger.error(
                "dead-lettering a step job not published by the dispatcher's broker account \(dispatcherUser); not running it (if the dispatcher connects as another user, start the worker with --dispatcher-user USER)",
                metadata: ["published_by": "\(delivery.properties.userId ?? "no user_id")", "step": "\(ref)"])
            try? await delivery.reject(requeue: false)
            await jobs?.release()
            return
        }
        var stepLogger = logger
        stepLogger[metadataKey: "change"] = "\(job.changeId)"
        stepLogger[metadataKey: "step"] = "\(job.stepId)"
        stepLogger[metadataKey: "attempt"] = "\(job.attempt)"
        if running[ref] != nil {
            // Delivered again although this worker claimed and acked it: its ack was lost (a
            // broker restart loses acks in flight). It runs here already; drop the copy.
            stepLogger.info("dropping a second delivery of a job this worker runs")
            try? await delivery.ack()
            await jobs?.release()
            return
        }
        guard !draining, engineHealthy, !diskLow, running.count + claiming < configuration.slots else {
            // Sent by the broker a moment before a pause (drain, engine down): give it back.
            stepLogger.info("not taking a job delivered as this worker paused; giving it back", metadata: ["running": "\(running.count)", "claiming": "\(claiming)"])
            try? await delivery.nack(requeue: true)
            await jobs?.release()
            return
        }
        claiming += 1
        let claimedAt = Clock.epochMilliseconds()
        do {
            try await publisher.event(.claimed, ref, claimToken: job.claimToken)
        } catch {
            claiming -= 1
            stepLogger.warning("cannot publish the claim; giving the job back", metadata: ["error": "\(error)"])
            try? await delivery.nack(requeue: true)
            await jobs?.release()
            return
        }
        do {
            try await delivery.ack()
        } catch {
            // The broker will deliver it again (here or elsewhere); this claim is void.
            claiming -= 1
            stepLogger.warning("the job could not be acked after the claim; leaving it to its redelivery", metadata: ["error": "\(error)"])
            await jobs?.release()
            return
        }
        claiming -= 1
        let cancellation = StepCancellation()
        running[ref] = cancellation
        stepLogger.info("claimed", metadata: ["action": "\(job.action)"])
        stepTasks[ref] = Task { await self.execute(job, ref: ref, claimedAt: claimedAt, cancellation: cancellation, logger: stepLogger) }
    }

    private func execute(_ job: StepJob, ref: AttemptRef, claimedAt: EpochMilliseconds, cancellation: StepCancellation, logger: Logger) async {
        let log = LogShipper(ref: ref, worker: configuration.name, publisher: publisher, logger: logger, logCap: configuration.logCap)
        var result = await executor.execute(job, claimedAt: claimedAt, cancellation: cancellation, log: log)
        result.claimToken = job.claimToken
        let outcome = result
        WorkerMetrics.finished(outcome)
        let publisher = publisher
        let delivered = await publisher.untilConfirmed("outcome") { () throws(AMQPError) in try await publisher.outcome(outcome) }
        logger.info("step finished", metadata: ["status": "\(outcome.status.rawValue)", "published": "\(delivered)", "error": "\(outcome.error ?? "")"])
        await finished(ref)
    }

    private func finished(_ ref: AttemptRef) async {
        running[ref] = nil
        stepTasks[ref] = nil
        await jobs?.release()
    }

    /// Takes no jobs while draining, while the engine is down or while disk space is low.
    private func updatePause() async {
        await jobs?.setPaused(draining || !engineHealthy || diskLow)
    }

    /// Pauses taking jobs while the work directory or the engine's root directory has less
    /// free space than `minimumFreeDisk`, and resumes once both have it again.
    private func checkDisk() async {
        try? FileManager.default.createDirectory(atPath: configuration.workDirectory, withIntermediateDirectories: true)
        let engineRoot = engineHealthy ? (try? await engine.info())?["DockerRootDir"]?.stringValue : nil
        let report = DiskSpace.check(
            [configuration.workDirectory] + (engineRoot.map { [$0] } ?? []), minimum: configuration.minimumFreeDisk, freeBytes: DiskSpace.freeBytes)
        guard report.low != diskLow else { return }
        diskLow = report.low
        if report.low {
            logger.error("disk space is low: not taking jobs until it returns (--min-free-disk)", metadata: ["disk": "\(report.summary)"])
        } else {
            logger.info("disk space is back: taking jobs", metadata: ["disk": "\(report.summary)"])
        }
        await updatePause()
    }

    // MARK: Heartbeats, control, engine health

    private func heartbeats() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.heartbeatInterval)
            for ref in running.keys {
                try? await publisher.event(.heartbeat, ref)
            }
        }
    }

    private func control(_ delivery: AMQPDelivery) async {
        defer { Task { try? await delivery.ack() } }
        guard delivery.properties.userId == dispatcherUser else {
            logger.warning("ignoring a control message not published by the dispatcher's broker account \(dispatcherUser)", metadata: ["published_by": "\(delivery.properties.userId ?? "no user_id")"])
            return
        }
        guard let message = try? WireCodec.decode(ControlMessage.self, from: delivery.body) else {
            logger.warning("ignoring a control message that does not decode")
            return
        }
        switch message.kind {
        case .cancel:
            // A cancel may name one worker (the later of two that claimed the same attempt).
            guard message.worker == nil || message.worker == configuration.name else { return }
            guard let ref = message.ref, let cancellation = running[ref] else { return }
            logger.info("cancelling", metadata: ["step": "\(ref.stepId)", "attempt": "\(ref.attempt)"])
            cancellation.cancel()
        case .drain:
            guard message.worker == nil || message.worker == configuration.name else { return }
            logger.info("draining: taking no more jobs")
            draining = true
            await updatePause()
        }
    }

    /// Pings the engine every 2 s; two failures in a row stop claiming, one answer resumes.
    private func watchEngine() async {
        var failures = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(2))
            let answered = await engine.ping()
            if Task.isCancelled { return }
            failures = answered ? 0 : failures + 1
            let healthy = answered || (engineHealthy && failures < 2)
            guard healthy != engineHealthy else { continue }
            engineHealthy = healthy
            if healthy {
                logger.info("the Docker engine answers again: taking jobs")
            } else {
                logger.error("the Docker engine at \(engine.socketPath) does not answer: not taking jobs until it does")
            }
            await updatePause()
        }
    }

    /// Keeps the engine's step images within `configuration.imageCache`, now and then.
    private func pruneImages() async {
        let policy = configuration.imageCache
        guard policy.keep > 0 else { return }
        let cache = StepImageCache(engine: engine, repository: configuration.imageRepository)
        // Not at start: workers started together (a fleet restart, a crash loop) would all
        // list, inspect and remove at once, and slow the engine for the steps.
        try? await Task.sleep(for: policy.interval * Double.random(in: 0.5...1))
        while !Task.isCancelled {
            if engineHealthy {
                do {
                    let report = try await cache.prune(policy)
                    if !report.removed.isEmpty || report.spared > 0 {
                        logger.info(
                            "step images pruned", metadata: ["removed": "\(report.removed.count)", "kept": "\(report.kept)", "spared": "\(report.spared)"])
                    }
                } catch {
                    logger.warning("cannot prune step images: \(error)")
                }
            }
            try? await Task.sleep(for: policy.interval)
        }
    }

    /// Removes step containers that workers on this host left behind when they died.
    private func reapLeftoverContainers() async {
        if let oci = executor.runtime as? OCIContainerRuntime { await oci.reapLeftovers(logger: logger, isLiveWorker: Self.isStepFleetProcess) }
        guard let ids = try? await engine.containers(label: "\(ContainerLabels.host)=\(ProcessInfo.processInfo.hostName)") else { return }
        for id in ids {
            guard let labels = try? await containerLabels(id), let pid = labels[ContainerLabels.pid].flatMap(Int32.init) else { continue }
            if pid == getpid() || Self.isStepFleetProcess(pid) { continue }
            logger.warning("removing a step container left by a dead worker", metadata: ["container": "\(id.prefix(12))", "worker": "\(labels[ContainerLabels.worker] ?? "?")"])
            try? await engine.remove(id)
        }
    }

    private func containerLabels(_ id: String) async throws -> [String: String] {
        try await engine.containerLabels(id)
    }

    private static func isStepFleetProcess(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return cmdline.contains("stepfleet") || cmdline.contains("xctest") || cmdline.contains("WorkerTests")
    }

    // MARK: Shutdown

    /// Stops taking jobs, lets running steps finish within the grace period, then kills them
    /// (their outcomes say so), waits a bounded time for them to end, and closes the broker
    /// connection. Returns once stopped; a second call waits for the first.
    public func shutdown() async {
        switch stop {
        case .stopped: return
        case .stopping: return await untilStopped()
        case .serving: stop = .stopping
        }
        logger.info("shutting down: taking no more jobs", metadata: ["running": "\(running.count)", "grace": "\(configuration.shutdownGrace)"])
        draining = true
        await jobs?.cancel()
        if await !untilNoStepRuns(within: configuration.shutdownGrace) {
            logger.warning("grace period over: killing \(running.count) running step(s)")
            let why = "the worker shut down and its grace period of \(configuration.shutdownGrace) ran out; the step was killed"
            for cancellation in running.values { cancellation.cancel(.killed(why)) }
            if await !untilNoStepRuns(within: Self.killedStepsWait) {
                logger.error(
                    "\(running.count) killed step(s) did not end within \(Self.killedStepsWait): stopping without their outcomes (the dispatcher's leases bring them home)",
                    metadata: ["steps": "\(running.keys.map { "\($0.stepId)/\($0.attempt)" }.sorted().joined(separator: ","))"])
            }
        }
        for task in tasks { task.cancel() }
        if let oci = executor.runtime as? OCIContainerRuntime { await oci.waitForCleanUps() }
        await client.stop()
        logger.info("worker stopped")
        stop = .stopped
        for waiter in stopWaiters { waiter.resume() }
        stopWaiters = []
    }

    /// Whether every running step ended (and published its outcome) within `limit`.
    private func untilNoStepRuns(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !running.isEmpty, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        return running.isEmpty
    }
}
