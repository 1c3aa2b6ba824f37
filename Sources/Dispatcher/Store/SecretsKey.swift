import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where the key that encrypts secrets at rest comes from.
public enum SecretsKeySource: Sendable, Equatable {
    /// `<database>.key`, made (mode 0600) at the first start when missing.
    case nextToDatabase
    /// This file, made (mode 0600) when missing.
    case file(String)
    /// No key: for tools that never touch secrets (`stepfleet token`). Reading an encrypted
    /// value then fails, saying so; nothing is written encrypted.
    case none
}

/// The 32-byte key (raw bytes in a file of exactly 32 bytes, kept outside the database).
enum SecretsKey {
    static let size = 32

    /// Reads the key file, or makes it when there is none. Refuses a file that exists but
    /// cannot be read or is not exactly 32 bytes.
    static func load(_ path: String) throws -> SymmetricKey {
        if FileManager.default.fileExists(atPath: path) { return try read(path) }
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let key = SymmetricKey(size: .bits256)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            // Made by another process between our check and our create: read theirs.
            if errno == EEXIST { return try read(path) }
            throw SecretsKeyError("cannot create the secrets key file \(path): \(String(cString: strerror(errno))) (give another place with --secrets-key)")
        }
        defer { close(descriptor) }
        let written = key.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == size, fsync(descriptor) == 0 else {
            unlink(path)
            throw SecretsKeyError("cannot write the secrets key file \(path): \(String(cString: strerror(errno)))")
        }
        return key
    }

    private static func read(_ path: String) throws -> SymmetricKey {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretsKeyError("cannot read the secrets key file \(path) (permissions?); the dispatcher needs it to read the secrets in its database")
        }
        guard data.count == size else {
            throw SecretsKeyError("the secrets key file \(path) holds \(data.count) bytes, not \(size): it is not a StepFleet secrets key (restore the right file, or give it with --secrets-key)")
        }
        return SymmetricKey(data: data)
    }
}

/// The secrets key cannot be had, or does not open what the database holds.
public struct SecretsKeyError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
