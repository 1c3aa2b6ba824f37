import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Unpacks one image layer (an uncompressed tar, read from a region of a file) into an empty
/// directory, as an overlay lower directory: whiteouts become what overlayfs reads (`.wh.name`
/// a 0:0 character device, `.wh..wh..opq` the `trusted.overlay.opaque` attribute of its
/// directory). Hostile entries are refused, the whole layer with them: absolute names, `..`,
/// a name or hard link that goes through a symbolic link, overlay attributes set by the layer.
struct OCILayerUnpacker {
    let source: Int32
    let offset: Int64
    let size: Int64
    let destination: String

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Files written, for the log.
    private(set) var entries = 0

    private var position: Int64 = 0

    init(source: Int32, offset: Int64, size: Int64, destination: String) {
        self.source = source
        self.offset = offset
        self.size = size
        self.destination = destination
    }

    mutating func unpack() throws(Failure) {
        var longName: String?
        var longLink: String?
        var pax: [String: String] = [:]
        while position + 512 <= size {
            let header = try read(512)
            if header.allSatisfy({ $0 == 0 }) { return }
            guard Self.checksumMatches(header) else { throw Failure(description: "a tar header at byte \(position - 512) has a bad checksum") }
            guard let entrySize = Self.number(header[124..<136]), entrySize >= 0 else {
                throw Failure(description: "a tar header at byte \(position - 512) has a corrupt size field")
            }
            let type = header[156]
            var name = longName ?? pax["path"] ?? {
                let prefix = Self.cString(header[345..<500])
                let base = Self.cString(header[0..<100])
                return prefix.isEmpty ? base : prefix + "/" + base
            }()
            let link = longLink ?? pax["linkpath"] ?? Self.cString(header[157..<257])
            let size = pax["size"].flatMap(Int64.init) ?? entrySize
            switch type {
            case UInt8(ascii: "L"):
                longName = Self.cString(try read(size)[...])
                try skipPadding(size)
                continue
            case UInt8(ascii: "K"):
                longLink = Self.cString(try read(size)[...])
                try skipPadding(size)
                continue
            case UInt8(ascii: "x"):
                pax = Self.paxRecords(try read(size))
                try skipPadding(size)
                continue
            case UInt8(ascii: "g"):
                _ = try read(size)
                try skipPadding(size)
                continue
            default:
                break
            }
            let xattrs = pax.filter { $0.key.hasPrefix("SCHILY.xattr.") }
            longName = nil
            longLink = nil
            pax = [:]
            if name.hasPrefix("./") { name.removeFirst(2) }
            while name.hasSuffix("/") { name.removeLast() }
            let uid = Int(Self.number(header[108..<116]) ?? 0)
            let gid = Int(Self.number(header[116..<124]) ?? 0)
            let mode = mode_t(Self.number(header[100..<108]) ?? 0o644) & 0o7777
            let mtime = Self.number(header[136..<148]) ?? 0
            if name.isEmpty || name == "." {
                try skip(size)
                continue
            }
            let components = try Self.components(name)
            try checkParents(components, of: name)
            let path = destination + "/" + components.joined(separator: "/")
            let base = components.last!
            if base == ".wh..wh..opq" {
                let directory = destination + "/" + components.dropLast().joined(separator: "/")
                try check(OCIExtendedAttributes.set(directory, "trusted.overlay.opaque", [UInt8(ascii: "y")], 1, 0), "mark \(name) opaque")
                try skip(size)
                continue
            }
            if base.hasPrefix(".wh.") {
                let hidden = String(base.dropFirst(4))
                guard !hidden.isEmpty, hidden != ".", hidden != ".." else { throw Failure(description: "the layer has an invalid whiteout \(name)") }
                let target = destination + "/" + (components.dropLast() + [hidden]).joined(separator: "/")
                removeExisting(target)
                try check(mknod(target, S_IFCHR | 0o000, 0), "write the whiteout \(name)")
                try skip(size)
                continue
            }
            switch type {
            case UInt8(ascii: "5"):
                var info = stat()
                if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) != S_IFDIR { removeExisting(path) }
                if mkdir(path, 0o700) != 0 && errno != EEXIST { try fail("create the directory \(name)") }
                try skip(size)
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
                removeExisting(path)
                let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                guard descriptor >= 0 else { try fail("create the file \(name)") }
                defer { close(descriptor) }
                try copy(size, to: descriptor, name: name)
                try skipPadding(size)
            case UInt8(ascii: "1"):
                let targetComponents = try Self.components(link.hasPrefix("./") ? String(link.dropFirst(2)) : link)
                try checkParents(targetComponents, of: link)
                removeExisting(path)
                try check(Glibc.link(destination + "/" + targetComponents.joined(separator: "/"), path), "hard-link \(name) to \(link)")
                try skip(size)
                entries += 1
                continue
            case UInt8(ascii: "2"):
                removeExisting(path)
                try check(symlink(link, path), "create the symbolic link \(name)")
                try check(lchown(path, uid_t(uid), gid_t(gid)), "own \(name)")
                try skip(size)
                entries += 1
                continue
            case UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "6"):
                removeExisting(path)
                let major = UInt32(Self.number(header[329..<337]) ?? 0)
                let minor = UInt32(Self.number(header[337..<345]) ?? 0)
                let kind: mode_t = type == UInt8(ascii: "3") ? S_IFCHR : type == UInt8(ascii: "4") ? S_IFBLK : S_IFIFO
                try check(mknod(path, kind | 0o600, Self.makedev(major, minor)), "create the device \(name)")
                try skip(size)
            default:
                throw Failure(description: "the layer has an entry \(name) of an unknown type \(type)")
            }
            try check(lchown(path, uid_t(uid), gid_t(gid)), "own \(name)")
            try check(chmod(path, mode), "set the mode of \(name)")
            for (key, value) in xattrs {
                let attribute = String(key.dropFirst("SCHILY.xattr.".count))
                // The layer may not speak for overlayfs (opaque, redirect, metacopy …).
                guard !attribute.hasPrefix("trusted.") else { continue }
                let bytes = Array(value.utf8)
                _ = OCIExtendedAttributes.setOnLink(path, attribute, bytes, bytes.count, 0)
            }
            var times = [timespec(tv_sec: Int(mtime), tv_nsec: 0), timespec(tv_sec: Int(mtime), tv_nsec: 0)]
            _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
            entries += 1
        }
        throw Failure(description: "the layer ends without an end-of-archive marker")
    }

    /// The name's components; absolute names and `..` are refused.
    static func components(_ name: String) throws(Failure) -> [String] {
        guard !name.hasPrefix("/") else { throw Failure(description: "the layer has an absolute entry name \(name)") }
        let parts = name.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
        guard !parts.contains("..") else { throw Failure(description: "the layer has an entry name with .. in it: \(name)") }
        guard !parts.isEmpty, !parts.contains(where: { $0.contains("\0") }) else { throw Failure(description: "the layer has an invalid entry name") }
        return parts
    }

    /// Refuses an entry whose parent directories are not all real directories (a symbolic link
    /// written by this layer could lead it out of the layer's directory).
    private func checkParents(_ components: [String], of name: String) throws(Failure) {
        var path = destination
        for component in components.dropLast() {
            path += "/" + component
            var info = stat()
            if lstat(path, &info) != 0 {
                if errno == ENOENT {
                    // Layers may name a file before its directory.
                    if mkdir(path, 0o755) != 0 && errno != EEXIST { try fail("create the directory of \(name)") }
                    continue
                }
                try fail("look at the directory of \(name)")
            }
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw Failure(description: "the layer's entry \(name) goes through a symbolic link or a file; refusing the layer")
            }
        }
    }

    private func removeExisting(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            try? FileManager.default.removeItem(atPath: path)
        } else {
            unlink(path)
        }
    }

    private func check(_ result: Int32, _ what: String) throws(Failure) {
        if result != 0 { try fail(what) }
    }

    private func fail(_ what: String) throws(Failure) -> Never {
        let code = errno
        if code == ENOSPC || code == EDQUOT {
            throw Failure(description: "the layer cache's disk is full (cannot \(what): \(String(cString: strerror(code)))); free space under \(destination)")
        }
        throw Failure(description: "cannot \(what): \(String(cString: strerror(code)))")
    }

    // MARK: Reading

    private mutating func read(_ count: Int64) throws(Failure) -> [UInt8] {
        guard count >= 0, count <= 1 << 20 || count == 512 else { throw Failure(description: "a tar header record is too large (\(count) bytes)") }
        guard position + count <= size else { throw Failure(description: "the layer is truncated") }
        var buffer = [UInt8](repeating: 0, count: Int(count))
        var done = 0
        while done < Int(count) {
            let got = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress! + done, Int(count) - done, off_t(offset + position + Int64(done))) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw Failure(description: "cannot read the layer: \(got == 0 ? "it is truncated" : String(cString: strerror(errno)))") }
            done += got
        }
        position += count
        return buffer
    }

    private mutating func copy(_ count: Int64, to descriptor: Int32, name: String) throws(Failure) {
        guard position + count <= size else { throw Failure(description: "the layer is truncated") }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var left = count
        while left > 0 {
            let chunk = Int(min(left, Int64(buffer.count)))
            let got = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress!, chunk, off_t(offset + position)) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw Failure(description: "cannot read the layer: \(got == 0 ? "it is truncated" : String(cString: strerror(errno)))") }
            var written = 0
            while written < got {
                let wrote = buffer.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, got - written) }
                if wrote < 0 && errno == EINTR { continue }
                guard wrote > 0 else { try fail("write \(name)") }
                written += wrote
            }
            position += Int64(got)
            left -= Int64(got)
        }
    }

    private mutating func skip(_ count: Int64) throws(Failure) {
        let padded = (count + 511) / 512 * 512
        guard position + padded <= size else { throw Failure(description: "the layer is truncated") }
        position += padded
    }

    private mutating func skipPadding(_ count: Int64) throws(Failure) {
        let padding = (512 - count % 512) % 512
        guard position + padding <= size else { throw Failure(description: "the layer is truncated") }
        position += padding
    }

    // MARK: Fields

    /// An octal field, or a base-256 one (first byte's high bit set).
    static func number(_ field: ArraySlice<UInt8>) -> Int64? {
        if let first = field.first, first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x7f)
            for byte in field.dropFirst() {
                guard value < Int64.max >> 8 else { return nil }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        let text = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? 0 : Int64(text, radix: 8)
    }

    static func checksumMatches(_ header: [UInt8]) -> Bool {
        guard let stored = number(header[148..<156]) else { return false }
        var sum: Int64 = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : Int64(byte) }
        return sum == stored
    }

    static func cString(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// `length key=value\n` records.
    static func paxRecords(_ bytes: [UInt8]) -> [String: String] {
        var records: [String: String] = [:]
        var index = 0
        while index < bytes.count {
            guard let space = bytes[index...].firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: bytes[index..<space], as: UTF8.self)), length > 0, index + length <= bytes.count
            else { break }
            let record = bytes[(space + 1)..<(index + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                records[String(decoding: record[record.startIndex..<equals], as: UTF8.self)] = String(decoding: record[(equals + 1)...], as: UTF8.self)
            }
            index += length
        }
        return records
    }

    static func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
        dev_t((UInt64(major & 0xfffff000) << 32) | (UInt64(major & 0xfff) << 8) | (UInt64(minor & 0xffffff00) << 12) | UInt64(minor & 0xff))
    }
}

/// Extended attributes (`sys/xattr.h`, which the Glibc module does not bring).
enum OCIExtendedAttributes {
    @_silgen_name("setxattr")
    static func set(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32

    @_silgen_name("lsetxattr")
    static func setOnLink(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32

    @_silgen_name("getxattr")
    static func get(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int
}
