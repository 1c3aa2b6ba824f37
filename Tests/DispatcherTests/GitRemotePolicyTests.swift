import Foundation
import HostCommand
import Testing

/// The remote policy as a pure value: what it lets through and what it refuses, and why.
@Suite(.timeLimit(.minutes(1))) struct GitRemotePolicyTests {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("policy-root-\(UUID().uuidString.prefix(6))").path

    var policy: GitRemotePolicy { GitRemotePolicy(localRoots: [root]) }

    @Test func optionsAndRemoteHelpersAreRefused() {
        for remote in ["--upload-pack=id >&2; env >&2; :", "-u touch /tmp/x", "--config=core.sshCommand=touch /tmp/x"] {
            #expect(policy.refusal(remote)?.contains("starts with '-'") == true, "\(remote)")
        }
        for remote in ["ext::sh -c touch% /tmp/x", "fd::3", "http::https://example.com/r.git", "EXT::sh"] {
            #expect(policy.refusal(remote)?.contains("remote helper") == true, "\(remote)")
        }
        for remote in ["ftp://example.com/r.git", "gopher://example.com/r", "rsync://example.com/r"] {
            #expect(policy.refusal(remote)?.contains("transport") == true, "\(remote)")
        }
        #expect(policy.refusal("")?.contains("empty") == true)
        #expect(policy.refusal("https://example.com/r.git\n--upload-pack=x")?.contains("control character") == true)
    }

    @Test func localRepositoriesOnlyUnderTheConfiguredRoots() throws {
        try FileManager.default.createDirectory(atPath: root + "/repo", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(policy.refusal(root + "/repo") == nil)
        #expect(policy.refusal("file://" + root + "/repo") == nil)
        #expect(policy.refusal(root + "/not-yet-there") == nil)
        #expect(policy.refusal(root) == nil)
        for outside in ["/etc", "/work/main", root + "/../elsewhere", root + "-sibling/repo", "file:///etc", "file://other-host/" + root + "/repo"] {
            #expect(policy.refusal(outside) != nil, "\(outside)")
        }
        #expect(policy.refusal("relative/repo")?.contains("relative path") == true)
        // A symbolic link inside a root that points out of it does not count as inside.
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: "/etc")
        #expect(policy.refusal(root + "/escape")?.contains("outside the configured roots") == true)
        // No roots configured: no local repository at all.
        #expect(GitRemotePolicy().refusal(root + "/repo")?.contains("no local roots are configured") == true)
    }

    @Test func loopbackLinkLocalAndUnspecifiedHostsAreRefusedUnlessAllowed() {
        let refused = [
            "http://127.0.0.1:8080/projects", "https://localhost/r.git", "http://LOCALHOST./r", "git://127.1/r", "http://2130706433/r",
            "http://0x7f000001/r", "http://[::1]:8080/r", "http://[::]/r", "http://0.0.0.0:8080/r", "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1%25eth0]/r", "http://[::ffff:127.0.0.1]/r", "ssh://git@127.0.0.1/r.git", "git@localhost:r.git", "root@127.0.0.2:r.git",
            "http://user:pass@127.0.0.1/r", "http://api.localhost/r",
        ]
        for remote in refused {
            #expect(policy.refusal(remote)?.contains("loopback") == true, "\(remote)")
            #expect(GitRemotePolicy(allowLoopback: true).refusal(remote) == nil, "\(remote)")
        }
        for remote in ["https://github.com/org/repo.git", "ssh://git@example.com/r.git", "git@example.com:org/r.git", "http://10.1.2.3/r", "git://[2001:db8::1]/r"] {
            #expect(policy.refusal(remote) == nil, "\(remote)")
        }
        #expect(policy.refusal("ssh://-oProxyCommand=touch%20x/r")?.contains("starting with '-'") == true)
    }
}
