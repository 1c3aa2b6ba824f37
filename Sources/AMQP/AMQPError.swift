/// Everything that can go wrong talking to the broker, each case saying what to do about it.
public enum AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL or settings are wrong; nothing was attempted.
    case invalidConfiguration(String)
    /// No TCP/TLS connection could be made to `endpoint`.
    case connectFailed(endpoint: String, reason: String)
    /// The TLS handshake or certificate verification failed.
    case tlsFailed(endpoint: String, reason: String)
    /// The broker refused the credentials or the vhost.
    case loginFailed(endpoint: String, reason: String)
    /// The connection is gone (broker closed it, socket error, missed heartbeats).
    case connectionClosed(reason: String)
    /// The broker closed a channel, usually because an operation was refused.
    case channelClosed(code: Int, reason: String)
    /// The broker refused an operation (e.g. a queue declared with other arguments).
    case operationFailed(operation: String, reason: String)
    /// The broker nacked a publish: it did not take responsibility for the message.
    case publishNacked
    /// The connection was lost before the broker confirmed a publish: it may or may not have
    /// been stored. Publish it again (consumers must tolerate duplicates).
    case publishUnconfirmed(reason: String)
    /// A delivery from an earlier connection cannot be acked on this one; the broker
    /// redelivers it.
    case staleDelivery
    /// No broker became reachable within the allowed time.
    case timedOut(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let reason): "invalid AMQP configuration: \(reason)"
        case .connectFailed(let endpoint, let reason): "cannot connect to \(endpoint): \(reason)"
        case .tlsFailed(let endpoint, let reason): "TLS with \(endpoint) failed: \(reason)"
        case .loginFailed(let endpoint, let reason): "login to \(endpoint) failed: \(reason)"
        case .connectionClosed(let reason): "AMQP connection closed: \(reason)"
        case .channelClosed(let code, let reason): "AMQP channel closed by the broker (\(code)): \(reason)"
        case .operationFailed(let operation, let reason): "\(operation) failed: \(reason)"
        case .publishNacked: "the broker refused (nacked) the message"
        case .publishUnconfirmed(let reason): "publish not confirmed before the connection was lost (\(reason)); publish it again"
        case .staleDelivery: "the delivery belongs to a closed connection; the broker will redeliver it"
        case .timedOut(let what): "timed out: \(what)"
        }
    }
}
