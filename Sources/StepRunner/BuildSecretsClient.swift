import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `opschain-exec`'s side of the build secrets: one HTTP GET to the build's secret server
/// (`BuildSecretsServer`, on the loopback the build shares with it) named by
/// `$OPSCHAIN_BUILD_SECRETS_URL` (a plain socket: the static binary has no URLSession).
public enum BuildSecretsClient {
    public static let variable = "OPSCHAIN_BUILD_SECRETS_URL"

    /// The secret variables; throws with a clear reason when the server cannot be asked.
    public static func fetch(_ url: String) throws(ExecError) -> [String: String] {
        guard let components = URLComponents(string: url), components.scheme == "http", components.host == "127.0.0.1",
            let port = components.port, !components.path.isEmpty
        else {
            throw ExecError("\(variable) is not an http://127.0.0.1:PORT/… URL")
        }
        let response = try get(port: UInt16(port), path: components.path)
        guard let headerEnd = response.range(of: Data("\r\n\r\n".utf8)) else { throw ExecError("the build-secret server gave no HTTP answer") }
        let status = String(decoding: response[..<headerEnd.lowerBound], as: UTF8.self).split(separator: " ").dropFirst().first ?? ""
        let body = response[headerEnd.upperBound...]
        guard status == "200" else {
            throw ExecError("the build-secret server answered \(status): \(String(decoding: body, as: UTF8.self)) (secrets are served only while the worker builds this image)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: String] else {
            throw ExecError("the build-secret server's answer is not a JSON object of strings")
        }
        return object
    }

    private static func get(port: UInt16, path: String) throws(ExecError) -> Data {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ExecError("socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let connected = LoopbackAddress.with(port: port) { connect(descriptor, $0, $1) }
        guard connected == 0 else {
            throw ExecError("cannot reach the build-secret server on 127.0.0.1:\(port): \(String(cString: strerror(errno))) (the worker runs it for the length of the build; is this RUN inside a StepFleet image build?)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Data("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        let sent = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        guard sent == request.count else { throw ExecError("cannot ask the build-secret server: \(String(cString: strerror(errno)))") }
        var response = Data()
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while response.count <= BuildSecretsServer.maximumFileBytes + 4096 {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            response.append(contentsOf: buffer[0..<count])
        }
        return response
    }
}
