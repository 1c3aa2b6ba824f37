import ArgumentParser
import Foundation
import HostCommand

/// `--git-local-roots` and `--git-allow-loopback`: which git remotes projects may name. The
/// dispatcher and every worker take the same flags (a worker mirrors what the dispatcher let in).
struct GitPolicyOptions: ParsableArguments {
    @Option(help: "Folders under which local git repositories (plain paths, file://) may be used, comma-separated (env STEPFLEET_GIT_LOCAL_ROOTS); default: none.")
    var gitLocalRoots = ProcessInfo.processInfo.environment["STEPFLEET_GIT_LOCAL_ROOTS"] ?? ""
    @Flag(help: "Allow http(s)/git/ssh remotes on loopback, link-local or unspecified addresses (localhost, 127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10, 0.0.0.0).")
    var gitAllowLoopback = false

    func validate() throws {
        for root in GitRemotePolicy.roots(gitLocalRoots) where !root.hasPrefix("/") {
            throw ValidationError("--git-local-roots: \"\(root)\" is not an absolute path")
        }
    }

    var policy: GitRemotePolicy {
        GitRemotePolicy(localRoots: GitRemotePolicy.roots(gitLocalRoots), allowLoopback: gitAllowLoopback)
    }
}
