/// Who a step container runs as: the image's `USER`, resolved to numbers the way the engine
/// resolves it (against the image's own `/etc/passwd` and `/etc/group`).
public struct ContainerUser: Sendable, Hashable, CustomStringConvertible {
    public var uid: Int
    public var gid: Int

    public static let root = ContainerUser(uid: 0, gid: 0)

    public var isRoot: Bool { uid == 0 }

    public var description: String { "\(uid):\(gid)" }

    /// A `USER` that cannot be resolved in the image.
    public struct Unresolved: Error, Sendable, Equatable, CustomStringConvertible {
        public let spec: String
        public let reason: String
        public var description: String { "the image's USER \"\(spec)\" \(reason)" }
    }

    /// True when `spec` (`user[:group]`) names root, judged from the text alone: the empty
    /// spec, `root` and `0`. Used to choose capabilities before the container exists.
    public static func namesRoot(_ spec: String) -> Bool {
        let user = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return user.isEmpty || user == "root" || user == "0"
    }

    /// True when `spec` resolves without the image's account files (`N:M`, or empty).
    public static func isNumeric(_ spec: String) -> Bool {
        if spec.isEmpty { return true }
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { Int($0) != nil }
    }

    /// Resolves `user[:group]` with the image's `passwd` and `group` file contents (nil when
    /// the image has none). A numeric user missing from passwd is allowed (group 0 unless
    /// given), as the engine allows it; a name must be there.
    public static func resolve(_ spec: String, passwd: String?, group: String?) throws(Unresolved) -> ContainerUser {
        if spec.isEmpty { return .root }
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let userPart = parts[0]
        let account = accounts(passwd).first { $0.name == userPart || (Int(userPart) != nil && $0.id == Int(userPart)) }
        let uid: Int
        if let number = Int(userPart), number >= 0 {
            uid = number
        } else if let account {
            uid = account.id
        } else {
            throw Unresolved(spec: spec, reason: passwd == nil ? "names a user but the image has no /etc/passwd" : "is not a user in the image's /etc/passwd")
        }
        guard parts.count == 2 else { return ContainerUser(uid: uid, gid: account?.groupID ?? 0) }
        let groupPart = parts[1]
        if let number = Int(groupPart), number >= 0 { return ContainerUser(uid: uid, gid: number) }
        guard let entry = accounts(group).first(where: { $0.name == groupPart }) else {
            throw Unresolved(spec: spec, reason: "names a group that is not in the image's /etc/group")
        }
        return ContainerUser(uid: uid, gid: entry.id)
    }

    /// `name:x:id:group-id:…` lines of passwd or group; for group files `groupID` is unused.
    private static func accounts(_ file: String?) -> [(name: String, id: Int, groupID: Int?)] {
        guard let file else { return [] }
        return file.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, !line.hasPrefix("#"), let id = Int(fields[2]) else { return nil }
            return (String(fields[0]), id, fields.count >= 4 ? Int(fields[3]) : nil)
        }
    }
}
