import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Files of a step's root file system, read and written by the worker (as root, on the host)
/// without following a symbolic link anywhere on the way: the image and the step are
/// hostile, and a `/etc/passwd` or `step_result.json` that is a link to a host file must not
/// reach it.
struct OCIRootFiles {
    let root: String

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The regular file at `path` (absolute in the root), nil when there is none; refused when
    /// it is anything else or larger than `limit`.
    func read(_ path: String, limit: Int = 16 << 20) throws(Failure) -> Data? {
        let parts = path.split(separator: "/").map(String.init)
        guard let name = parts.last else { return nil }
        guard let directory = try openDirectory(parts.dropLast(), create: nil) else { return nil }
        defer { close(directory) }
        let descriptor = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw Failure(description: "\(path) cannot be opened (\(String(cString: strerror(errno)))): it must be a regular file")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw Failure(description: "\(path) is not a regular file") }
        guard Int(info.st_size) <= limit else { throw Failure(description: "\(path) is larger than \(limit >> 20) MiB") }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while data.count <= limit {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            data.append(contentsOf: buffer[0..<count])
        }
        guard data.count <= limit else { throw Failure(description: "\(path) is larger than \(limit >> 20) MiB") }
        return data
    }

    /// Writes `contents` at `path`, creating missing directories owned by `owner`; the file
    /// is owned by `owner` with `mode`. Whatever was at `path` is replaced.
    func write(_ path: String, _ contents: Data, mode: mode_t = 0o644, owner: ContainerUser, directoryOwner: ContainerUser? = nil) throws(Failure) {
        let parts = path.split(separator: "/").map(String.init)
        guard let name = parts.last, let directory = try openDirectory(parts.dropLast(), create: directoryOwner ?? owner) else {
            throw Failure(description: "cannot write \(path)")
        }
        defer { close(directory) }
        if let directoryOwner { _ = fchown(directory, uid_t(directoryOwner.uid), gid_t(directoryOwner.gid)) }
        unlinkat(directory, name, 0)
        let descriptor = openat(directory, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let written = contents.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        guard written == contents.count else { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
        guard fchown(descriptor, uid_t(owner.uid), gid_t(owner.gid)) == 0, fchmod(descriptor, mode) == 0 else {
            throw Failure(description: "cannot own \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Opens the directory `parts` below the root, each step without following a link;
    /// creates missing ones owned by `create` (nil: a missing one gives nil).
    private func openDirectory(_ parts: ArraySlice<String>, create: ContainerUser?) throws(Failure) -> Int32? {
        var current = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard current >= 0 else { throw Failure(description: "cannot open the step's root file system: \(String(cString: strerror(errno)))") }
        for part in parts where part != "." {
            guard part != ".." else {
                close(current)
                throw Failure(description: "a path with .. in it")
            }
            var next = openat(current, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT, let owner = create {
                if mkdirat(current, part, 0o755) == 0 || errno == EEXIST {
                    next = openat(current, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if next >= 0 { _ = fchown(next, uid_t(owner.uid), gid_t(owner.gid)) }
                }
            }
            let code = errno
            close(current)
            guard next >= 0 else {
                if code == ENOENT && create == nil { return nil }
                throw Failure(description: "/\(parts.joined(separator: "/")) is not a directory of the image (\(String(cString: strerror(code))))")
            }
            current = next
        }
        return current
    }
}
