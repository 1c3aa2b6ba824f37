import Foundation
import Protocol
import TestSupport
import Testing

/// `stepfleet batch create --follow` against a fleet of processes (dispatcher and worker of the
/// built binary, the real broker and engine): the progress line while it runs, a table of every
/// environment with its result at the end, and an exit status that says whether all succeeded.
@Suite(.serialized) struct BatchFollowTests {
    static let vhost = testVhost("stepfleet-cli-tests")
    /// `deploy` fails where the environment's properties say `"fail": true`.
    static let actions = """
        actions:
          deploy: { run: 'test "$(jq -r ".fail // false" "$OPSCHAIN_ENVIRONMENT_PROPERTIES")" != true' }
        """
    static let environments = ["prod-00", "prod-01", "prod-02", "prod-03"]

    /// The line `--follow` prints while it runs (on a pipe: when something moved, and at the end).
    static var progress: Regex<(Substring, Substring)> { #/batch (running|success|error): \d+/4 done, \d+ running, \d+ failed, \d+ skipped, [0-9.hms]+ elapsed/# }

    /// The table row of `environment`, split into its columns (environment, result, time, change).
    static func row(_ output: String, _ environment: String) -> [String]? {
        output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }.last { $0.first == environment }
    }

    @Test(.timeLimit(.minutes(8)))
    func batchCreateFollowShowsProgressAndEveryEnvironmentAndExitsByTheOutcome() async throws {
        try ensureVhost(Self.vhost)
        let fleet = try ProcessFleet.make(amqp: "amqp://guest:guest@127.0.0.1:5672/\(Self.vhost)?heartbeat=5")
        defer { fleet.remove() }
        try await fleet.startDispatcher()
        try fleet.startWorker(slots: 2)
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        let project = "c\(UUID().uuidString.prefix(6).lowercased())"
        try await fleet.api("POST", "/projects", ["code": .string(project), "git_remote": .string(repository.path)])
        for environment in Self.environments + ["staging"] {
            try await fleet.api("POST", "/projects/\(project)/environments", ["code": .string(environment)])
        }
        let create = ["batch", "create", "--project", project, "--environments", "prod-*", "--action", "deploy", "--parallel", "2", "--max-failures", "3", "--follow"]

        let succeeded = try await fleet.stepfleet(create)
        #expect(succeeded.status == 0, "\(succeeded.output)")
        #expect(succeeded.output.contains("created batch "), "\(succeeded.output)")
        #expect(succeeded.output.contains(Self.progress), "\(succeeded.output)")
        #expect(succeeded.output.contains(#/batch success: 4/4 done, 0 running, 0 failed, 0 skipped/#), "\(succeeded.output)")
        #expect(succeeded.output.contains(#/ENVIRONMENT +RESULT +TIME +CHANGE/#), "\(succeeded.output)")
        for environment in Self.environments {
            let row = Self.row(succeeded.output, environment)
            #expect(row?.count == 4 && row?[1] == "success", "\(environment): \(row ?? []) in \(succeeded.output)")
        }
        #expect(Self.row(succeeded.output, "staging") == nil, "the glob leaves staging out")

        // One environment fails: the batch still runs the others (max 3 failures), the table
        // says which failed, and the command exits non-zero.
        try await fleet.api("PUT", "/projects/\(project)/environments/prod-02/properties", ["fail": true])
        let failed = try await fleet.stepfleet(create)
        #expect(failed.status == 1, "\(failed.output)")
        #expect(failed.output.contains(Self.progress), "\(failed.output)")
        #expect(failed.output.contains(#/batch error: 4/4 done, 0 running, 1 failed, 0 skipped/#), "\(failed.output)")
        for environment in Self.environments {
            let row = Self.row(failed.output, environment)
            #expect(row?[1] == (environment == "prod-02" ? "error" : "success"), "\(environment): \(row ?? []) in \(failed.output)")
        }
    }
}
