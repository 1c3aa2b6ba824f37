import AMQP
import Foundation
import Hummingbird
import Logging
import NIOCore
import Protocol

/// Hands build secrets to `opschain-exec` inside an image build, over loopback only.
///
/// The legacy Docker builder has no secret mounts, and anything passed as a build arg, an ENV
/// or a context file can end up in a layer, the history or the build cache. So the build gets
/// only a URL (`OPSCHAIN_BUILD_SECRETS_URL`, a build arg) whose last part is the HMAC token of
/// the secret values; `opschain-exec` fetches the values from this server while its `RUN` runs,
/// and they live only in that command's environment. A token is served only while a build that
/// uses it is in progress. The build runs with the host's network so that it can reach
/// 127.0.0.1.
public final class SecretServer: Sendable {
    /// The build arg that carries the URL (declared by the default Dockerfile).
    public static let urlArgument = "OPSCHAIN_BUILD_SECRETS_URL"
    private let registered = LockedValue<[String: (variables: [String: String], users: Int)]>([:])
    private let boundPort = LockedValue<Int?>(nil)
    private let task = LockedValue<Task<Void, Never>?>(nil)
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Starts listening on 127.0.0.1 (an ephemeral port) and returns once it listens.
    public func start() async throws {
        let router = Router()
        router.get("/secrets/:token") { [registered] _, context -> Response in
            let token = try context.parameters.require("token")
            guard let variables = registered.value[token]?.variables else {
                return Response(status: .notFound, body: .init(byteBuffer: ByteBuffer(string: #"{"error": "no build in progress with this token"}"#)))
            }
            let body = JSON.object(variables.mapValues { .string($0) }).serialized()
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        let port = boundPort
        let (ready, signal) = AsyncStream<Void>.makeStream()
        var quiet = logger
        quiet.logLevel = .critical  // its shutdown logs a CancellationError as an error
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "stepfleet-secrets"),
            onServerRunning: { channel in
                port.value = channel.localAddress?.port
                signal.finish()
            },
            logger: quiet)
        let logger = logger
        task.value = Task {
            do {
                try await app.run()
            } catch {
                logger.error("the build-secret server stopped", metadata: ["error": "\(error)"])
            }
            signal.finish()
        }
        for await _ in ready {}
        guard boundPort.value != nil else { throw StepFailure("the build-secret server could not listen on 127.0.0.1") }
    }

    public func stop() {
        task.value?.cancel()
    }

    /// The URL a build uses for `variables`, served until `unregister(token)`.
    func register(_ variables: [String: String], token: String) throws(StepFailure) -> String {
        guard let port = boundPort.value else { throw StepFailure("the build-secret server is not running") }
        registered.withLock { entries in
            entries[token] = (variables, (entries[token]?.users ?? 0) + 1)
        }
        return "http://127.0.0.1:\(port)/secrets/\(token)"
    }

    func unregister(_ token: String) {
        registered.withLock { entries in
            guard let entry = entries[token] else { return }
            entries[token] = entry.users > 1 ? (entry.variables, entry.users - 1) : nil
        }
    }
}
