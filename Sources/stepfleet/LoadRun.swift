import Foundation
import Synchronization

/// One `stepfleet load` run: submits changes as the pacer says, watches them finish, and
/// collects what the report is made of.
final class LoadRun: Sendable {
    struct Result: Sendable {
        var startedAt: Date
        var wallSeconds: Double
        var submitted: Int
        var errors: [String: Int]
        var samples: [LoadChangeSample]
        var unfinished: Int
        var submitLatencies: [Double]
    }

    private struct State {
        var submitted = 0
        var accepted: [String] = []
        var errors: [String: Int] = [:]
        var submitLatencies: [Double] = []
        var samples: [String: LoadChangeSample] = [:]
        var submitting = true
    }

    let submitter: any LoadSubmitter
    let reader: LoadReader
    let project: LoadProject
    let gitRev: String?
    let user: String
    let pacer: LoadPacer
    let concurrency: Int
    let wait: Double
    private let state = Mutex(State())

    init(submitter: any LoadSubmitter, reader: LoadReader, project: LoadProject, gitRev: String?, user: String, pacer: LoadPacer, concurrency: Int, wait: Double) {
        self.submitter = submitter
        self.reader = reader
        self.project = project
        self.gitRev = gitRev
        self.user = user
        self.pacer = pacer
        self.concurrency = concurrency
        self.wait = wait
    }

    func run(progress: LoadProgress) async throws -> Result {
        let startedAt = Date()
        let clock = ContinuousClock()
        let start = clock.now
        let watcher = Task { try await watch(progress: progress, start: start) }
        await submitAll(start: start)
        state.withLock { $0.submitting = false }
        try await watcher.value
        progress.finish()
        return state.withLock { state in
            Result(
                startedAt: startedAt, wallSeconds: (clock.now - start).seconds, submitted: state.submitted, errors: state.errors,
                samples: Array(state.samples.values), unfinished: state.accepted.count - state.samples.count, submitLatencies: state.submitLatencies)
        }
    }

    /// Sends change after change when the pacer says, at most `concurrency` at once.
    private func submitAll(start: ContinuousClock.Instant) async {
        let clock = ContinuousClock()
        await withTaskGroup(of: Void.self) { group in
            var index = 0
            var inFlight = 0
            while pacer.sends(index, elapsed: (clock.now - start).seconds) {
                if inFlight >= concurrency {
                    await group.next()
                    inFlight -= 1
                    continue
                }
                let pause = pacer.wait(before: index, elapsed: (clock.now - start).seconds)
                if pause > 0 {
                    try? await Task.sleep(for: .seconds(pause))
                    continue
                }
                let environment = project.environments[index % project.environments.count]
                state.withLock { $0.submitted += 1 }
                group.addTask { await self.submit(environment) }
                inFlight += 1
                index += 1
            }
        }
    }

    private func submit(_ environment: String) async {
        let clock = ContinuousClock()
        let sent = clock.now
        do {
            let id = try await submitter.submit(project: project.code, environment: environment, action: project.action, gitRev: gitRev, user: user)
            let milliseconds = (clock.now - sent).seconds * 1000
            state.withLock { state in
                state.accepted.append(id)
                state.submitLatencies.append(milliseconds)
            }
        } catch {
            state.withLock { $0.errors["\(error)", default: 0] += 1 }
        }
    }

    /// Once a second: which accepted changes have finished (read back once each), the
    /// progress line; until submitting is over and every change finished, or `wait` ran out.
    private func watch(progress: LoadProgress, start: ContinuousClock.Instant) async throws {
        let clock = ContinuousClock()
        var submittingEnded: ContinuousClock.Instant?
        var lastPlain = clock.now
        var readFailures = 0
        while true {
            try await Task.sleep(for: .seconds(1))
            let (submitting, waiting) = state.withLock { state in (state.submitting, state.accepted.filter { state.samples[$0] == nil }) }
            if !submitting, submittingEnded == nil { submittingEnded = clock.now }
            do {
                let open = try await reader.open()
                for id in waiting where !open.contains(id) {
                    if let sample = try await reader.finished(id) { state.withLock { $0.samples[id] = sample } }
                }
                readFailures = 0
            } catch {
                readFailures += 1
                if readFailures == 1 || readFailures % 30 == 0 { say("cannot read the changes back (\(readFailures) time(s) in a row): \(error)") }
            }
            let snapshot = state.withLock { state in
                LoadProgress.State(
                    submitted: state.submitted, errors: state.errors.values.reduce(0, +), finished: state.samples.count,
                    failed: state.samples.values.filter { $0.status != "success" }.count, planned: pacer.planned, elapsed: (clock.now - start).seconds)
            }
            let plainDue = clock.now - lastPlain >= .seconds(5)
            if plainDue { lastPlain = clock.now }
            progress.show(snapshot, plainDue: plainDue)
            let remaining = state.withLock { state in state.accepted.count - state.samples.count }
            if !submitting, remaining == 0 { return }
            if let ended = submittingEnded, (clock.now - ended).seconds > wait {
                say("\(remaining) change(s) still open \(Int(wait)) s after the last submission; reporting without them")
                return
            }
        }
    }
}
