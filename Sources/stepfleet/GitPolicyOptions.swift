import ArgumentParser
import Foundation
import HostCommand

/// `--git-local-roots` and `--git-allow-loopback`: which git remotes projects may name. The
/// dispatcher and every worker take the same flags (a worker mirrors what the dispatcher let in).
struct GitPolicyOptions: ParsableArguments {
    @Option(help: "Folders under which local git repositories (plain paths, file://) may be used, comma-separated (env STEPFLEET_GIT_LOCAL_ROOTS); default: none.")
    var gitLocalRoots: String?
    @Flag(help: "Allow http(s)/git/ssh remotes on loopback, link-local or unspecified addresses (localhost, 127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10, 0.0.0.0).")
    var gitAllowLoopback = false

    /// The policy from these options, the environment or the --config file (`Settings`).
    func policy(_ settings: inout Settings) throws -> GitRemotePolicy {
        let roots = try settings.string("git-local-roots", gitLocalRoots, default: "") { roots in
            GitRemotePolicy.roots(roots).first { !$0.hasPrefix("/") }.map { "absolute paths (\"\($0)\" is not)" }
        }
        return GitRemotePolicy(localRoots: GitRemotePolicy.roots(roots), allowLoopback: try settings.bool("git-allow-loopback", gitAllowLoopback))
    }
}
