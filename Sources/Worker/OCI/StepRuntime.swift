import Foundation

/// What runs a worker's step containers.
public enum StepRuntime: String, Sendable, CaseIterable {
    /// The Docker engine: a container per step through its API.
    case docker
    /// `runc` on the step image's layers (`OCIContainerRuntime`); Docker still builds images.
    case oci

    /// `docker`, `oci` or `auto`: `oci` when runc works on this host (root, runc answering,
    /// overlayfs, a memory cgroup) — the engine is always local, on its unix socket — else
    /// `docker`. Returns the runtime and, for `auto`, why; throws the refusal when `oci` was
    /// asked for and cannot run here.
    public static func choose(_ requested: String) async throws(StepRuntimeRefusal) -> (StepRuntime, String) {
        switch requested {
        case "docker":
            return (.docker, "asked for")
        case "oci":
            if let refusal = await OCIRunc.refusal(executable: OCIRunc.locate()) { throw StepRuntimeRefusal(description: "--runtime oci: \(refusal)") }
            return (.oci, "asked for")
        case "auto":
            if let refusal = await OCIRunc.refusal(executable: OCIRunc.locate()) { return (.docker, "auto: \(refusal)") }
            return (.oci, "auto: runc works here and the engine, so every step image, is on this host")
        default:
            throw StepRuntimeRefusal(description: "--runtime must be docker, oci or auto, not \(requested.prefix(40))")
        }
    }
}

public struct StepRuntimeRefusal: Error, Sendable, CustomStringConvertible {
    public let description: String
}
