import Foundation

/// Just enough of the ustar format for build contexts and the engine's archive API: regular
/// files and directories in, one named file out.
public enum Tar {
    public struct Entry: Sendable {
        public var name: String
        public var contents: Data
        public var mode: UInt32
        public var isDirectory: Bool
        public var uid: Int
        public var gid: Int

        public static func file(_ name: String, _ contents: Data, mode: UInt32 = 0o644, uid: Int = 0, gid: Int = 0) -> Entry {
            Entry(name: name, contents: contents, mode: mode, isDirectory: false, uid: uid, gid: gid)
        }

        public static func directory(_ name: String, mode: UInt32 = 0o755, uid: Int = 0, gid: Int = 0) -> Entry {
            Entry(name: name.hasSuffix("/") ? name : name + "/", contents: Data(), mode: mode, isDirectory: true, uid: uid, gid: gid)
        }
    }

    /// An archive of `entries`, with fixed times so equal inputs give equal bytes.
    public static func archive(_ entries: [Entry]) -> Data {
        var output = Data()
        for entry in entries {
            output.append(header(for: entry))
            output.append(entry.contents)
            let padding = (512 - entry.contents.count % 512) % 512
            output.append(Data(count: padding))
        }
        output.append(Data(count: 1024))
        return output
    }

    private static func header(for entry: Entry) -> Data {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            let bytes = Array(text.utf8.prefix(width))
            block.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            put(String(String(value, radix: 8).suffix(width - 1)).leftPadded(to: width - 1), at: offset, width: width - 1)
        }
        var name = entry.name
        var prefix = ""
        if name.utf8.count > 100, let slash = name.utf8.prefix(155).lastIndex(of: UInt8(ascii: "/")) {
            prefix = String(name[..<slash])
            name = String(name[name.index(after: slash)...])
        }
        precondition(name.utf8.count <= 100, "tar entry name too long: \(entry.name)")
        put(name, at: 0, width: 100)
        octal(Int(entry.mode), at: 100, width: 8)
        octal(entry.uid, at: 108, width: 8)
        octal(entry.gid, at: 116, width: 8)
        octal(entry.isDirectory ? 0 : entry.contents.count, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        block.replaceSubrange(148..<156, with: Array(repeating: UInt8(ascii: " "), count: 8))
        block[156] = entry.isDirectory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        put(prefix, at: 345, width: 155)
        let checksum = block.reduce(0) { $0 + Int($1) }
        put(String(String(checksum, radix: 8)).leftPadded(to: 6), at: 148, width: 6)
        block[154] = 0
        return Data(block)
    }

    /// The contents of the first regular file in `archive` whose name (without a leading
    /// `./`) is `name`, or its base name when `name` has no slash.
    public static func extract(_ name: String, from archive: Data) throws(TarError) -> Data? {
        let bytes = [UInt8](archive)
        var offset = 0
        var longName: String?
        while offset + 512 <= bytes.count {
            let header = bytes[offset..<offset + 512]
            if header.allSatisfy({ $0 == 0 }) { return nil }  // the end-of-archive marker
            guard let size = parseOctal(bytes[offset + 124..<offset + 136]) else { throw TarError("corrupt size field at offset \(offset)") }
            let type = bytes[offset + 156]
            let start = offset + 512
            guard start + size <= bytes.count else { throw TarError("truncated archive") }
            var entryName = longName ?? {
                let prefix = cString(bytes[offset + 345..<offset + 500])
                let base = cString(bytes[offset..<offset + 100])
                return prefix.isEmpty ? base : prefix + "/" + base
            }()
            longName = nil
            switch type {
            case UInt8(ascii: "L"):
                longName = cString(bytes[start..<start + size])
            case UInt8(ascii: "x"):
                longName = paxPath(bytes[start..<start + size])
            case UInt8(ascii: "0"), 0:
                if entryName.hasPrefix("./") { entryName.removeFirst(2) }
                let matches = entryName == name || (!name.contains("/") && entryName.split(separator: "/").last.map(String.init) == name)
                if matches { return Data(bytes[start..<start + size]) }
            default:
                break
            }
            offset = start + (size + 511) / 512 * 512
        }
        throw TarError("truncated archive: no end-of-archive marker")
    }

    private static func parseOctal(_ field: ArraySlice<UInt8>) -> Int? {
        let text = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? 0 : Int(text, radix: 8)
    }

    private static func cString(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    private static func paxPath(_ records: ArraySlice<UInt8>) -> String? {
        for line in String(decoding: records, as: UTF8.self).split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            let record = line[line.index(after: space)...]
            if record.hasPrefix("path=") { return String(record.dropFirst(5)) }
        }
        return nil
    }
}

public struct TarError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
