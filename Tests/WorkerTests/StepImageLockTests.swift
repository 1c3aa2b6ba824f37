import Foundation
import Synchronization
import Testing
@testable import Worker

/// Builds and the step image cache's removals on one engine, kept apart across the workers of
/// a host (and of one process): no removal while a build runs, and a build waits for a removal.
@Suite(.timeLimit(.minutes(1))) struct StepImageLockTests {
    @Test func buildsAndRemovalsKeepApart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("image-lock-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let lock = StepImageLock(engineSocket: "/var/run/docker.sock", directory: directory)
        let other = StepImageLock(engineSocket: "/var/run/docker.sock", directory: directory)

        await lock.shared {
            #expect(await other.exclusiveIfFree { true } == nil, "a removal while a build runs")
            // Builds do not keep each other out.
            #expect(await other.shared { true })
        }
        #expect(await other.exclusiveIfFree { true } == true)

        let order = Order()
        let build = await lock.exclusiveIfFree { () -> Task<Void, Never> in
            let build = Task { await other.shared { order.add("build") } }
            try? await Task.sleep(for: .milliseconds(300))
            order.add("removal")
            return build
        }
        await build?.value
        #expect(order.seen == ["removal", "build"])
    }

    final class Order: Sendable {
        private let state = Mutex<[String]>([])
        func add(_ what: String) { state.withLock { $0.append(what) } }
        var seen: [String] { state.withLock { $0 } }
    }
}
