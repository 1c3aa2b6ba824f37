import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import Protocol

/// The CLI's connection to the dispatcher's API (`--server`, or `STEPFLEET_SERVER`), with its
/// bearer token from `STEPFLEET_TOKEN` or the file `~/.config/stepfleet/token`.
struct APIClient {
    let server: String
    var token: String? = APIClient.configuredToken()

    static func `default`(_ server: String?) -> APIClient {
        APIClient(server: server ?? ProcessInfo.processInfo.environment["STEPFLEET_SERVER"] ?? "http://127.0.0.1:8080")
    }

    static var tokenFile: String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return (ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"] ?? home + "/.config") + "/stepfleet/token"
    }

    static func configuredToken() -> String? {
        if let token = ProcessInfo.processInfo.environment["STEPFLEET_TOKEN"], !token.isEmpty { return token }
        guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { return nil }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : token
    }

    func request(_ method: String, _ path: String, body: JSON? = nil, headers: [String: String] = [:]) async throws -> JSON {
        var request = HTTPClientRequest(url: server + path)
        request.method = .init(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body.serialized()))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        } catch {
            throw CLIError("cannot reach the dispatcher at \(server): \(error)")
        }
        let data = try await response.body.collect(upTo: 64 << 20)
        let json = try? JSON.parse(bytes: data.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            throw CLIError("\(response.status.code): \(json?["error"]?.stringValue ?? String(buffer: data))")
        }
        return json ?? .null
    }

    /// A streamed answer, line by line.
    func lines(_ path: String) async throws -> AsyncThrowingStream<String, any Error> {
        var request = HTTPClientRequest(url: server + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .hours(24))
        guard response.status.code == 200 else {
            let data = try await response.body.collect(upTo: 1 << 20)
            throw CLIError("\(response.status.code): \((try? JSON.parse(bytes: data.readableBytesView))?["error"]?.stringValue ?? String(buffer: data))")
        }
        return AsyncThrowingStream { continuation in
            let task = Task {
                var pending = ""
                do {
                    for try await chunk in response.body {
                        pending += String(buffer: chunk)
                        while let newline = pending.firstIndex(of: "\n") {
                            continuation.yield(String(pending[..<newline]))
                            pending = String(pending[pending.index(after: newline)...])
                        }
                    }
                    if !pending.isEmpty { continuation.yield(pending) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// Where the dispatcher's API is, for every client command.
struct ServerOptions: ParsableArguments {
    @Option(help: "The dispatcher's API (env STEPFLEET_SERVER; default http://127.0.0.1:8080).")
    var server: String?

    var client: APIClient { .default(server) }
}
