import Crypto
import Foundation
import HostCommand
import Protocol

/// Builds step images with the Docker engine's legacy builder.
///
/// The build key hashes the Dockerfile, `step_context_env.json`, the build args (the SHA among
/// them) and the image ids of every `FROM` image, so a moved base tag never reuses a stale
/// image. An image labelled with the key is reused without building or uploading the context;
/// identical builds running at once are done once; at most `maximumConcurrentBuilds` run. A
/// reused image is tagged again, which records its use for `StepImageCache`.
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
    private var inFlight: [String: Task<BuiltImage, any Error>] = [:]

    public init(engine: DockerEngine, scratchDirectory: String, maximumConcurrentBuilds: Int = 2, repository: String = DockerImageBuilder.defaultRepository) {
        self.engine = engine
        self.repository = repository
        scratch = scratchDirectory
        slots = AsyncSemaphore(maximumConcurrentBuilds)
    }

    public func image(for request: BuildRequest, log: @escaping @Sendable (String) -> Void) async throws(StepFailure) -> BuiltImage {
        let contextEnv = Self.encode(request.contextEnv)
        let key = try await buildKey(request, contextEnv: contextEnv)
        let tag = "\(repository):\(key.prefix(32))"
        do {
            if let existing = try await engine.inspectImage(tag), existing["Config"]?["Labels"]?[Self.keyLabel]?.stringValue == key {
                try await engine.tagImage(tag, repository: repository, tag: String(key.prefix(32)))
                return BuiltImage(reference: tag, key: key, reused: true, user: Self.user(of: existing))
            }
        } catch {
            throw StepFailure("build: \(error)")
        }
        if let running = inFlight[key] {
            log("build: an identical build is running; waiting for it")
            return try await Self.value(of: running)
        }
        let task = Task { [engine, scratch, slots] () throws -> BuiltImage in
            await slots.wait()
            defer { Task { await slots.signal() } }
            let context = try await Self.context(request, contextEnv: contextEnv, scratch: scratch)
            try await engine.build(
                context: context, tag: tag, buildArgs: request.buildArgs,
                labels: [Self.keyLabel: key, "org.stepfleet.git-sha": request.buildArgs["GIT_SHA"] ?? ""],
                output: { log("build: \($0)") })
            guard let built = try await engine.inspectImage(tag) else { throw StepFailure("the engine has no image \(tag) after building it") }
            return BuiltImage(reference: tag, key: key, reused: false, user: Self.user(of: built))
        }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        return try await Self.value(of: task)
    }

    /// The `USER` of an inspected image (empty when it sets none: root).
    private static func user(of image: JSON) -> String {
        image["Config"]?["User"]?.stringValue ?? ""
    }

    private static func value(of task: Task<BuiltImage, any Error>) async throws(StepFailure) -> BuiltImage {
        do {
            return try await task.value
        } catch let failure as BuildFailure {
            throw StepFailure("the step image did not build: \(failure)")
        } catch let failure as StepFailure {
            throw failure
        } catch {
            throw StepFailure("the step image did not build: \(error)")
        }
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
        add("format", Data("stepfleet-build-key-2".utf8))
        add("dockerfile", Data(request.dockerfile.utf8))
        add("step_context_env.json", contextEnv)
        for name in request.buildArgs.keys.sorted() where name != SecretServer.urlArgument {
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
            add("from \(image)", Data((id ?? "missing").utf8))
        }
        return hasher.finalize().hexString
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
