import Foundation
import Protocol
import Testing
@testable import Worker

/// The cgroup paths, files and limits of a step on cgroup v2 and v1, on file trees made to look
/// like each (this machine is v1: the v2 path is checked here, not run on a v2 host).
@Suite(.timeLimit(.minutes(1))) struct OCICgroupTests {
    static func tree(_ files: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString.prefix(8))").path
        for (path, contents) in files {
            let file = root + "/" + path
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        }
        return root
    }

    @Test func v2OneUnifiedTree() throws {
        let id = "sf4242-0a1b2c3d"
        let root = try Self.tree([
            "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
            "stepfleet/\(id)/memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n",
            "stepfleet/not-a-step/memory.events": "oom_kill 9\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let host = OCICgroupHost(root: root)
        #expect(host.isV2)
        #expect(host.directories(id) == ["\(root)/stepfleet/\(id)"])
        #expect(host.all() == [id], "only step ids, by their owner pid")
        #expect(host.oomFile(id) == "\(root)/stepfleet/\(id)/memory.events")
        #expect(host.oomKills(id) == 2)
        #expect(host.oomKills("sf4242-gone") == 0)
        #expect(host.missingControllers().isEmpty)
        let partial = try Self.tree(["cgroup.controllers": "cpuset io memory\n"])
        defer { try? FileManager.default.removeItem(atPath: partial) }
        #expect(OCICgroupHost(root: partial).missingControllers() == ["cpu", "pids"])
    }

    @Test func v1ATreePerController() throws {
        let id = "sf77-deadbeef"
        let root = try Self.tree([
            "memory/stepfleet/\(id)/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            "pids/stepfleet/\(id)/pids.max": "256\n",
            "pids/stepfleet/sf78-cafe0000/pids.max": "256\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let host = OCICgroupHost(root: root)
        #expect(!host.isV2)
        #expect(host.directories(id) == ["\(root)/memory/stepfleet/\(id)", "\(root)/pids/stepfleet/\(id)"])
        #expect(host.all() == [id, "sf78-cafe0000"])
        #expect(host.oomFile(id) == "\(root)/memory/stepfleet/\(id)/memory.oom_control")
        #expect(host.oomKills(id) == 1)
        #expect(host.missingControllers() == ["cpu"])
    }

    /// runc writes the limits from the bundle: memory.max, memory.swap.max (swap = limit: none
    /// beyond it), cpu.max and pids.max on v2; the step also gets a cgroup namespace there.
    @Test(arguments: [true, false]) func theBundleCarriesTheLimitsOnBothVersions(v2: Bool) {
        let bundle = OCIBundle(
            args: ["opschain-action", "noop"], env: ["PATH=/bin"], cwd: "/opt/opschain", user: ContainerUser(uid: 1000, gid: 1000), capabilities: [],
            limits: ContainerLimits(memoryBytes: 256 << 20, pids: 128, cpus: 1.5, diskBytes: 1 << 30), hostname: "h", cgroupsPath: OCICgroups.path("sf1-a"),
            cgroupV2: v2)
        let config = bundle.config()
        #expect(config["linux"]?["cgroupsPath"] == "/stepfleet/sf1-a")
        let resources = config["linux"]?["resources"]
        #expect(resources?["memory"]?["limit"]?.intValue == 256 << 20)
        #expect(resources?["memory"]?["swap"]?.intValue == 256 << 20)
        #expect(resources?["cpu"]?["quota"]?.intValue == 150_000)
        #expect(resources?["cpu"]?["period"]?.intValue == 100_000)
        #expect(resources?["pids"]?["limit"]?.intValue == 128)
        #expect(config["linux"]?["namespaces"]?.arrayValue?.contains(["type": "cgroup"]) == v2)
    }
}
