import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Which git remotes the fleet may read: the same value in the dispatcher (`POST /projects`,
/// `git ls-remote`) and in every worker (mirrors), built from each one's flags
/// (`--git-local-roots`, `--git-allow-loopback`).
///
/// - a remote starting with `-` would be an option of git: refused;
/// - remote helpers (`ext::`, `fd::`, any `<transport>::`) and transports other than http(s),
///   git, ssh and file: refused;
/// - local repositories (plain absolute paths, `file://`) only under `localRoots` (symbolic
///   links resolved); none by default;
/// - http(s), git and ssh remotes whose host is a loopback, link-local or unspecified address
///   (or `localhost`): refused unless `allowLoopback`, so a project cannot make the dispatcher
///   or a worker talk to services on its own host.
public struct GitRemotePolicy: Sendable, Equatable {
    /// Folders under which local repositories may be read (absolute paths).
    public var localRoots: [String]
    /// Whether http(s)/git/ssh remotes on loopback, link-local or unspecified addresses are allowed.
    public var allowLoopback: Bool

    public init(localRoots: [String] = [], allowLoopback: Bool = false) {
        self.localRoots = localRoots
        self.allowLoopback = allowLoopback
    }

    /// `DIR[,DIR]` as given on a command line (empty entries ignored).
    public static func roots(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Why `remote` may not be read, in one line; nil when it may.
    public func refusal(_ remote: String) -> String? {
        let shown = remote.count > 200 ? String(remote.prefix(200)) + "…" : remote
        if remote.isEmpty { return "the git remote is empty" }
        if remote.hasPrefix("-") { return "git remote \"\(shown)\" starts with '-' (it would be read as an option of git)" }
        if remote.contains(where: { $0.isNewline || $0 == "\0" }) { return "git remote \"\(shown.debugDescription)\" holds a control character" }
        if let helper = Self.remoteHelper(remote) {
            return "git remote \"\(shown)\" names the remote helper \"\(helper)::\"; only http(s)://, git://, ssh:// and local repositories under the configured roots are allowed"
        }
        switch Self.classify(remote) {
        case .url(let scheme, let rest):
            switch scheme {
            case "file":
                let path = Self.fileURLPath(rest)
                guard let path else { return "git remote \"\(shown)\" is a file:// URL without an absolute path" }
                return localRefusal(path, shown)
            case "http", "https", "git", "ssh", "git+ssh", "ssh+git":
                return hostRefusal(Self.urlHost(rest), shown)
            default:
                return "git remote \"\(shown)\" uses the transport \"\(scheme)\"; only http(s)://, git://, ssh:// and local repositories under the configured roots are allowed"
            }
        case .scp(let host):
            return hostRefusal(host, shown)
        case .local(let path):
            guard path.hasPrefix("/") else { return "git remote \"\(shown)\" is a relative path; give an absolute path under a configured root or a URL" }
            return localRefusal(path, shown)
        }
    }

    // MARK: Local repositories

    private func localRefusal(_ path: String, _ shown: String) -> String? {
        let roots = localRoots.map(Self.resolved)
        guard !roots.isEmpty else {
            return "git remote \"\(shown)\" is on this host's file system, and no local roots are configured (--git-local-roots)"
        }
        let target = Self.resolved(path)
        for root in roots where target == root || target.hasPrefix(root.hasSuffix("/") ? root : root + "/") { return nil }
        return "git remote \"\(shown)\" is on this host's file system outside the configured roots (\(localRoots.joined(separator: ", ")))"
    }

    /// The path with `.`/`..` and symbolic links resolved as far as it exists.
    static func resolved(_ path: String) -> String {
        let standard = (path as NSString).standardizingPath
        if let real = realpath(standard, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        // Not there (yet): resolve the longest existing parent so a link above it counts.
        let parent = (standard as NSString).deletingLastPathComponent
        guard !parent.isEmpty, parent != standard else { return standard }
        return (resolved(parent) as NSString).appendingPathComponent((standard as NSString).lastPathComponent)
    }

    // MARK: Hosts

    private func hostRefusal(_ host: String?, _ shown: String) -> String? {
        guard let host, !host.isEmpty else { return "git remote \"\(shown)\" names no host" }
        if host.hasPrefix("-") { return "git remote \"\(shown)\" has a host starting with '-'" }
        if !allowLoopback, Self.isLocalHost(host) {
            return "git remote \"\(shown)\" points at a loopback, link-local or unspecified address (\(host)); allow it with --git-allow-loopback"
        }
        return nil
    }

    /// `localhost` (and `*.localhost`), and IP literals in 127.0.0.0/8, 0.0.0.0/8, 169.254.0.0/16,
    /// ::1, ::, fe80::/10 (IPv4-mapped forms too). IPv4 is read as the C library reads it, so
    /// `127.1`, `0x7f000001` and `2130706433` count.
    public static func isLocalHost(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if let percent = name.firstIndex(of: "%") { name = String(name[..<percent]) }
        while name.hasSuffix(".") { name.removeLast() }
        if name == "localhost" || name.hasSuffix(".localhost") || name.isEmpty { return true }
        var v4 = in_addr()
        if inet_aton(name, &v4) != 0 { return isLocal(ipv4: UInt32(bigEndian: v4.s_addr)) }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            if bytes.allSatisfy({ $0 == 0 }) { return true }
            if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
            if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { return true }
            // ::ffff:a.b.c.d and ::a.b.c.d
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && ((bytes[10] == 0xff && bytes[11] == 0xff) || (bytes[10] == 0 && bytes[11] == 0)) {
                let v4 = bytes[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                return isLocal(ipv4: v4)
            }
        }
        return false
    }

    private static func isLocal(ipv4 address: UInt32) -> Bool {
        let first = address >> 24
        return first == 127 || first == 0 || address >> 16 == 0xA9FE
    }

    // MARK: Reading a remote as git does

    private enum Kind {
        case url(scheme: String, rest: String)
        case scp(host: String)
        case local(path: String)
    }

    /// `<transport>::<address>`: git hands such remotes to `git-remote-<transport>`.
    private static func remoteHelper(_ remote: String) -> String? {
        guard let range = remote.range(of: "::") else { return nil }
        let prefix = remote[..<range.lowerBound]
        guard let first = prefix.first, first.isLetter,
            prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+.-".contains($0)) })
        else { return nil }
        return String(prefix)
    }

    /// git's own rule: `scheme://…` is a URL; otherwise a ':' before any '/' makes
    /// `[user@]host:path` (ssh); anything else is a local path.
    private static func classify(_ remote: String) -> Kind {
        if let range = remote.range(of: "://") {
            let scheme = remote[..<range.lowerBound]
            if let first = scheme.first, first.isLetter, scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+.-".contains($0)) }) {
                return .url(scheme: scheme.lowercased(), rest: String(remote[range.upperBound...]))
            }
        }
        if let colon = remote.firstIndex(of: ":"), !remote[..<colon].contains("/") {
            var host = String(remote[..<colon])
            if let at = host.lastIndex(of: "@") { host = String(host[host.index(after: at)...]) }
            if host.hasPrefix("[") {
                // [host]:path or [user@host:port]:path
                let inner = remote.dropFirst().prefix { $0 != "]" }
                host = String(inner.split(separator: "@").last ?? "")
                if host.contains("."), let port = host.lastIndex(of: ":") { host = String(host[..<port]) }
            }
            return .scp(host: host)
        }
        return .local(path: remote)
    }

    /// The host of `[user[:password]@]host[:port][/path]`.
    private static func urlHost(_ rest: String) -> String? {
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var hostPort = Substring(authority)
        if let at = hostPort.lastIndex(of: "@") { hostPort = hostPort[hostPort.index(after: at)...] }
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { return nil }
            return String(hostPort[...close])
        }
        if let colon = hostPort.firstIndex(of: ":") { hostPort = hostPort[..<colon] }
        return (String(hostPort).removingPercentEncoding ?? String(hostPort))
    }

    /// The path of `file://[host]/path` (the host, if any, must be empty or localhost).
    private static func fileURLPath(_ rest: String) -> String? {
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let host = rest[..<slash].lowercased()
        guard host.isEmpty || host == "localhost" else { return nil }
        let path = String(rest[slash...])
        return path.removingPercentEncoding ?? path
    }
}
