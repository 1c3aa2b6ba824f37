import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `opschain-exec --serve-build-secrets FILE`: the build-secret server of one image build.
///
/// The worker runs it in a small container of its own with no network (only `lo`), builds the
/// image with `networkmode=container:<that container>`, and removes it when the build ends. The
/// build's `RUN` steps share that loopback and nothing else: they cannot see the host's
/// loopback, nor another build's secrets. The worker copies FILE in before the start (mode
/// 0400): its first line is the token, the rest the JSON answer. It is read once and deleted;
/// the server then answers `GET /secrets/<token>` with it and anything else with 404, one
/// connection at a time, reading at most a few kilobytes of each request with a deadline.
public enum BuildSecretsServer {
    public static let flag = "--serve-build-secrets"
    /// The port in the server's own network namespace, which nothing else uses.
    public static let port: UInt16 = 4779
    /// What it writes to standard output once it listens; the worker waits for this line.
    public static let readyLine = "serving build secrets"
    /// The largest secrets file it takes.
    public static let maximumFileBytes = 4 << 20

    /// The URL `opschain-exec` fetches the secrets of `token` from.
    public static func url(token: String) -> String { "http://127.0.0.1:\(port)/secrets/\(token)" }

    /// The file's contents: the token, a newline, the JSON answer.
    public static func file(token: String, answer: Data) -> Data { Data((token + "\n").utf8) + answer }

    /// Serves until killed; returns only on a failure, with its reason.
    public static func serve(file path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path), data.count <= maximumFileBytes,
            let newline = data.firstIndex(of: 0x0A)
        else { return "cannot read the secrets file \(path)" }
        unlink(path)
        let token = String(decoding: data[data.startIndex..<newline], as: UTF8.self)
        guard !token.isEmpty, token.allSatisfy(\.isHexDigit) else { return "the secrets file has no token" }
        let answer = Data(data[(newline + 1)...])
        signal(SIGPIPE, SIG_IGN)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = LoopbackAddress.with(port: port) { bind(listener, $0, $1) }
        guard bound == 0, listen(listener, 16) == 0 else { return "cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))" }
        let ready = Data("\(readyLine) on 127.0.0.1:\(port)\n".utf8)
        _ = ready.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 { continue }
            answerOne(connection, token: token, answer: answer)
            shutdown(connection, Int32(SHUT_WR))
            close(connection)
        }
    }

    /// The request's first line. The request is read to its blank line (closing a socket with
    /// unread data resets it, and the client could lose the answer), with a deadline and a bound.
    static func requestLine(_ connection: Int32) -> String? {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 1024)
        while request.count < 8192 {
            let count = recv(connection, &buffer, buffer.count, 0)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            request.append(contentsOf: buffer[0..<count])
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
        }
        guard let end = request.firstIndex(of: 10) else { return nil }
        return String(decoding: request[..<end], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The answer to one request line: only `GET /secrets/<token>` gets the secrets.
    static func response(to line: String?, token: String, answer: Data) -> Data {
        let parts = line?.split(separator: " ") ?? []
        let matches = parts.count == 3 && parts[0] == "GET" && parts[2].hasPrefix("HTTP/1.") && equal(String(parts[1]), "/secrets/" + token)
        let (status, body) = matches ? ("200 OK", answer) : ("404 Not Found", Data(#"{"error": "no build in progress with this token"}"#.utf8))
        return Data("HTTP/1.0 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
    }

    private static func answerOne(_ connection: Int32, token: String, answer: Data) {
        let reply = response(to: requestLine(connection), token: token, answer: answer)
        reply.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let sent = send(connection, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 && errno == EINTR { continue }
                if sent <= 0 { return }
                offset += sent
            }
        }
    }

    /// Compares in time that does not depend on where the texts differ.
    private static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
