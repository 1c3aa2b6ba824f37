import AMQP
import Foundation
import Logging
import TestSupport

/// The brokers `ops/test` starts: the main private node, and a disposable one for tests that
/// stop or disrupt the broker (so they never disturb tests running at the same time).
enum TestBroker {
    static let state = ProcessInfo.processInfo.environment["STEPFLEET_STATE"] ?? repositoryRoot.appendingPathComponent(".state").path
    static let tlsDirectory = state + "/tls"

    static var url: String { ProcessInfo.processInfo.environment["STEPFLEET_TEST_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/" }
    static let chaosNode = "stepfleet-chaos@localhost"
    static let chaosURL = "amqp://guest:guest@127.0.0.1:5682/?heartbeat=2"

    static func configuration(_ text: String = url) throws -> AMQPConfiguration {
        try AMQPConfiguration(url: text)
    }

    static func uniqueName(_ prefix: String) -> String {
        "test.\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }

    static let logger: Logger = {
        var logger = Logger(label: "amqp-test")
        logger.logLevel = .warning
        return logger
    }()

    /// The Erlang VM of the disposable node (to freeze it).
    static func chaosNodePID() throws -> pid_t {
        let path = state + "/rabbitmq/stepfleet-chaos/rabbitmq.pid"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestSetupError("no pid file for the disposable node at \(path)")
        }
        // The file outlives its VM: make sure the process is that node's, not a stale number.
        let command = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        guard command.contains("beam"), command.contains("stepfleet-chaos") else {
            throw TestSetupError("pid \(pid) in \(path) is not the disposable node's Erlang VM")
        }
        return pid
    }

    /// A process's state letter from /proc (`T` when stopped), nil when it is gone.
    static func processState(_ pid: pid_t) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
    }

    /// Runs `ops/rabbitmqctl` against a private node (the disposable one by default).
    @discardableResult
    static func rabbitmqctl(node: String = chaosNode, _ arguments: String...) throws -> String {
        let result = try runProgram(repositoryRoot.appendingPathComponent("ops/rabbitmqctl").path, ["--node", node] + arguments)
        guard result.status == 0 else { throw TestSetupError("rabbitmqctl \(arguments.joined(separator: " ")) failed: \(result.output)") }
        return result.output
    }
}

/// Collects values from concurrent tasks.
final class Collector<Value: Sendable & Hashable>: Sendable {
    private let values = LockedValue<[Value]>([])

    func add(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.value }
    var set: Set<Value> { Set(values.value) }
    var count: Int { values.value.count }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}
