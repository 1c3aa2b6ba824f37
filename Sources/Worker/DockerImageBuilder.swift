import Crypto
import Foundation
import HostCommand
import Protocol
import StepRunner

/// Builds step images with the Docker engine's legacy builder.
///
/// The build key hashes the Dockerfile, `step_context_env.json`, the build args (the SHA among
/// them), the refs repo.tar holds (a new tag at the same SHA is a new image) and the image ids
/// of every `FROM` image, so a moved base tag never reuses a stale image; a `FROM` image the
/// engine lacks fails the step before any build. An image labelled with the key is reused without building or uploading the context;
/// identical builds running at once are done once; at most `maximumConcurrentBuilds` run. A
/// reused image is tagged again, which records its use for `StepImageCache`.
///
/// A build never shares the host's network: it runs with `networkmode=none`, or, when it has
/// secrets, in the network namespace of its own `BuildSecretsSidecar`. Each step waits for its
/// image for at most its timeout and can be cancelled; a build nobody waits for any more is
/// stopped (the engine stops a legacy build whose request is closed).
public actor DockerImageBuilder: ImageBuilder {
    public static let keyLabel = "org.stepfleet.build-key"
    public static let defaultRepository = "stepfleet/step"
    /// The owner (uid and gid) of every file of repo.tar: the runner image's user `opschain`,
    /// so the step can write its repository copy. A root image can write it anyway.
    public static let repositoryOwner = 1000

    private let engine: DockerEngine
    /// Where step images are tagged (`repository:<build key>`).
    public let repository: String
    private let scratch: String
    private let slots: AsyncSemaphore
    /// The longest a build may take whoever waits for it (the worker's `--build-timeout`).
    private let maximumBuildTime: Duration
    /// Builds in progress by key, with the steps waiting for each.
    private var flights: [String: Flight] = [:]
    /// When this builder last tagged each reused image: its use is recorded again only after
    /// `retagInterval` (a step image cache's idle time is minutes; a step is milliseconds).
    private var tagged: [String: ContinuousClock.Instant] = [:]
    static let retagInterval = Duration.seconds(30)

    private struct Flight {
        let id: UUID
        let task: Task<Void, Never>
        var waiters: [UUID: CheckedContinuation<Result<BuiltImage, StepFailure>, Never>] = [:]
    }

    public init(
        engine: DockerEngine, scratchDirectory: String, maximumConcurrentBuilds: Int = 2, repository: String = DockerImageBuilder.defaultRepository,
        maximumBuildTime: Duration = .seconds(1800)
    ) {
        self.engine = engine
        self.repository = repository
        scratch = scratchDirectory
        slots = AsyncSemaphore(maximumConcurrentBuilds)
        self.maximumBuildTime = maximumBuildTime
    }

    public func image(for request: BuildRequest, log: @escaping @Sendable (String) -> Void) async throws(StepFailure) -> BuiltImage {
        let contextEnv = Self.encode(request.contextEnv)
        let key = try await buildKey(request, contextEnv: contextEnv)
        let tag = "\(repository):\(key.prefix(32))"
        if let existing = try await existing(key: key, tag: tag) { return existing }
        if flights[key] != nil {
            log("build: an identical build is running; waiting for it")
        } else {
            let id = UUID()
            let task = Task { [engine, scratch, slots, maximumBuildTime] in
                let started = ContinuousClock.now
                let result = await Self.build(
                    request, key: key, tag: tag, contextEnv: contextEnv, engine: engine, scratch: scratch, slots: slots, maximumBuildTime: maximumBuildTime,
                    log: log)
                WorkerMetrics.imageBuild(succeeded: (try? result.get()) != nil, took: ContinuousClock.now - started)
                await self.land(key, flight: id, result)
            }
            flights[key] = Flight(id: id, task: task)
        }
        return try await wait(for: key, timeout: request.timeout).get()
    }

    public func existingImage(for request: BuildRequest) async throws(StepFailure) -> BuiltImage? {
        let key = try await buildKey(request, contextEnv: Self.encode(request.contextEnv))
        return try await existing(key: key, tag: "\(repository):\(key.prefix(32))")
    }

    /// The image labelled with `key`, tagged again (its use recorded for `StepImageCache`)
    /// unless this builder did so within `retagInterval`.
    private func existing(key: String, tag: String) async throws(StepFailure) -> BuiltImage? {
        do {
            guard let existing = try await engine.inspectImage(tag), existing["Config"]?["Labels"]?[Self.keyLabel]?.stringValue == key else { return nil }
            let now = ContinuousClock.now
            if tagged[tag].map({ now - $0 >= Self.retagInterval }) ?? true {
                try await engine.tagImage(tag, repository: repository, tag: String(key.prefix(32)))
                if tagged.count >= 1_000 { tagged = tagged.filter { now - $0.value < Self.retagInterval } }
                tagged[tag] = now
            }
            return BuiltImage(reference: tag, key: key, reused: true, user: Self.user(of: existing))
        } catch {
            throw StepFailure("build: \(error)")
        }
    }

    /// Waits for the build of `key` until it lands, the timeout passes or the task is cancelled.
    private func wait(for key: String, timeout: Duration) async -> Result<BuiltImage, StepFailure> {
        let waiter = UUID()
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled {
                let seconds = timeout.components.seconds
                await self.leave(key, waiter, StepFailure("the step image build passed its timeout of \(seconds) s and was stopped"))
            }
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                guard flights[key] != nil else {
                    continuation.resume(returning: .failure(StepFailure("the step image build ended before this step could wait for it")))
                    return
                }
                flights[key]!.waiters[waiter] = continuation
            }
        } onCancel: {
            Task { await self.leave(key, waiter, StepFailure("cancelled during the image build")) }
        }
    }

    /// A waiter gives up. The last one to leave stops the build, and hears back once it has
    /// stopped (its `RUN` container gone).
    private func leave(_ key: String, _ waiter: UUID, _ failure: StepFailure) {
        guard var flight = flights[key], let continuation = flight.waiters.removeValue(forKey: waiter) else { return }
        guard flight.waiters.isEmpty else {
            flights[key] = flight
            continuation.resume(returning: .failure(failure))
            return
        }
        flights[key] = nil
        flight.task.cancel()
        Task {
            await flight.task.value
            continuation.resume(returning: .failure(failure))
        }
    }

    /// The build ended: every step still waiting gets its result.
    private func land(_ key: String, flight id: UUID, _ result: Result<BuiltImage, StepFailure>) {
        guard let flight = flights[key], flight.id == id else { return }
        flights[key] = nil
        for continuation in flight.waiters.values { continuation.resume(returning: result) }
    }

    /// One build: a slot, the context, the secrets container when there are secrets, the
    /// engine's build, and the built image's description.
    private static func build(
        _ request: BuildRequest, key: String, tag: String, contextEnv: Data, engine: DockerEngine, scratch: String, slots: AsyncSemaphore,
        maximumBuildTime: Duration, log: @escaping @Sendable (String) -> Void
    ) async -> Result<BuiltImage, StepFailure> {
        await slots.wait()
        defer { Task { await slots.signal() } }
        guard !Task.isCancelled else { return .failure(StepFailure("cancelled during the image build")) }
        do {
            let context = try await Self.context(request, contextEnv: contextEnv, scratch: scratch)
            var buildArgs = request.buildArgs
            var sidecar: BuildSecretsSidecar?
            if let secrets = request.secrets {
                sidecar = try await BuildSecretsSidecar.start(
                    engine: engine, image: request.runnerImage, token: secrets.token, variables: secrets.variables, labels: request.labels)
            }
            buildArgs[BuildSecretsClient.variable] = sidecar?.url ?? ""
            do {
                var attempt = 1
                // The host's step image prunes wait while the engine builds (`StepImageLock`).
                let lock = StepImageLock(engineSocket: engine.socketPath)
                while true {
                    do {
                        try await lock.shared {
                            try await engine.build(
                                context: context, tag: tag, buildArgs: buildArgs,
                                labels: [Self.keyLabel: key, "org.stepfleet.git-sha": request.buildArgs["GIT_SHA"] ?? ""],
                                networkMode: sidecar?.networkMode ?? "none", timeout: .seconds(maximumBuildTime.components.seconds + 60),
                                output: { log("build: \($0)") })
                        }
                        break
                    } catch let error as BuildFailure where VanishedCacheImage.matches(error.message) && attempt < VanishedCacheImage.attempts && !Task.isCancelled {
                        // Another worker's prune (or an operator's `docker rmi`) took a cached
                        // layer this build was about to use: the next attempt builds it again.
                        attempt += 1
                        log("build: a cached layer was removed from the engine during this build (an image prune on this host); building again, attempt \(attempt) of \(VanishedCacheImage.attempts)")
                    }
                }
            } catch {
                await sidecar?.remove(engine)
                throw error
            }
            await sidecar?.remove(engine)
            guard let built = try await engine.inspectImage(tag) else { throw StepFailure("the engine has no image \(tag) after building it") }
            return .success(BuiltImage(reference: tag, key: key, reused: false, user: Self.user(of: built)))
        } catch let failure as BuildFailure {
            return .failure(StepFailure("the step image did not build: \(failure)"))
        } catch let failure as StepFailure {
            return .failure(failure)
        } catch {
            return .failure(StepFailure("the step image did not build: \(error)"))
        }
    }

    /// The `USER` of an inspected image (empty when it sets none: root).
    private static func user(of image: JSON) -> String {
        image["Config"]?["User"]?.stringValue ?? ""
    }

    private static func encode(_ contextEnv: StepContextEnv) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return (try? encoder.encode(contextEnv)) ?? Data("{}".utf8)
    }

    /// The build key: SHA-256 over every input of the image.
    func buildKey(_ request: BuildRequest, contextEnv: Data) async throws(StepFailure) -> String {
        var hasher = SHA256()
        func add(_ label: String, _ data: Data) {
            hasher.update(data: Data("\(label):\(data.count):".utf8))
            hasher.update(data: data)
        }
        add("format", Data("stepfleet-build-key-4".utf8))
        add("dockerfile", Data(request.dockerfile.utf8))
        add("repo.tar refs", Data(request.repositoryRefs.utf8))
        add("step_context_env.json", contextEnv)
        for name in request.buildArgs.keys.sorted() where name != BuildSecretsClient.variable {
            add("arg \(name)", Data(request.buildArgs[name]!.utf8))
        }
        if let secrets = request.secretsCacheKey { add("build secrets", Data(secrets.utf8)) }
        for image in Self.baseImages(of: request.dockerfile, buildArgs: request.buildArgs) {
            let id: String?
            do {
                id = try await engine.imageID(image)
            } catch {
                throw StepFailure("build: \(error)")
            }
            // The legacy builder would try to pull it and fail on the registry's name or
            // network: say what is wrong before any build.
            guard let id else { throw StepFailure(Self.missingImage(image)) }
            add("from \(image)", Data(id.utf8))
        }
        return hasher.finalize().hexString
    }

    /// The one sentence for a `FROM` image the engine does not have.
    static func missingImage(_ image: String) -> String {
        let name = image.split(separator: "/").last.map(String.init) ?? image
        let reference = name.contains(":") || name.contains("@") ? image : image + ":latest"
        return "image \(reference) is not on this worker's Docker engine; StepFleet never pulls images: build or load it there"
    }

    /// The images named by `FROM` lines, build args substituted; earlier stages and `scratch`
    /// are not images.
    static func baseImages(of dockerfile: String, buildArgs: [String: String]) -> [String] {
        var stages: Set<String> = ["scratch"]
        var images: [String] = []
        for line in dockerfile.split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.first?.uppercased() == "FROM" else { continue }
            let operands = Array(words.dropFirst().filter { !$0.hasPrefix("--") })
            guard var image = operands.first else { continue }
            for (name, value) in buildArgs {
                image = image.replacingOccurrences(of: "${\(name)}", with: value).replacingOccurrences(of: "$\(name)", with: value)
            }
            if !stages.contains(image.lowercased()) { images.append(image) }
            if operands.count >= 3, operands[1].uppercased() == "AS" { stages.insert(operands[2].lowercased()) }
        }
        return images
    }

    /// The build context: Dockerfile, repo.tar (the checkout, `.git` included) and
    /// step_context_env.json.
    static func context(_ request: BuildRequest, contextEnv: Data, scratch: String) async throws -> Data {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let repoTar = (scratch as NSString).appendingPathComponent("repo-\(UUID().uuidString).tar")
        defer { try? FileManager.default.removeItem(atPath: repoTar) }
        let tar = try await CommandRunner.run(
            "/bin/tar", ["--sort=name", "--mtime=@0", "--owner=\(Self.repositoryOwner)", "--group=\(Self.repositoryOwner)", "--numeric-owner", "-cf", repoTar, "-C", request.checkout, "."])
        guard tar.status == 0 else { throw StepFailure("cannot make repo.tar: \(tar.output)") }
        return Tar.archive([
            .file("Dockerfile", Data(request.dockerfile.utf8)),
            .file("repo.tar", try Data(contentsOf: URL(fileURLWithPath: repoTar))),
            .file("step_context_env.json", contextEnv),
        ])
    }
}

/// A counting semaphore for async code.
actor AsyncSemaphore {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) {
        available = max(count, 1)
    }

    func wait() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func signal() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}
