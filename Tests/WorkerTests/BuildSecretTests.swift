import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// Build secrets end to end: a worker's --secrets-dir, a real image build through the legacy
/// builder with `opschain-exec`, and the places a secret must never reach.
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(10))) struct BuildSecretTests {
        static let dockerfile = """
            ARG OPSCHAIN_BASE_RUNNER
            FROM ${OPSCHAIN_BASE_RUNNER}
            ARG OPSCHAIN_BUILD_SECRETS_URL
            WORKDIR /opt/opschain
            ADD repo.tar ./
            COPY step_context_env.json .opschain/step_context_env.json
            RUN opschain-exec sh -c 'echo "build sees $TOKEN_A"; printf %s "$TOKEN_A" | sha256sum | cut -c1-16 > /home/opschain/secret.sha'
            """
        static let actions = """
            actions:
              show: { run: 'echo "digest $(cat /home/opschain/secret.sha)"; echo "run env: ${TOKEN_A:-absent}"' }
            """

        static func digest(_ value: String) throws -> String {
            String(try runProgram("/bin/sh", ["-c", "printf %s '\(value)' | sha256sum | cut -c1-16"]).output.prefix(16))
        }

        static func builtImage(_ lines: [LogBatch.Line]) -> String? {
            lines.lazy.compactMap { line -> String? in
                guard let range = line.text.range(of: "image built: ") else { return nil }
                return String(line.text[range.upperBound...].prefix { $0 != ")" })
            }.first
        }

        @Test func secretsReachOpschainExecOnlyAndAChangedValueRebuilds() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString.prefix(6))").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let first = "s3cr3t-alpha-\(UInt32.random(in: 100_000...999_999))"
            try "# the default set\nTOKEN_A=\(first)\n".write(toFile: folder + "/opschain-build-env", atomically: true, encoding: .utf8)
            let harness = try await WorkerHarness(secretsDirectory: folder)
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions, ".opschain/Dockerfile": Self.dockerfile])

            let outcome = try await harness.run(harness.job(repository, action: "show"))
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            let log = await harness.logLines(for: outcome.ref)
            let text = log.map(\.text).joined(separator: "\n")
            #expect(text.contains("build sees ****"), "the value printed during the build is masked:\n\(text)")
            #expect(text.contains("digest \(try Self.digest(first))"), "opschain-exec saw the value:\n\(text)")
            #expect(text.contains("run env: absent"), "no secret in the step container's environment")
            #expect(!text.contains(first))
            #expect(!String(decoding: WireCodec.encode(outcome), as: UTF8.self).contains(first))
            let image = try #require(Self.builtImage(log), "\(text)")
            let saved = try runProgram("/bin/sh", ["-c", "/usr/bin/docker save \(image) | grep -a -c '\(first)' || true"])
            #expect(saved.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the value is in a layer of \(image)")
            let history = try runProgram("/usr/bin/docker", ["history", "--no-trunc", image])
            #expect(history.status == 0 && !history.output.contains(first), "\(history.output)")
            let inspect = try runProgram("/usr/bin/docker", ["image", "inspect", image])
            #expect(!inspect.output.contains(first))

            // Same value: the image is reused. A new value: a new build, never the stale layer.
            let again = try await harness.run(harness.job(repository, action: "show"))
            #expect(await harness.logLines(for: again.ref).contains { $0.text.contains("existing image reused") })
            let second = "s3cr3t-beta-\(UInt32.random(in: 100_000...999_999))"
            try "TOKEN_A=\(second)\n".write(toFile: folder + "/opschain-build-env", atomically: true, encoding: .utf8)
            let changed = try await harness.run(harness.job(repository, action: "show"))
            let changedText = await harness.logLines(for: changed.ref).map(\.text).joined(separator: "\n")
            #expect(changedText.contains("image built"), "\(changedText)")
            #expect(changedText.contains("digest \(try Self.digest(second))"), "\(changedText)")

            // Later sets win per key; a missing set fails the step and names it.
            try "TOKEN_A=team-override\n".write(toFile: folder + "/team-set", atomically: true, encoding: .utf8)
            var layered = harness.job(repository, action: "show")
            layered.buildSecrets = ["opschain-build-env", "team-set"]
            let layeredOutcome = try await harness.run(layered)
            let teamDigest = try Self.digest("team-override")
            #expect(await harness.logLines(for: layeredOutcome.ref).contains { $0.text.contains("digest \(teamDigest)") })
            var missing = harness.job(repository, action: "show")
            missing.buildSecrets = ["team-set", "no-such-set"]
            let missingOutcome = try await harness.run(missing)
            #expect(missingOutcome.status == .error)
            #expect(missingOutcome.error == "build secret set \"no-such-set\" not found in \(folder)", "\(missingOutcome.error ?? "")")
            await harness.stop()
        }
    }

    /// Workers on one engine share step images: with no secrets nothing about secrets enters
    /// the build key, and workers reading one secrets folder share its HMAC key.
    @Suite(.timeLimit(.minutes(10))) struct SharedImageTests {
        @Test func workersSharingAnEngineShareImages() async throws {
            let plain = try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"])
            let first = try await WorkerHarness()
            let built = try await first.run(first.job(plain, action: "ok"))
            #expect(await first.logLines(for: built.ref).contains { $0.text.contains("image built") })
            await first.stop()
            let second = try await WorkerHarness()
            let reused = try await second.run(second.job(plain, action: "ok"))
            #expect(await second.logLines(for: reused.ref).contains { $0.text.contains("existing image reused") }, "no secrets: the image is shared")
            await second.stop()

            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString.prefix(6))").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try "TOKEN_A=shared-\(UInt32.random(in: 100_000...999_999))\n".write(toFile: folder + "/opschain-build-env", atomically: true, encoding: .utf8)
            let repository = try TestRepository.make([".opschain/actions.yml": BuildSecretTests.actions, ".opschain/Dockerfile": BuildSecretTests.dockerfile])
            let third = try await WorkerHarness(secretsDirectory: folder)
            let withSecrets = try await third.run(third.job(repository, action: "show"))
            #expect(await third.logLines(for: withSecrets.ref).contains { $0.text.contains("image built") })
            await third.stop()
            let key = try FileManager.default.attributesOfItem(atPath: folder + "/.build-secrets.key")
            #expect((key[.posixPermissions] as? Int) == 0o600 && (key[.size] as? Int) == 32)
            let fourth = try await WorkerHarness(secretsDirectory: folder)
            let sharedKey = try await fourth.run(fourth.job(repository, action: "show"))
            #expect(
                await fourth.logLines(for: sharedKey.ref).contains { $0.text.contains("existing image reused") },
                "same folder, same key, same values: the image is shared")
            await fourth.stop()
        }
    }

    @Suite(.timeLimit(.minutes(2))) struct BuildSecretStoreTests {
        @Test func parsesSetsAndRefusesBadLines() throws {
            #expect(try BuildSecretStore.parse("A=1\n# a comment\n\n  B_2=x=y  \nEMPTY=\n", set: "s") == ["A": "1", "B_2": "x=y", "EMPTY": ""])
            #expect(throws: StepFailure("build secret set \"s\", line 1: expected KEY=value")) { try BuildSecretStore.parse("novalue\n", set: "s") }
            #expect(throws: StepFailure("build secret set \"s\", line 2: \"1A\" is not a variable name")) { try BuildSecretStore.parse("A=1\n1A=2\n", set: "s") }
            #expect(throws: StepFailure("build secret set name \"../x\" is not a plain name")) { try BuildSecretStore(directory: "/tmp").resolve(["../x"]) }
            #expect(throws: StepFailure("build secret set name \".build-secrets.key\" is not a plain name")) {
                try BuildSecretStore(directory: "/tmp").resolve([".build-secrets.key"])
            }
            #expect(try BuildSecretStore(directory: nil).resolve([BuildSecretStore.defaultSet]).isEmpty)
            #expect(throws: StepFailure("build secret set \"other\" not found (this worker has no --secrets-dir)")) { try BuildSecretStore(directory: nil).resolve(["other"]) }
        }
    }
}
