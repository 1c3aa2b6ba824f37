import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `opschain-action --wait`: the action's name comes on standard input (read to its end), so
/// that the container can be started before its step is known. Standard input is then
/// `/dev/null`, as for `opschain-action ACTION`.
public enum AwaitedAction {
    public static let flag = "--wait"
    /// A name longer than this is refused, not read on.
    static let maximumBytes = 4096

    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// The name read from standard input, or why there is none.
    public static func read(from descriptor: Int32 = 0) -> Result<String, Problem> {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while bytes.count <= maximumBytes {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        if descriptor == 0 {
            let null = open("/dev/null", O_RDONLY)
            if null >= 0 {
                dup2(null, 0)
                close(null)
            }
        }
        return parse(bytes)
    }

    static func parse(_ bytes: [UInt8]) -> Result<String, Problem> {
        guard bytes.count <= maximumBytes else { return .failure(Problem(description: "the action's name is longer than \(maximumBytes) bytes")) }
        let name = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { return .failure(Problem(description: "no action's name came on standard input")) }
        guard !name.hasPrefix("-"), !name.contains(where: \.isNewline) else { return .failure(Problem(description: "\"\(name.prefix(80))\" is not an action's name")) }
        return .success(name)
    }
}
