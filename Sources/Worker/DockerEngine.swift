import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Protocol

/// The Docker Engine API over its unix socket (HTTP/1.1 through async-http-client).
/// Only what StepFleet needs: ping, image inspect and build, and the container life cycle.
public final class DockerEngine: Sendable {
    public let socketPath: String
    private let apiVersion: String
    private let client: HTTPClient

    /// - Parameter endpoint: `unix:///var/run/docker.sock` or a plain socket path.
    public init(endpoint: String = "unix:///var/run/docker.sock", apiVersion: String = "v1.41") throws(DockerError) {
        var path = endpoint
        if path.hasPrefix("unix://") { path.removeFirst("unix://".count) }
        guard path.hasPrefix("/") else {
            throw DockerError(operation: "configure", status: nil, message: "the Docker endpoint must be unix:///path/to/docker.sock, not \(endpoint)")
        }
        socketPath = path
        self.apiVersion = apiVersion
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .seconds(5))))
    }

    deinit {
        try? client.syncShutdown()
    }

    // MARK: Requests

    private func url(_ path: String, _ query: [(String, String)] = []) -> String {
        var components = URLComponents()
        components.path = "/\(apiVersion)\(path)"
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        // URLComponents leaves '+' and some JSON characters alone; the engine wants them encoded.
        let uri = (components.percentEncodedPath) + (components.percentEncodedQuery.map { "?" + $0.replacingOccurrences(of: "+", with: "%2B") } ?? "")
        return URL(httpURLWithSocketPath: socketPath, uri: uri)!.absoluteString
    }

    func request(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: Data? = nil,
        contentType: String = "application/json", timeout: TimeAmount = .seconds(60)
    ) async throws(DockerError) -> HTTPClientResponse {
        var request = HTTPClientRequest(url: url(path, query))
        request.method = method
        // HTTP/1.1 requires a Host header; over a unix socket there is no host to name.
        request.headers.add(name: "Host", value: "docker")
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            return try await client.execute(request, timeout: timeout)
        } catch {
            throw DockerError(operation: "\(method) \(path)", status: nil, message: "the Docker engine at \(socketPath) did not answer: \(error)")
        }
    }

    private func collect(_ response: HTTPClientResponse, _ operation: String, limit: Int = 64 << 20) async throws(DockerError) -> Data {
        do {
            let buffer = try await response.body.collect(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch {
            throw DockerError(operation: operation, status: Int(response.status.code), message: "reading the answer failed: \(error)")
        }
    }

    /// Fails unless the status is 2xx (or one of `alsoOK`), with the engine's message.
    func expect(_ response: HTTPClientResponse, _ operation: String, alsoOK: Set<UInt> = []) async throws(DockerError) {
        let code = response.status.code
        guard !(200..<300).contains(code), !alsoOK.contains(code) else { return }
        let body = try await collect(response, operation)
        let message = (try? JSON.parse(bytes: body))?["message"]?.stringValue ?? String(decoding: body, as: UTF8.self)
        throw DockerError(operation: operation, status: Int(code), message: message)
    }

    private func json(_ value: JSON) -> Data { Data(value.serialized().utf8) }

    /// The answer's body as JSON, or an error saying the engine answered something else.
    private func jsonAnswer(_ response: HTTPClientResponse, _ operation: String) async throws(DockerError) -> JSON {
        let data = try await collect(response, operation)
        do {
            return try JSON.parse(bytes: data)
        } catch {
            throw DockerError(operation: operation, status: nil, message: "the engine's answer is not JSON: \(error)")
        }
    }

    // MARK: Engine

    /// True when the engine answers.
    public func ping() async -> Bool {
        // No socket, no engine: the HTTP client would retry the connection until the timeout.
        guard FileManager.default.fileExists(atPath: socketPath) else { return false }
        guard let response = try? await request(.GET, "/_ping", timeout: .seconds(5)) else { return false }
        return response.status == .ok
    }

    // MARK: Images

    /// The engine's description of an image (`GET /images/{name}/json`), or nil when it has none.
    public func inspectImage(_ reference: String) async throws(DockerError) -> JSON? {
        let operation = "inspect image \(reference)"
        let response = try await request(.GET, "/images/\(reference)/json")
        if response.status == .notFound { return nil }
        try await expect(response, operation)
        return try await jsonAnswer(response, operation)
    }

    /// The image's id, or nil when the engine has no such image.
    public func imageID(_ reference: String) async throws(DockerError) -> String? {
        try await inspectImage(reference)?["Id"]?.stringValue
    }

    /// Builds an image from a tar build context with the legacy builder. Every output line is
    /// handed to `output`; a failed build throws with the engine's error and `tail` holds the
    /// last lines of the build log. `networkMode` is the network of the build's `RUN` steps:
    /// `none`, or `container:<id>` to share that container's namespace — never the host's.
    /// Cancelling the calling task closes the request, and the engine then stops the build and
    /// removes its `RUN` container.
    public func build(
        context: Data, tag: String, buildArgs: [String: String], labels: [String: String], networkMode: String = "none",
        timeout: TimeAmount = .minutes(30), output: @Sendable (String) -> Void
    ) async throws(BuildFailure) {
        let query: [(String, String)] = [
            ("t", tag), ("rm", "1"), ("forcerm", "1"),
            ("buildargs", JSON.object(buildArgs.mapValues { .string($0) }).serialized()),
            ("labels", JSON.object(labels.mapValues { .string($0) }).serialized()),
            ("networkmode", networkMode),
        ]
        var tail: [String] = []
        func record(_ line: String) {
            output(line)
            tail.append(line)
            if tail.count > 30 { tail.removeFirst() }
        }
        let response: HTTPClientResponse
        do {
            response = try await request(.POST, "/build", query: query, body: context, contentType: "application/x-tar", timeout: timeout)
            try await expect(response, "build \(tag)")
        } catch {
            throw BuildFailure(message: error.description, tail: tail)
        }
        var pending = Data()
        var failure: String?
        do {
            for try await chunk in response.body {
                pending.append(contentsOf: chunk.readableBytesView)
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = pending[pending.startIndex..<newline]
                    pending = Data(pending[(newline + 1)...])
                    guard let event = try? JSON.parse(bytes: line) else { continue }
                    if let text = event["stream"]?.stringValue {
                        for part in text.split(separator: "\n", omittingEmptySubsequences: true) { record(String(part)) }
                    } else if let error = event["error"]?.stringValue {
                        failure = error
                        record(error)
                    }
                }
            }
        } catch {
            throw BuildFailure(message: "the build output stream broke: \(error)", tail: tail)
        }
        if let failure { throw BuildFailure(message: failure, tail: tail) }
    }

    /// Ids of the images that carry `label` (`key=value`).
    public func images(label: String) async throws(DockerError) -> [String] {
        let operation = "list images"
        let filters = JSON.object(["label": .array([.string(label)])]).serialized()
        let response = try await request(.GET, "/images/json", query: [("filters", filters)])
        try await expect(response, operation)
        return ((try? JSON.parse(bytes: await collect(response, operation)))?.arrayValue ?? []).compactMap { $0["Id"]?.stringValue }
    }

    /// Removes an image (gone already is fine). Without `force` the engine refuses (409) an
    /// image a container uses.
    public func removeImage(_ reference: String, force: Bool = true) async throws(DockerError) {
        let response = try await request(.DELETE, "/images/\(reference)", query: force ? [("force", "1")] : [])
        try await expect(response, "remove image \(reference)", alsoOK: [404])
    }

    /// Tags `reference` as `repository:tag`. Tagging again moves the image's `LastTagTime`:
    /// the step image cache uses it as "last used", shared by every worker on the engine.
    public func tagImage(_ reference: String, repository: String, tag: String) async throws(DockerError) {
        let response = try await request(.POST, "/images/\(reference)/tag", query: [("repo", repository), ("tag", tag)])
        try await expect(response, "tag image \(reference)")
    }

    /// The tags of the images of `repository` (`repository:tag` each).
    public func imageTags(repository: String) async throws(DockerError) -> [String] {
        let operation = "list images"
        let filters = JSON.object(["reference": .array([.string(repository)])]).serialized()
        let response = try await request(.GET, "/images/json", query: [("filters", filters)])
        try await expect(response, operation)
        let images = (try? JSON.parse(bytes: await collect(response, operation)))?.arrayValue ?? []
        return images.flatMap { ($0["RepoTags"]?.arrayValue ?? []).compactMap(\.stringValue) }.filter { $0.hasPrefix(repository + ":") }
    }

    // MARK: Containers

    /// Creates a container from a Docker Engine create body; returns its id.
    public func createContainer(_ body: JSON, name: String? = nil) async throws(DockerError) -> String {
        let operation = "create container"
        let response = try await request(.POST, "/containers/create", query: name.map { [("name", $0)] } ?? [], body: json(body))
        try await expect(response, operation)
        guard let id = (try? JSON.parse(bytes: await collect(response, operation)))?["Id"]?.stringValue else {
            throw DockerError(operation: operation, status: nil, message: "the engine returned no container id")
        }
        return id
    }

    /// Extracts a tar archive into the container at `path`.
    public func putArchive(_ container: String, path: String, archive: Data) async throws(DockerError) {
        let response = try await request(.PUT, "/containers/\(container)/archive", query: [("path", path)], body: archive, contentType: "application/x-tar")
        try await expect(response, "copy into container at \(path)")
    }

    /// A tar archive of `path` in the container, or nil when there is nothing there.
    public func getArchive(_ container: String, path: String) async throws(DockerError) -> Data? {
        let operation = "copy \(path) out of the container"
        let response = try await request(.GET, "/containers/\(container)/archive", query: [("path", path)])
        if response.status == .notFound { return nil }
        try await expect(response, operation)
        return try await collect(response, operation)
    }

    public func start(_ container: String) async throws(DockerError) {
        let response = try await request(.POST, "/containers/\(container)/start")
        try await expect(response, "start container", alsoOK: [304])
    }

    /// Waits for the container to stop; returns its exit code.
    public func wait(_ container: String) async throws(DockerError) -> Int {
        let operation = "wait for container"
        let response = try await request(.POST, "/containers/\(container)/wait", timeout: .hours(24 * 7))
        try await expect(response, operation)
        guard let code = (try? JSON.parse(bytes: await collect(response, operation)))?["StatusCode"]?.intValue else {
            throw DockerError(operation: operation, status: nil, message: "the engine returned no exit code")
        }
        return code
    }

    /// Sends SIGKILL; a container that is not running is not an error.
    public func kill(_ container: String) async throws(DockerError) {
        let response = try await request(.POST, "/containers/\(container)/kill")
        try await expect(response, "kill container", alsoOK: [404, 409])
    }

    /// Removes the container (forcibly, with its anonymous volumes); a missing one is fine.
    public func remove(_ container: String) async throws(DockerError) {
        let response = try await request(.DELETE, "/containers/\(container)", query: [("force", "1"), ("v", "1")])
        try await expect(response, "remove container", alsoOK: [404])
    }

    /// What the container has written so far to standard output and error, together.
    public func output(_ container: String) async throws(DockerError) -> String {
        let operation = "read container output"
        let response = try await request(.GET, "/containers/\(container)/logs", query: [("stdout", "1"), ("stderr", "1")], timeout: .seconds(10))
        try await expect(response, operation)
        var demultiplexer = LogDemultiplexer()
        return demultiplexer.feed(try await collect(response, operation, limit: 1 << 20)).map { String(decoding: $0.1, as: UTF8.self) }.joined()
    }

    /// Ids of containers, running or not, whose network mode is `mode` (`container:<id>`:
    /// those sharing that container's network namespace).
    public func containers(networkMode mode: String) async throws(DockerError) -> [String] {
        let operation = "list containers"
        let response = try await request(.GET, "/containers/json", query: [("all", "1")], timeout: .seconds(10))
        try await expect(response, operation)
        let list = (try? JSON.parse(bytes: await collect(response, operation)))?.arrayValue ?? []
        return list.filter { $0["HostConfig"]?["NetworkMode"]?.stringValue == mode }.compactMap { $0["Id"]?.stringValue }
    }

    /// The bytes the container has written to its own layer (`SizeRw`), nil when the engine
    /// does not say.
    public func writtenBytes(_ container: String) async throws(DockerError) -> Int? {
        let operation = "measure container"
        let response = try await request(.GET, "/containers/\(container)/json", query: [("size", "1")], timeout: .seconds(30))
        try await expect(response, operation)
        return (try? JSON.parse(bytes: await collect(response, operation)))?["SizeRw"]?.intValue
    }

    /// The engine's description of itself (`GET /info`).
    public func info() async throws(DockerError) -> JSON {
        let operation = "engine info"
        let response = try await request(.GET, "/info", timeout: .seconds(10))
        try await expect(response, operation)
        return try await jsonAnswer(response, operation)
    }

    /// The labels of a container.
    public func containerLabels(_ container: String) async throws(DockerError) -> [String: String] {
        ((try await inspectContainer(container))["Config"]?["Labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
    }

    /// The engine's description of a container (`GET /containers/{id}/json`).
    public func inspectContainer(_ container: String) async throws(DockerError) -> JSON {
        let operation = "inspect container"
        let response = try await request(.GET, "/containers/\(container)/json")
        try await expect(response, operation)
        return try await jsonAnswer(response, operation)
    }

    /// Ids of containers, running or not, that carry `label` (`key` or `key=value`).
    public func containers(label: String) async throws(DockerError) -> [String] {
        let operation = "list containers"
        let filters = JSON.object(["label": .array([.string(label)])]).serialized()
        // A short deadline: the HTTP client retries a socket that is not there until it passes.
        let response = try await request(.GET, "/containers/json", query: [("all", "1"), ("filters", filters)], timeout: .seconds(10))
        try await expect(response, operation)
        let list = (try? JSON.parse(bytes: await collect(response, operation)))?.arrayValue ?? []
        return list.compactMap { $0["Id"]?.stringValue }
    }

    /// The container's output as (stream, bytes) frames, each led by the engine's time stamp
    /// (`timestamps=1`: RFC 3339 with nanoseconds and a space). With `follow`, frames as they
    /// are written until the container exits; without, what the engine holds now, from `since`
    /// (Unix seconds with nanoseconds, inclusive) when given.
    public func logs(_ container: String, follow: Bool = true, since: String? = nil) async throws(DockerError) -> AsyncThrowingStream<(LogBatch.Stream, Data), any Error> {
        var query = [("stdout", "1"), ("stderr", "1"), ("timestamps", "1")]
        if follow { query.append(("follow", "1")) }
        if let since { query.append(("since", since)) }
        let response = try await request(.GET, "/containers/\(container)/logs", query: query, timeout: follow ? .hours(24 * 7) : .minutes(5))
        try await expect(response, follow ? "follow container logs" : "read container logs")
        return AsyncThrowingStream { continuation in
            let task = Task {
                var demultiplexer = LogDemultiplexer()
                do {
                    for try await chunk in response.body {
                        for frame in demultiplexer.feed(Data(chunk.readableBytesView)) { continuation.yield(frame) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// Splits the engine's multiplexed log stream: 8-byte headers (stream, 0, 0, 0, size BE32).
struct LogDemultiplexer {
    private var buffer = Data()

    mutating func feed(_ data: Data) -> [(LogBatch.Stream, Data)] {
        buffer.append(data)
        var frames: [(LogBatch.Stream, Data)] = []
        while buffer.count >= 8 {
            let header = [UInt8](buffer.prefix(8))
            let size = Int(header[4]) << 24 | Int(header[5]) << 16 | Int(header[6]) << 8 | Int(header[7])
            guard buffer.count >= 8 + size else { break }
            let payload = buffer.subdata(in: buffer.startIndex + 8..<buffer.startIndex + 8 + size)
            frames.append((header[0] == 2 ? .stderr : .stdout, payload))
            buffer = Data(buffer.dropFirst(8 + size))
        }
        return frames
    }
}

/// A Docker Engine request that failed: which, with what status, and the engine's message.
public struct DockerError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let status: Int?
    public let message: String

    public var description: String {
        "Docker: \(operation) failed\(status.map { " (HTTP \($0))" } ?? ""): \(message)"
    }
}

/// An image build that failed, with the last lines of its log.
public struct BuildFailure: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let tail: [String]

    public var description: String {
        tail.isEmpty ? message : "\(message)\nlast build output:\n" + tail.joined(separator: "\n")
    }
}
