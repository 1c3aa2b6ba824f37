import Foundation
import Testing
@testable import Worker

/// What an oci step may leave behind: nothing — no runc state, cgroup, mount or directory.
enum OCILeftovers {
    static func expectNone(in workDirectory: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let directory = workDirectory + "/oci"
        for id in OCIContainerRuntime.idsUsed(in: directory) + OCIContainerRuntime.warmIDsUsed(in: directory) {
            #expect(OCICgroups.directories(id).isEmpty, "the cgroup of \(id) is left", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: directory + "/runc/" + id), "the runc state of \(id) is left", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: directory + "/steps/" + id), "the directory of \(id) is left", sourceLocation: sourceLocation)
            #expect(
                !FileManager.default.fileExists(atPath: OCIContainerRuntime.defaultLayerDirectory + "/.lease-" + id), "the layer lease of \(id) is left",
                sourceLocation: sourceLocation)
        }
        #expect(OCIContainerRuntime.mountedSteps(under: directory + "/steps").isEmpty, "a step's mount is left", sourceLocation: sourceLocation)
    }
}
