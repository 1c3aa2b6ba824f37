import Foundation
import Protocol
import StepRunner

/// Warm containers: after a step, the runtime starts the container of the next step of the
/// same image (file system mounted, bundle written, `runc run` of `opschain-action --wait`
/// begun) so that the next step only writes its `step_context.json` and says its action.
/// Made only for images whose `opschain-action` says it can wait (the runner image's label
/// `org.stepfleet.opschain-action-wait`) and that have no entrypoint of their own (it would
/// run before the step is known); unused for `warmIdle`, one is removed.
extension OCIContainerRuntime {
    /// The label of an image whose `opschain-action` takes `--wait`.
    public static let waitLabel = "org.stepfleet.opschain-action-wait"

    /// A warm container of `key`, nil when none is ready or being made (or it ended unused).
    func takeWarm(_ key: OCIWarmPool.Key) async -> OCIWarmContainer? {
        guard let entry = warmPool.take(key) else { return nil }
        guard let warm = await entry.made.value else {
            // Its making failed: what it made of the step (directory, mount, lease) goes.
            discardWarm(entry)
            return nil
        }
        guard !warm.process.hasExited else {
            warmPool.failed(key)
            discardWarm(OCIWarmPool.Entry(key: key, id: warm.id, made: Task { warm }))
            return nil
        }
        // A step's container from here on.
        Self.record(warm.id, in: directory)
        return warm
    }

    /// Starts making a warm container of `key` when one is wanted; it waits at most `warmIdle`.
    func makeWarm(_ key: OCIWarmPool.Key, image: JSON, reference: String) {
        guard warmPool.wants(key), image["Config"]?["Labels"]?[Self.waitLabel]?.stringValue == "1",
            (image["Config"]?["Entrypoint"]?.arrayValue ?? []).isEmpty
        else { return }
        let id = OCIContainerID.make()
        Self.record(id, in: directory, warm: true)
        let made = Task.detached { [self] () -> OCIWarmContainer? in
            let step = stepsDirectory + "/" + id
            do {
                let prepared = try await prepare(
                    image, reference: reference, imageUser: key.imageUser, limits: key.limits, id: id, step: step, command: ["opschain-action", AwaitedAction.flag])
                // runc's deadline: the idle time and a minute; a step that takes it sets its own.
                return try OCIWarmContainer(
                    id: id, step: step, user: prepared.user, note: prepared.note, runc: runc,
                    deadline: warmIdle + .seconds(60))
            } catch {
                warmPool.failed(key)
                return nil
            }
        }
        let entry = OCIWarmPool.Entry(key: key, id: id, made: made)
        for pushedOut in warmPool.add(entry) { discardWarm(pushedOut) }
        Task.detached { [self] in
            try? await Task.sleep(for: warmIdle)
            if let unused = warmPool.remove(id: id) { discardWarm(unused) }
        }
    }

    /// Removes a warm container no step took: its input closed (it then ends by itself),
    /// killed, and cleaned up like a step's (`waitForCleanUps` waits for it).
    func discardWarm(_ entry: OCIWarmPool.Entry) {
        let task = Task.detached { [self] in
            let warm = await entry.made.value
            warm?.release()
            await runc.kill(id: entry.id)
            _ = await warm?.process.wait()
            await cleanUp(entry.id)
            _ = cleanUps.withLock { $0.removeValue(forKey: entry.id) }
        }
        cleanUps.withLock { $0[entry.id] = task }
    }

    /// Runs the step in a warm container: its context written, its action said once the step
    /// said it starts.
    func runWarm(
        _ warm: OCIWarmContainer, _ run: ContainerRun, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, Data) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        output(.system, Data(warm.note.utf8))
        output(.system, Data("run: in a container started before the step (warm: file system mounted, runc running, waiting for the action)\n".utf8))
        try writeContext(run.stepContext, user: warm.user, rootfs: warm.step + "/rootfs")
        return try await runContainer(run, id: warm.id, step: warm.step, cancellation: cancellation, started: started, output: output) { () throws(StepFailure) in
            // runc itself is killed a minute past the step's own timeout: no wait without a deadline.
            let said = warm.go(action: run.action, deadline: run.timeout + .seconds(60)) { isError, data in output(isError ? .stderr : .stdout, data) }
            // A cancel that killed the waiting container first ends the step as cancelled.
            guard said || cancellation.isCancelled else {
                throw StepFailure("the step's container (started before the step) ended before it could run: \(warm.earlyOutput.prefix(300))")
            }
            return warm.process
        }
    }
}
