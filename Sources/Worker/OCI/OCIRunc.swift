import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `runc` as the worker uses it: a state directory of its own (`--root`), a deadline on every
/// call, and container ids the worker makes (`sf<worker pid>-<random>`); no user value ever
/// reaches its command line.
struct OCIRunc: Sendable {
    let executable: String
    let root: String
    /// For every call but `run` (which lasts as long as the step).
    static let commandTimeout = Duration.seconds(20)

    /// `runc` on the PATH of a root process, nil when there is none.
    static func locate() -> String? {
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = directory + "/runc"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// Why this host cannot run steps with runc, nil when it can: root, runc answering,
    /// overlayfs and a memory cgroup.
    static func refusal(executable: String?) async -> String? {
        guard getuid() == 0 else { return "the oci runtime needs root (it mounts each step's file system); run the worker as root or with --runtime docker" }
        guard let executable else { return "runc is not installed (Debian: apt-get install runc, which docker.io brings); or run the worker with --runtime docker" }
        do {
            let version = try await OCIProcess.run(executable, ["--version"], timeout: .seconds(10))
            guard version.status == 0, version.output.hasPrefix("runc version") else {
                return "\(executable) --version failed (exit \(version.status)\(version.timedOut ? ", no answer within 10 s" : "")): \(version.error.prefix(200))"
            }
        } catch {
            return "cannot run \(executable): \(error)"
        }
        let filesystems = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
        guard filesystems.contains("\toverlay\n") else { return "this kernel has no overlay file system (modprobe overlay); or run the worker with --runtime docker" }
        let missing = OCICgroups.host.missingControllers()
        guard missing.isEmpty else {
            return "this host's cgroups (\(OCICgroups.isV2 ? "v2" : "v1") at /sys/fs/cgroup) offer no \(missing.joined(separator: ", ")) controller, which step limits need; or run the worker with --runtime docker"
        }
        return nil
    }

    private var base: [String] { ["--root", root] }

    /// Starts `runc run` of the bundle; the container's standard output and error come to
    /// `output`. `--keep` leaves the stopped container (and its cgroup, for the out-of-memory
    /// count) until `delete`.
    func run(id: String, bundle: String, timeout: Duration, input: Int32? = nil, output: @escaping @Sendable (Bool, Data) -> Void) throws(OCIProcess.SpawnFailure) -> OCIProcess {
        try OCIProcess(
            executable,
            base + ["--log", bundle + "/runc.log", "--log-format", "json", "run", "--keep", "--bundle", bundle, "--pid-file", bundle + "/pid", "--", id],
            timeout: timeout, input: input, output: output)
    }

    /// Kills every process of the container (its cgroup).
    func kill(id: String) async {
        _ = try? await OCIProcess.run(executable, base + ["kill", "--all", "--", id, "KILL"], timeout: Self.commandTimeout)
    }

    /// Removes the container, killing it first if it runs; a missing one is fine.
    func delete(id: String) async -> String? {
        do {
            let result = try await OCIProcess.run(executable, base + ["delete", "--force", "--", id], timeout: Self.commandTimeout)
            if result.status == 0 || result.error.contains("does not exist") || result.error.contains("not exist") { return nil }
            return "runc delete \(id) failed (exit \(result.status)\(result.timedOut ? ", timed out" : "")): \(result.error.prefix(300))"
        } catch {
            return "\(error)"
        }
    }

    /// Ids of the containers in this state directory.
    func containers() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { OCIContainerID.owner($0) != nil }
    }

    /// runc's own error messages from its JSON log.
    static func errors(inLog path: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return String(decoding: data.prefix(1 << 20), as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], entry["level"] as? String == "error" else { return nil }
            return entry["msg"] as? String
        }
    }
}

/// Container ids: `sf<worker pid>-<random>`, so a worker can tell which dead worker left one.
enum OCIContainerID {
    static func make() -> String { "sf\(getpid())-\(UUID().uuidString.prefix(8).lowercased())" }

