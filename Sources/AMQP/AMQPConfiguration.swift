import Foundation

/// Where and how to reach a broker: `amqp://user:pass@host:port/vhost` or `amqps://…`.
///
/// Query parameters (as in RabbitMQ's URI spec): `heartbeat` (seconds), `connection_timeout`
/// (milliseconds), `confirm_timeout` (seconds a publish waits for the broker's confirm before it
/// is reported unconfirmed; default 10), `cacertfile`, `certfile`, `keyfile`, `verify` (`verify_peer`, the default, or
/// `verify_none`), `server_name_indication` is not needed (the host name is verified).
public struct AMQPConfiguration: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String
    /// Requested heartbeat interval in seconds; 0 turns heartbeats off.
    public var heartbeatSeconds: Int
    public var connectTimeoutMilliseconds: Int
    /// How long a publish waits for its confirm on a live connection before it is reported
    /// unconfirmed (the caller publishes again). A broker that lost a confirm in a leader change
    /// must not hold a publisher for ever.
    public var confirmTimeoutSeconds: Int
    /// TLS settings; nil for plain `amqp://`.
    public var tls: TLS?

    public struct TLS: Sendable, Hashable {
        /// PEM file of the CA(s) that sign the broker's certificate.
        public var caCertificatePath: String?
        /// Client certificate and key (PEM) for brokers that ask for one.
        public var clientCertificatePath: String?
        public var clientKeyPath: String?
        /// Verify the broker's certificate chain and host name. On unless explicitly turned off.
        public var verifyPeer: Bool

        public init(caCertificatePath: String? = nil, clientCertificatePath: String? = nil, clientKeyPath: String? = nil, verifyPeer: Bool = true) {
            self.caCertificatePath = caCertificatePath
            self.clientCertificatePath = clientCertificatePath
            self.clientKeyPath = clientKeyPath
            self.verifyPeer = verifyPeer
        }
    }

    public init(
        host: String = "127.0.0.1", port: Int? = nil, user: String = "guest", password: String = "guest", vhost: String = "/",
        heartbeatSeconds: Int = 10, connectTimeoutMilliseconds: Int = 5000, confirmTimeoutSeconds: Int = 10, tls: TLS? = nil
    ) {
        self.confirmTimeoutSeconds = confirmTimeoutSeconds
        self.host = host
        self.port = port ?? (tls == nil ? 5672 : 5671)
        self.user = user
        self.password = password
        self.vhost = vhost
        self.heartbeatSeconds = heartbeatSeconds
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.tls = tls
    }

    /// Parses an AMQP URL. Errors say which part is wrong.
    public init(url text: String) throws(AMQPError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw .invalidConfiguration("\"\(AMQPConfiguration.redact(text))\" is not a URL")
        }
        guard scheme == "amqp" || scheme == "amqps" else {
            throw .invalidConfiguration("URL scheme must be amqp or amqps, not \(scheme)")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
        var tls: TLS?
        if scheme == "amqps" {
            var settings = TLS(caCertificatePath: query["cacertfile"], clientCertificatePath: query["certfile"], clientKeyPath: query["keyfile"])
            if let verify = query["verify"] {
                guard verify == "verify_peer" || verify == "verify_none" else {
                    throw .invalidConfiguration("verify must be verify_peer or verify_none, not \(verify)")
                }
                settings.verifyPeer = verify == "verify_peer"
            }
            tls = settings
        }
        var heartbeat = 10
        if let value = query["heartbeat"] {
            guard let seconds = Int(value), (0...3600).contains(seconds) else {
                throw .invalidConfiguration("heartbeat must be whole seconds from 0 to 3600, not \(value)")
            }
            heartbeat = seconds
        }
        var timeout = 5000
        if let value = query["connection_timeout"] {
            guard let milliseconds = Int(value), milliseconds > 0 else {
                throw .invalidConfiguration("connection_timeout must be a positive number of milliseconds, not \(value)")
            }
            timeout = milliseconds
        }
        var confirmTimeout = 10
        if let value = query["confirm_timeout"] {
            guard let seconds = Int(value), seconds > 0 else {
                throw .invalidConfiguration("confirm_timeout must be a positive number of seconds, not \(value)")
            }
            confirmTimeout = seconds
        }
        // An empty path or a lone "/" mean the default vhost "/"; "%2F" spells it explicitly.
        var vhost = components.percentEncodedPath
        if vhost.hasPrefix("/") { vhost.removeFirst() }
        vhost = vhost.removingPercentEncoding ?? vhost
        if vhost.isEmpty { vhost = "/" }
        if let port = components.port, !(1...65535).contains(port) {
            throw .invalidConfiguration("port \(port) is out of range")
        }
        self.init(
            host: components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1",
            port: components.port,
            user: components.user ?? "guest",
            password: components.password ?? "guest",
            vhost: vhost,
            heartbeatSeconds: heartbeat,
            connectTimeoutMilliseconds: timeout,
            confirmTimeoutSeconds: confirmTimeout,
            tls: tls)
    }

    /// Where this configuration points, without the password.
    public var description: String {
        let vhostPart = vhost == "/" ? "" : (vhost.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? vhost)
        return "\(tls == nil ? "amqp" : "amqps")://\(user)@\(host):\(port)/\(vhostPart)"
    }

    /// A URL with its password replaced, for messages; in text that does not parse as a URL
    /// (the very case an error message quotes it), everything between `://` and the last `@`.
    public static func redact(_ text: String) -> String {
        if var components = URLComponents(string: text) {
            guard components.password != nil else { return text }
            components.password = "***"
            if let redacted = components.string { return redacted }
        }
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].lastIndex(of: "@") else { return text }
        return String(text[..<scheme.upperBound]) + "***" + String(text[at...])
    }

    /// Several comma-separated URLs (cluster nodes), tried in order on every (re)connect.
    public static func list(_ text: String) throws(AMQPError) -> [AMQPConfiguration] {
        var result: [AMQPConfiguration] = []
        for part in text.split(separator: ",") {
            result.append(try AMQPConfiguration(url: part.trimmingCharacters(in: .whitespaces)))
        }
        guard !result.isEmpty else { throw .invalidConfiguration("no broker URL given") }
        return result
    }
}
