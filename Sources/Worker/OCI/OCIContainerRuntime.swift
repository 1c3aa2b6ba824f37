import Crypto
import Foundation
import Logging
import Protocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Step containers run by `runc` directly on the step image's layers: the layers unpacked
/// once into the host's layer cache (`OCILayerStore`), an overlay mount per step (its own
/// upper and work directories), a bundle whose `config.json` gives the Docker path's
/// isolation (`OCIBundle`). `step_context.json` goes in and `step_result.json` comes out
/// through the step's file system, with no archive copies. Docker still builds the images,
/// and runs the steps that ask for a network.
///
/// Everything of a step is named after its container id (`sf<worker pid>-<random>`): its
/// directory under `<work>/oci/steps`, its runc state under `<work>/oci/runc` and its cgroup
/// `/stepfleet/<id>`. All of it goes after the step, and a worker removes what a dead worker
/// left (`reapLeftovers`).
public final class OCIContainerRuntime: ContainerRuntime {
    let engine: DockerEngine
    let docker: DockerContainerRuntime
    let store: OCILayerStore
    let runc: OCIRunc
    let directory: String
    private let rootCapabilities: [String]
    /// Layers unused this long (and held by no running step) leave the cache.
    let layerIdle: Duration
    private let lastPrune = Mutex<ContinuousClock.Instant?>(nil)
    let cleanUps = Mutex<[String: Task<Void, Never>]>([:])
    /// Containers started before their step (`OCIContainerRuntime+Warm`).
    let warmPool: OCIWarmPool
    /// A warm container unused this long is removed.
    let warmIdle: Duration

    /// The host's layer cache when the worker names none: shared by every worker on the host.
    public static let defaultLayerDirectory = "/var/lib/stepfleet/layers"

    public init(
        engine: DockerEngine, workDirectory: String, runc: String, layerDirectory: String = OCIContainerRuntime.defaultLayerDirectory,
        rootCapabilities: [String] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID"], layerIdle: Duration = .seconds(3600),
        warmContainers: Int = 1, warmIdle: Duration = .seconds(60)
    ) {
        // A warm container's input is a pipe: a container that ended must give the worker
        // EPIPE, not SIGPIPE (SwiftNIO ignores it for its sockets too).
        signal(SIGPIPE, SIG_IGN)
        warmPool = OCIWarmPool(capacity: warmContainers)
        self.warmIdle = warmIdle
        self.engine = engine
        docker = DockerContainerRuntime(engine: engine, rootCapabilities: rootCapabilities)
        directory = (workDirectory as NSString).appendingPathComponent("oci")
        store = OCILayerStore(directory: layerDirectory, engine: engine)
        self.runc = OCIRunc(executable: runc, root: directory + "/runc")
        self.rootCapabilities = rootCapabilities
        self.layerIdle = layerIdle
    }

    var stepsDirectory: String { directory + "/steps" }

    /// The container ids each runtime directory used for steps, and for warm containers (the
    /// last 1,000 of each), so that a test can check that nothing of them is left: of a step's
    /// once it ended, of a warm one once the runtime stopped.
    private static let used = Mutex<[String: [String]]>([:])

    static func record(_ id: String, in directory: String, warm: Bool = false) {
        let key = (warm ? "warm " : "") + directory
        used.withLock { $0[key, default: []] = Array(($0[key] ?? []).suffix(999)) + [id] }
    }

    static func idsUsed(in directory: String) -> [String] { used.withLock { $0[directory] ?? [] } }

    static func warmIDsUsed(in directory: String) -> [String] { used.withLock { $0["warm " + directory] ?? [] } }

