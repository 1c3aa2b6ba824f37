import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// The build key takes the base image by what its tag points at: the same Dockerfile over a
/// moved tag is another key (so a new image is built), the tag moved back is the first key.
@Suite(.timeLimit(.minutes(4))) struct BuildKeyBaseTagTests {
    @Test func aMovedBaseTagChangesTheBuildKey() async throws {
        let engine = try DockerEngine()
        let base = "stepfleet-test-base:\(UUID().uuidString.prefix(8).lowercased())"
        let (repository, tag) = (String(base.split(separator: ":")[0]), String(base.split(separator: ":")[1]))
        let builder = DockerImageBuilder(engine: engine, scratchDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("key-\(tag)").path)
        let request = BuildRequest(
            checkout: "/nonexistent", dockerfile: "FROM \(base)\nRUN true\n",
            contextEnv: StepContextEnv(env: [:], context: .init(project: ["code": "demo"], environment: ["code": "dev"])),
            buildArgs: ["GIT_SHA": "0123"], runnerImage: WorkerHarness.runnerImage)
        // Another image than the runner: the runner with one more label (no network needed).
        let other = "stepfleet-test-other:\(tag)"
        let built = try runProgram("/bin/sh", ["-c", #"printf 'FROM %s\nLABEL stepfleet.test=moved\n' "$1" | docker build -q -t "$2" -"#, "sh", WorkerHarness.runnerImage, other])
        try #require(built.status == 0, "\(built.output)")
        defer {
            for image in [base, other] { _ = try? runProgram("/usr/bin/docker", ["rmi", "-f", image]) }
        }

        try await engine.tagImage(WorkerHarness.runnerImage, repository: repository, tag: tag)
        let first = try await builder.buildKey(request, contextEnv: Data("{}".utf8))
        let again = try await builder.buildKey(request, contextEnv: Data("{}".utf8))
        #expect(first == again)

        try await engine.tagImage(other, repository: repository, tag: tag)
        let moved = try await builder.buildKey(request, contextEnv: Data("{}".utf8))
        #expect(moved != first, "the base tag moved to another image and the build key stayed")

        try await engine.tagImage(WorkerHarness.runnerImage, repository: repository, tag: tag)
        #expect(try await builder.buildKey(request, contextEnv: Data("{}".utf8)) == first)
    }
}
