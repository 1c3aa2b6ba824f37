import Foundation
import Protocol
import StepRunner

/// The container that serves one image build its secrets: started from the runner image with
/// no network (only its own `lo`), the secrets copied in as a 0400 file, `opschain-exec
/// --serve-build-secrets` listening on that loopback. The build runs with
/// `networkmode=container:<id>`, so its `RUN` steps share this namespace and nothing of the
/// host's. Removed when the build ends; a worker that dies leaves it labelled like a step
/// container, and the next worker on the host removes it.
struct BuildSecretsSidecar: Sendable {
    static let roleLabel = "org.stepfleet.role"
    static let role = "build-secrets"
    /// Where the secrets file goes in the container (its folder is made by the copy).
    static let folder = "/.stepfleet-build-secrets"
    static let user = 65534

    let id: String
    let url: String

    /// The engine's `networkmode` for a build that uses this container.
    var networkMode: String { "container:\(id)" }

    /// Starts the container and returns once its server listens.
    static func start(
        engine: DockerEngine, image: String, token: String, variables: [String: String], labels: [String: String]
    ) async throws(StepFailure) -> BuildSecretsSidecar {
        let hostConfig: JSON = [
            "NetworkMode": "none",
            "Memory": JSON(64 << 20),
            "MemorySwap": JSON(64 << 20),
            "PidsLimit": 16,
            "SecurityOpt": ["no-new-privileges"],
            "CapDrop": ["ALL"],
            "Privileged": false,
            "Binds": [],
            "LogConfig": ["Type": "json-file", "Config": ["max-size": "1m"]],
        ]
        let body: JSON = [
            "Image": .string(image),
            "Entrypoint": ["opschain-exec"],
            "Cmd": [.string(BuildSecretsServer.flag), .string(folder + "/secrets")],
            "User": .string("\(user):\(user)"),
            "WorkingDir": "/",
            "Labels": .object(labels.merging([roleLabel: role]) { $1 }.mapValues { .string($0) }),
            "HostConfig": hostConfig,
        ]
        let id: String
        do {
            id = try await engine.createContainer(body)
        } catch {
            throw StepFailure("cannot create the build-secret container from \(image): \(error)")
        }
        let sidecar = BuildSecretsSidecar(id: id, url: BuildSecretsServer.url(token: token))
        do {
            let answer = Data(JSON.object(variables.mapValues { .string($0) }).serialized().utf8)
            let archive = Tar.archive([
                .directory(String(folder.dropFirst()), mode: 0o700, uid: user, gid: user),
                .file(String(folder.dropFirst()) + "/secrets", BuildSecretsServer.file(token: token, answer: answer), mode: 0o400, uid: user, gid: user),
            ])
            try await engine.putArchive(id, path: "/", archive: archive)
            try await engine.start(id)
            try await sidecar.waitUntilServing(engine)
        } catch {
            await sidecar.remove(engine)
            throw StepFailure("the build-secret container did not start: \(error)")
        }
        return sidecar
    }

    /// Polls the container's output for the server's ready line, for at most 10 s.
    private func waitUntilServing(_ engine: DockerEngine) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let output = try await engine.output(id)
            if output.contains(BuildSecretsServer.readyLine) { return }
            if try await engine.inspectContainer(id)["State"]?["Running"]?.boolValue != true {
                throw StepFailure("it stopped: \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw StepFailure("its server did not listen within 10 s")
    }

    /// Kills what still runs in its network namespace (a build's `RUN` container the engine
    /// left behind) and removes it, even when the calling task is cancelled.
    func remove(_ engine: DockerEngine) async {
        let id = id
        await Task {
            for joined in (try? await engine.containers(networkMode: "container:\(id)")) ?? [] {
                try? await engine.remove(joined)
            }
            try? await engine.remove(id)
        }.value
    }
}