    static func owner(_ id: String) -> pid_t? {
        guard id.hasPrefix("sf"), let dash = id.firstIndex(of: "-") else { return nil }
        return pid_t(id[id.index(id.startIndex, offsetBy: 2)..<dash])
    }
}

/// Where a step's cgroup is: `/stepfleet/<id>` under each v1 controller, or under the v2
/// root — on this host (`/sys/fs/cgroup`).
enum OCICgroups {
    static let parent = "stepfleet"
    static let host = OCICgroupHost()

    static var isV2: Bool { host.isV2 }

    static func path(_ id: String) -> String { "/\(parent)/\(id)" }

    static func directories(_ id: String) -> [String] { host.directories(id) }

    static func all() -> Set<String> { host.all() }

    static func oomKills(_ id: String) -> Int { host.oomKills(id) }

    static func remove(_ id: String) { host.remove(id) }
}

/// The cgroup file system under `root`: v2 (one unified tree, `cgroup.controllers` at its
/// root) or v1 (a tree per controller). Every path of a step's cgroup comes from here.
struct OCICgroupHost: Sendable {
    var root = "/sys/fs/cgroup"
    /// The controllers a step's limits need: memory, CPU and pids.
    static let controllers = ["memory", "cpu", "pids"]

    var isV2: Bool { FileManager.default.fileExists(atPath: root + "/cgroup.controllers") }

    /// The step's cgroup directories that exist.
    func directories(_ id: String) -> [String] {
        if isV2 { return ["\(root)/\(OCICgroups.parent)/\(id)"].filter { FileManager.default.fileExists(atPath: $0) } }
        let controllers = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return controllers.sorted().map { "\(root)/\($0)/\(OCICgroups.parent)/\(id)" }.filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// Ids of the step cgroups on the host.
    func all() -> Set<String> {
        let parents = isV2 ? ["\(root)/\(OCICgroups.parent)"] : ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).map { "\(root)/\($0)/\(OCICgroups.parent)" }
        return Set(parents.flatMap { (try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? [] }.filter { OCIContainerID.owner($0) != nil })
    }

    /// The file that counts the step's out-of-memory kills: `memory.events` (v2) or
    /// `memory.oom_control` (v1), each with an `oom_kill N` line.
    func oomFile(_ id: String) -> String {
        isV2 ? "\(root)/\(OCICgroups.parent)/\(id)/memory.events" : "\(root)/memory/\(OCICgroups.parent)/\(id)/memory.oom_control"
    }

    /// How many times the kernel killed a process of the step for memory.
    func oomKills(_ id: String) -> Int {
        guard let text = try? String(contentsOfFile: oomFile(id), encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.dropFirst("oom_kill ".count)) ?? 0
        }
        return 0
    }

    /// The controllers of `controllers` this host does not offer: v2 lists them in the root's
    /// `cgroup.controllers`, v1 mounts a directory for each.
    func missingControllers() -> [String] {
        if isV2 {
            let offered = ((try? String(contentsOfFile: root + "/cgroup.controllers", encoding: .utf8)) ?? "").split(whereSeparator: \.isWhitespace).map(String.init)
            return Self.controllers.filter { !offered.contains($0) }
        }
        return Self.controllers.filter { !FileManager.default.fileExists(atPath: root + "/" + $0) }
    }

    /// Kills what is left in the step's cgroups and removes them.
    func remove(_ id: String) {
        for directory in directories(id) {
            if let procs = try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8) {
                for pid in procs.split(separator: "\n").compactMap({ pid_t($0) }) { Glibc.kill(pid, SIGKILL) }
            }
            // A killed process leaves its cgroup a moment later.
            for _ in 0..<50 {
                if rmdir(directory) == 0 || errno == ENOENT { break }
                usleep(20_000)
            }
        }
    }
}