    public func run(
        _ run: ContainerRun, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, Data) -> Void
    ) async throws(StepFailure) -> ContainerResult {
        if let network = run.network {
            output(.system, Data("run: on the Docker runtime: the step asks for the network \"\(network)\" (opschain.config.network), and the oci runtime gives steps only lo\n".utf8))
            return try await docker.run(run, cancellation: cancellation, started: started, output: output)
        }
        if cancellation.isCancelled { return ContainerResult(exitCode: nil, timedOut: false, cancelled: true, stepResult: nil) }
        let image = try await inspect(run.image)
        let key = OCIWarmPool.Key(imageID: image["Id"]?.stringValue ?? run.image, imageUser: run.imageUser, limits: run.limits)
        let warm = await takeWarm(key)
        let id = warm?.id ?? OCIContainerID.make()
        if warm == nil { Self.record(id, in: directory) }
        let step = stepsDirectory + "/" + id
        // Removed after the outcome is on its way; `waitForCleanUps` (at shutdown) waits for it.
        // The next step of this image finds a container started for it (`warm`).
        defer {
            let task = Task.detached { [self] in
                // A warm container its step stopped before saying its action: its input closed
                // and its runc (which may still be making it) ended first, or runc would make
                // the container after the clean-up.
                if let warm, !warm.process.hasExited {
                    warm.release()
                    await self.runc.kill(id: id)
                    _ = await warm.process.wait()
                }
                await self.cleanUp(id)
                _ = self.cleanUps.withLock { $0.removeValue(forKey: id) }
            }
            cleanUps.withLock { $0[id] = task }
            makeWarm(key, image: image, reference: run.image)
        }
        if let warm { return try await runWarm(warm, run, cancellation: cancellation, started: started, output: output) }
        let prepared = try await prepare(image, reference: run.image, imageUser: run.imageUser, limits: run.limits, id: id, step: step, command: ["opschain-action", run.action])
        output(.system, Data(prepared.note.utf8))
        try writeContext(run.stepContext, user: prepared.user, rootfs: step + "/rootfs")
        let runc = runc
        return try await runContainer(run, id: id, step: step, cancellation: cancellation, started: started, output: output) { () throws(StepFailure) in
            do {
                // runc itself is killed a minute past the step's own timeout (which kills the
                // container): no wait without a deadline.
                return try runc.run(id: id, bundle: step, timeout: run.timeout + .seconds(60)) { isError, data in output(isError ? .stderr : .stdout, data) }
            } catch {
                throw StepFailure("cannot start runc: \(error)")
            }
        }
    }

    /// Waits until every finished step's container, mount and directory are gone, and
    /// removes the warm containers.
    public func waitForCleanUps() async {
        for entry in warmPool.close() { discardWarm(entry) }
        while let task = cleanUps.withLock({ $0.values.first }) {
            await task.value
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    func inspect(_ reference: String) async throws(StepFailure) -> JSON {
        do {
            guard let inspected = try await engine.inspectImage(reference) else { throw StepFailure("the step image \(reference) is not on the engine") }
            return inspected
        } catch let error as StepFailure {
            throw error
        } catch {
            throw StepFailure("cannot inspect the step image: \(error)")
        }
    }

    /// A step's file system mounted and its bundle written, ready for `runc run`.
    struct Prepared: Sendable {
        let user: ContainerUser
        /// The `run: as user …` line for the step's log.
        let note: String
    }

    /// Mounts the step's file system over the image's layers and writes its bundle, the
    /// container's process `command` after the image's entrypoint.
    func prepare(
        _ image: JSON, reference: String, imageUser: String, limits: ContainerLimits, id: String, step: String, command: [String]
    ) async throws(StepFailure) -> Prepared {
        let lowers = try await store.layers(of: image, reference: reference)
        let rootfs = step + "/rootfs"
        try store.withSharedLock { () throws(StepFailure) in
            do {
                try FileManager.default.createDirectory(atPath: step, withIntermediateDirectories: true)
                for name in ["upper", "work", "rootfs"] { try FileManager.default.createDirectory(atPath: step + "/" + name, withIntermediateDirectories: false) }
                // The lease: a prune (of any worker sharing the cache) keeps these layers while it exists.
                try Data(lowers.map { (($0 as NSString).deletingLastPathComponent as NSString).lastPathComponent }.joined(separator: "\n").utf8)
                    .write(to: URL(fileURLWithPath: store.leasePath(id)))
            } catch {
                throw StepFailure("cannot prepare the step's directory under \(stepsDirectory): \(error.localizedDescription)")
            }
            for lower in lowers where !FileManager.default.fileExists(atPath: lower) {
                throw StepFailure("a layer of the step image left the layer cache while the step started; run it again")
            }
            let options = "lowerdir=\(lowers.joined(separator: ":")),upperdir=\(step)/upper,workdir=\(step)/work"
            guard options.utf8.count < 4000 else {
                throw StepFailure("the step image has too many layers (\(lowers.count)) for one overlay mount; squash its Dockerfile's steps or run with --runtime docker")
            }
            guard options.withCString({ mount("overlay", rootfs, "overlay", UInt(MS_NODEV), $0) }) == 0 else {
                throw StepFailure("cannot mount the step's file system (overlay): \(String(cString: strerror(errno)))")
            }
        }
        let files = OCIRootFiles(root: rootfs)
        let user: ContainerUser
        let account: OCIAccount
        do {
            let passwd = try files.read("/etc/passwd").map { String(decoding: $0, as: UTF8.self) }
            let group = try files.read("/etc/group").map { String(decoding: $0, as: UTF8.self) }
            user = try ContainerUser.resolve(imageUser, passwd: passwd, group: group)
            account = OCIAccount(user: user, spec: imageUser, passwd: passwd, group: group)
        } catch let error as ContainerUser.Unresolved {
            throw StepFailure("cannot run the step: \(error)")
        } catch {
            throw StepFailure("cannot read the step image's accounts: \(error)")
        }
        let capabilities = user.isRoot ? rootCapabilities : []
        let note =
            "run: as user \(user)\(imageUser.isEmpty ? "" : " (image USER \(imageUser))"), \(user.isRoot ? "capabilities " + rootCapabilities.joined(separator: ", ") : "no capabilities") (oci runtime)\n"
        let hostname = String(id.split(separator: "-").last ?? "step")
        do {
            try files.write("/etc/hostname", Data((hostname + "\n").utf8), owner: .root)
            try files.write("/etc/hosts", Data(Self.hosts(hostname).utf8), owner: .root)
        } catch {
            throw StepFailure("cannot write /etc/hostname and /etc/hosts into the step's file system: \(error)")
        }
        let config = image["Config"]
        let entrypoint = config?["Entrypoint"]?.arrayValue?.compactMap(\.stringValue) ?? []
        var env = ["HOSTNAME=" + hostname] + (config?["Env"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        if !env.contains(where: { $0.hasPrefix("PATH=") }) { env.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") }
        if !env.contains(where: { $0.hasPrefix("HOME=") }) { env.append("HOME=" + account.home) }
        let bundle = OCIBundle(
            args: entrypoint + command, env: env, cwd: DockerContainerRuntime.workDirectory, user: user,
            additionalGids: account.groups, capabilities: capabilities, limits: limits, hostname: hostname, cgroupsPath: OCICgroups.path(id),
            cgroupV2: OCICgroups.isV2, rootPath: rootfs)
        do {
            try Data(bundle.config().serialized().utf8).write(to: URL(fileURLWithPath: step + "/config.json"))
        } catch {
            throw StepFailure("cannot write the step's config.json: \(error.localizedDescription)")
        }
        return Prepared(user: user, note: note)
    }

    /// `step_context.json` into the step's file system, owned by the step's user.
    func writeContext(_ context: Data, user: ContainerUser, rootfs: String) throws(StepFailure) {
        do {
            try OCIRootFiles(root: rootfs).write(DockerContainerRuntime.workDirectory + "/.opschain/step_context.json", context, owner: user, directoryOwner: user)
        } catch {
            throw StepFailure("cannot write step_context.json into the step's file system: \(error)")
        }
    }

    /// Starts the container (`start`, once the step said so), waits for it within the step's
    /// timeout and disk limit, and reads its result.
    func runContainer(
        _ run: ContainerRun, id: String, step: String, cancellation: StepCancellation, started: @escaping @Sendable () async -> Void,
        output: @escaping @Sendable (LogBatch.Stream, Data) -> Void, start: () throws(StepFailure) -> OCIProcess
    ) async throws(StepFailure) -> ContainerResult {
        let runc = runc
        let timedOut = Mutex(false)
        let process = Mutex<OCIProcess?>(nil)
        // Kills the container; before runc has made it, runc itself (what it made goes with
        // the step's clean-up, which deletes the container whatever its state).
        let stop: @Sendable () -> Void = {
            Task { await runc.kill(id: id) }
            if !FileManager.default.fileExists(atPath: step + "/pid"), let pid = process.withLock({ $0?.pid }) { kill(pid, SIGKILL) }
        }
        cancellation.onCancel(stop)
        if cancellation.isCancelled { return ContainerResult(exitCode: nil, timedOut: false, cancelled: true, stepResult: nil) }
        await started()
        // Cancelled as the step said it starts: nothing is started (a `runc kill` now would
        // come before runc made the container, and miss it).
        if cancellation.isCancelled { return ContainerResult(exitCode: nil, timedOut: false, cancelled: true, stepResult: nil) }
        let running = try start()
        process.withLock { $0 = running }
        if cancellation.isCancelled { stop() }
        let timer = Task {
            try await Task.sleep(for: run.timeout)
            timedOut.withLock { $0 = true }
            await runc.kill(id: id)
        }
        let diskExceeded = Mutex(false)
        let limit = run.limits.diskBytes
        let upper = step + "/upper"
        let diskWatch = Task.detached {
            while !Task.isCancelled {
                try await Task.sleep(for: DockerContainerRuntime.diskPollInterval)
                if OCIDiskUsage.bytes(upper, stopAbove: limit) > limit {
                    diskExceeded.withLock { $0 = true }
                    await runc.kill(id: id)
                    return
                }
            }
        }
        let status = await running.wait()
        let exited = ContinuousClock.now
        timer.cancel()
        diskWatch.cancel()
        let containerStarted = FileManager.default.fileExists(atPath: step + "/pid")
        let runcErrors = OCIRunc.errors(inLog: step + "/runc.log")
        guard containerStarted || cancellation.isCancelled else {
            throw StepFailure("runc could not start the step container (exit \(status)): \(runcErrors.last ?? "no message from runc")")
        }
        for message in runcErrors { output(.system, Data("runc: \(message)\n".utf8)) }
        if !diskExceeded.withLock({ $0 }), OCIDiskUsage.bytes(upper, stopAbove: limit) >= limit { diskExceeded.withLock { $0 = true } }
        let outOfMemory = OCICgroups.oomKills(id) > 0
        var stepResult: Data?
        do {
            stepResult = try OCIRootFiles(root: step + "/rootfs").read(DockerContainerRuntime.resultPath)
        } catch {
            throw StepFailure("cannot read step_result.json out of the container: \(error)")
        }
        return ContainerResult(
            exitCode: running.timedOut ? nil : Int(status), timedOut: timedOut.withLock { $0 } || running.timedOut, cancelled: cancellation.isCancelled,
            stepResult: stepResult, outOfMemory: outOfMemory, diskExceeded: diskExceeded.withLock { $0 }, exitedAt: exited)
    }

    static func hosts(_ hostname: String) -> String {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t\(hostname)\n"
    }

    // MARK: Leaving nothing behind

    /// Removes the step's container, cgroup, mount and directory — under this runtime's
    /// directory, or under `directory` (another worker's `<work>/oci`). Errors are logged by
    /// the next reap, which tries again.
    @discardableResult
    func cleanUp(_ id: String, in directory: String? = nil) async -> [String] {
        var problems: [String] = []
        let directory = directory ?? self.directory
        let runc = directory == self.directory ? self.runc : OCIRunc(executable: self.runc.executable, root: directory + "/runc")
        if let problem = await runc.delete(id: id) { problems.append(problem) }
        OCICgroups.remove(id)
        let step = directory + "/steps/" + id
        let rootfs = step + "/rootfs"
        defer { unlink(store.leasePath(id)) }
        if umount2(rootfs, Int32(MNT_DETACH)) != 0 && errno != EINVAL && errno != ENOENT {
            problems.append("cannot unmount \(rootfs): \(String(cString: strerror(errno)))")
        }
        do {
            if FileManager.default.fileExists(atPath: step) { try FileManager.default.removeItem(atPath: step) }
        } catch {
            problems.append("cannot remove \(step): \(error.localizedDescription)")
        }
        return problems
    }

    /// Where this worker process keeps its steps, said in the host's layer cache
    /// (`.worker-<pid>`): a worker started later with another work directory still finds
    /// what this one left if it dies. Written whenever it does not say this worker's
    /// directory: the cache outlives reboots, so a dead worker's file may carry this pid.
    private func register() {
        let path = store.directory + "/.worker-\(getpid())-\(Self.directoryTag(directory))"
        let text = directory + "\n" + Self.processStart
        if let data = FileManager.default.contents(atPath: path), String(decoding: data, as: UTF8.self) == text { return }
        try? FileManager.default.createDirectory(atPath: store.directory, withIntermediateDirectories: true)
        try? Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// A short name for a work directory: a process may run several workers (tests do), each
    /// registered under its own.
    static func directoryTag(_ directory: String) -> String {
        String(SHA256.hash(data: Data(directory.utf8)).hexString.prefix(12))
    }

    /// This process's start (`/proc/self/stat`, in clock ticks since boot) and the boot's id:
    /// with the pid, what tells this process from a dead one whose pid it reuses.
    static let processStart: String = {
        let stat = (try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8)) ?? ""
        let afterName = stat.lastIndex(of: ")").map { stat[stat.index(after: $0)...] } ?? ""
        // Fields from the state (the 3rd) on: the start time is the 22nd.
        let fields = afterName.split(separator: " ")
        let start = fields.count > 19 ? String(fields[19]) : "?"
        let boot = ((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        return "\(boot) \(start)"
    }()

    /// The `<work>/oci` directories of dead workers, by their registration file
    /// (`.worker-<pid>-<directory tag>`: the directory and the process's start). A file with
    /// this process's pid but another start was left by a dead worker whose pid this one
    /// reuses (after a reboot, say); one of this process is a live worker (tests run several).
    private func deadWorkersDirectories(isLiveWorker: @Sendable (pid_t) -> Bool) -> [(registration: String, directory: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: store.directory)) ?? []
        return names.compactMap { name in
            guard name.hasPrefix(".worker-"), let pid = pid_t(name.dropFirst(".worker-".count).prefix { $0 != "-" }) else { return nil }
            let path = store.directory + "/" + name
            let lines = (FileManager.default.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) } ?? "").split(separator: "\n", maxSplits: 1)
            let named = lines.first.map(String.init).flatMap { $0.hasPrefix("/") ? $0 : nil } ?? ""
            if pid == getpid() {
                // A file from before the start was written: it is this worker's if it names its directory.
                guard lines.count == 2 else { return named == directory ? nil : (path, named) }
                return lines[1] == Self.processStart ? nil : (path, named)
            }
            return isLiveWorker(pid) ? nil : (path, named)
        }
    }

    /// The step ids found under a `<work>/oci` directory: runc state, step directories, mounts.
    static func stepIDs(under directory: String) -> Set<String> {
        var ids = Set(((try? FileManager.default.contentsOfDirectory(atPath: directory + "/runc")) ?? []).filter { OCIContainerID.owner($0) != nil })
        ids.formUnion(((try? FileManager.default.contentsOfDirectory(atPath: directory + "/steps")) ?? []).filter { OCIContainerID.owner($0) != nil })
        ids.formUnion(mountedSteps(under: directory + "/steps"))
        return ids
    }

    /// Removes what workers that died on this host left: runc containers, cgroups, mounts and
    /// step directories whose worker process is gone — under this worker's directory and
    /// under those dead workers registered in the layer cache. Also prunes the layer cache
    /// now and then.
    public func reapLeftovers(logger: Logger, isLiveWorker: @Sendable (pid_t) -> Bool) async {
        for dead in deadWorkersDirectories(isLiveWorker: isLiveWorker) {
            var clean = true
            if !dead.directory.isEmpty, dead.directory != directory {
                // Nothing under another worker's directory is this worker's, whatever pid it names.
                for id in Self.stepIDs(under: dead.directory).sorted() {
                    guard let pid = OCIContainerID.owner(id), pid == getpid() || !isLiveWorker(pid) else { continue }
                    logger.warning("removing a step container (oci) left by a dead worker", metadata: ["container": "\(id)", "directory": "\(dead.directory)"])
                    let problems = await cleanUp(id, in: dead.directory)
                    for problem in problems { logger.warning("cannot remove all of a dead worker's step: \(problem)") }
                    clean = clean && problems.isEmpty
                }
            }
            if clean { unlink(dead.registration) }
        }
        register()
        var ids = Self.stepIDs(under: directory)
        ids.formUnion(OCICgroups.all())
        for id in ids.sorted() {
            guard let pid = OCIContainerID.owner(id), pid != getpid(), !isLiveWorker(pid) else { continue }
            logger.warning("removing a step container (oci) left by a dead worker", metadata: ["container": "\(id)"])
            for problem in await cleanUp(id) { logger.warning("cannot remove all of a dead worker's step: \(problem)") }
        }
        let due = lastPrune.withLock { last -> Bool in
            guard last.map({ ContinuousClock.now - $0 > .seconds(60) }) ?? true else { return false }
            last = ContinuousClock.now
            return true
        }
        if due {
            // Leases of steps whose worker is gone hold nothing.
            for id in store.leaseIDs() {
                guard let pid = OCIContainerID.owner(id), pid != getpid(), !isLiveWorker(pid) else { continue }
                unlink(store.leasePath(id))
            }
            let removed = store.prune(idle: layerIdle, leases: store.leasedLayers())
            if removed > 0 { logger.info("layer cache pruned", metadata: ["removed": "\(removed)"]) }
        }
    }

    /// What oci steps left on this host under the worker directory `workDirectory` (its
    /// `oci/runc` state, `oci/steps` directories and their mounts) and host-wide (cgroups and
    /// layer leases) for the step ids `owned` claims: one line each, empty when nothing is left.
    public static func leftovers(workDirectory: String, layerDirectory: String = defaultLayerDirectory, owned: (String) -> Bool) -> [String] {
        let directory = workDirectory + "/oci"
        var left: [String] = []
        for id in stepIDs(under: directory).sorted() where owned(id) {
            if FileManager.default.fileExists(atPath: directory + "/runc/" + id) { left.append("runc state \(directory)/runc/\(id)") }
            if FileManager.default.fileExists(atPath: directory + "/steps/" + id) { left.append("step directory \(directory)/steps/\(id)") }
        }
        left += mountedSteps(under: directory + "/steps").filter(owned).map { "mount \(directory)/steps/\($0)/rootfs" }
        left += OCICgroups.all().filter(owned).sorted().flatMap { OCICgroups.directories($0).map { "cgroup \($0)" } }
        let leases = ((try? FileManager.default.contentsOfDirectory(atPath: layerDirectory)) ?? []).filter { $0.hasPrefix(".lease-") }
        left += leases.filter { owned(String($0.dropFirst(".lease-".count))) }.map { "layer lease \(layerDirectory)/\($0)" }
        return left
    }

    /// The worker process that made the step container `id`, nil for an id not of ours.
    public static func owner(ofStep id: String) -> pid_t? { OCIContainerID.owner(id) }

    /// Step ids whose root file system is still mounted.
    static func mountedSteps(under directory: String) -> [String] {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return table.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4].hasPrefix(directory + "/") else { return nil }
            let rest = fields[4].dropFirst(directory.count + 1)
            return rest.split(separator: "/").first.map(String.init)
        }
    }
}

/// The home and supplementary groups of a step's user, as the engine gives them.
struct OCIAccount {
    var home: String
    var groups: [Int]

    init(user: ContainerUser, spec: String, passwd: String?, group: String?) {
        let lines = (passwd ?? "").split(whereSeparator: \.isNewline).map { $0.split(separator: ":", omittingEmptySubsequences: false) }
        let entry = lines.first { $0.count >= 6 && Int($0[2]) == user.uid }
        home = entry.map { String($0[5]) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let name = entry.map { String($0[0]) }
        var groups: [Int] = []
        if let name, !spec.contains(":") {
            for line in (group ?? "").split(whereSeparator: \.isNewline) {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                guard fields.count >= 4, let id = Int(fields[2]), id != user.gid else { continue }
                if fields[3].split(separator: ",").contains(where: { $0 == name }) { groups.append(id) }
            }
        }
        self.groups = groups
    }
}

/// Bytes written into a step's upper directory.
enum OCIDiskUsage {
    static func bytes(_ path: String, stopAbove limit: Int) -> Int {
        var total = 0
        var pending = [path]
        while let directory = pending.popLast() {
            guard let handle = opendir(directory) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                let child = directory + "/" + name
                var info = stat()
                guard lstat(child, &info) == 0 else { continue }
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    pending.append(child)
                } else {
                    total += Int(info.st_size)
                }
                if total > limit { return total }
            }
        }
        return total
    }
}
