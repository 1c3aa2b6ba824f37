import Foundation
import Logging
import Protocol
import Synchronization
import TestSupport
import Testing
@testable import Worker

/// A swift-log handler that keeps every message (with its metadata) for a test to read.
final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    var logger: Logger {
        var logger = Logger(label: "captured") { _ in Handler(log: self) }
        logger.logLevel = .debug
        return logger
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let all = self.metadata.merging(metadata ?? [:]) { $1 }
            log.lines.withLock { $0.append("\(level) \(message) \(all.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " "))") }
        }
    }
}

/// Secrets stay out of every log the worker writes: the step's log shipped to the dispatcher,
/// the outcome's error and the worker's own log, in every form a value takes there.
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(5))) struct SecretMaskingTests {
        static let pem = """
            -----BEGIN PRIVATE KEY-----
            MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7
            VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu
            -----END PRIVATE KEY-----
            """
        static let quoted = #"pa"ss\word-77"#
        /// The pieces that must appear nowhere (the PEM's armour lines are not secret).
        static let leaks = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu", "ss\\word", "ss\\\\word"]

        static let actions = """
            actions:
              leak:
                run: |
                  jq -r '.opschain.secrets.key' "$OPSCHAIN_PROJECT_PROPERTIES"
                  jq -r '.opschain.secrets.quoted' "$OPSCHAIN_PROJECT_PROPERTIES" >&2
                  cat "$OPSCHAIN_PROJECT_PROPERTIES"
                  exit 3
            """

        static func leaked(_ text: String) -> [String] { leaks.filter { text.contains($0) } }

        @Test func multiLineAndEscapedSecretsAreMaskedInTheStepLog() async throws {
            let captured = CapturedLog()
            let harness = try await WorkerHarness(logger: captured.logger)
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            let project: JSON = ["opschain": ["secrets": ["key": .string(Self.pem), "quoted": .string(Self.quoted)]]]
            let outcome = try await harness.run(harness.job(repository, action: "leak", project: project))
            #expect(outcome.status == .error)
            let log = await harness.logLines(for: outcome.ref).map(\.text).joined(separator: "\n")
            // The step did print them (the key line by line, the properties file as JSON): the
            // masked forms are there, the values are not.
            let stdout = log.split(separator: "\n").filter { $0 == "****" }
            #expect(stdout.count >= 5, "the key's four lines and the quoted value, each masked:\n\(log)")
            #expect(log.contains(#""key": "****""#) && log.contains(#""quoted": "****""#), "the properties file as the step printed it:\n\(log)")
            #expect(Self.leaked(log).isEmpty, "the step log shows \(Self.leaked(log)):\n\(log)")
            #expect(Self.leaked(outcome.error ?? "").isEmpty)
            #expect(Self.leaked(captured.text).isEmpty, "the worker's own log shows \(Self.leaked(captured.text))")
            await harness.stop()
        }

        @Test func aFailedBuildsOutputIsMaskedInTheErrorAndTheWorkersOwnLog() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mask-secrets-\(UUID().uuidString.prefix(6))").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try "TOKEN=\(Self.quoted)\n".write(toFile: folder + "/opschain-build-env", atomically: true, encoding: .utf8)
            let captured = CapturedLog()
            let harness = try await WorkerHarness(secretsDirectory: folder, logger: captured.logger)
            let dockerfile = """
                ARG OPSCHAIN_BASE_RUNNER
                FROM ${OPSCHAIN_BASE_RUNNER}
                ARG OPSCHAIN_BUILD_SECRETS_URL
                ADD repo.tar /opt/opschain/
                COPY step_context_env.json /opt/opschain/.opschain/step_context_env.json
                RUN opschain-exec sh -c 'echo "token is $TOKEN"; jq -cn --arg t "$TOKEN" "{t: \\$t}"; exit 1'
                """
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions, ".opschain/Dockerfile": dockerfile])
            let outcome = try await harness.run(harness.job(repository, action: "leak"))
            #expect(outcome.status == .error)
            let error = outcome.error ?? ""
            #expect(error.contains("token is ****"), "the failed build's output is in the error, masked: \(error)")
            #expect(Self.leaked(error).isEmpty, "\(error)")
            let log = await harness.logLines(for: outcome.ref).map(\.text).joined(separator: "\n")
            #expect(Self.leaked(log).isEmpty, "\(log)")
            #expect(captured.text.contains("token is ****"), "the worker logged the error")
            #expect(Self.leaked(captured.text).isEmpty, "the worker's own log shows \(Self.leaked(captured.text))")
            await harness.stop()
        }
    }
}
