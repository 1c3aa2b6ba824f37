import Crypto
import Foundation
import Protocol

/// Named build-secret sets, kept with the workers (as OpsChain keeps them in Kubernetes
/// secrets): one file per set in the worker's `--secrets-dir`, named after the set, holding
/// `KEY=value` lines (`#` comments and blank lines ignored). They never travel through the
/// broker or the dispatcher's store: a job names the sets, the worker reads them.
public struct BuildSecretStore: Sendable {
    /// OpsChain's default set; an absent one is empty (OpsChain creates it empty).
    public static let defaultSet = "opschain-build-env"

    public let directory: String?

    public init(directory: String?) {
        self.directory = directory
    }

    /// The variables of `names`, later sets winning per key.
    public func resolve(_ names: [String]) throws(StepFailure) -> [String: String] {
        var variables: [String: String] = [:]
        for name in names {
            guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
                throw StepFailure("build secret set name \"\(name)\" is not a plain name")
            }
            guard let directory, let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8) else {
                if name == Self.defaultSet { continue }
                let place = directory.map { "in \($0)" } ?? "(this worker has no --secrets-dir)"
                throw StepFailure("build secret set \"\(name)\" not found \(place)")
            }
            variables.merge(try Self.parse(text, set: name)) { $1 }
        }
        return variables
    }

    static func parse(_ text: String, set: String) throws(StepFailure) -> [String: String] {
        var variables: [String: String] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let equals = trimmed.firstIndex(of: "="), equals != trimmed.startIndex else {
                throw StepFailure("build secret set \"\(set)\", line \(index + 1): expected KEY=value")
            }
            let key = String(trimmed[..<equals])
            guard key.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }), !key.first!.isNumber else {
                throw StepFailure("build secret set \"\(set)\", line \(index + 1): \"\(key)\" is not a variable name")
            }
            variables[key] = String(trimmed[trimmed.index(after: equals)...])
        }
        return variables
    }

    /// A stable name for one set of values: an HMAC under a key only the workers hold, so it
    /// says nothing about the values, yet changes whenever one does (no stale cached layer).
    static func token(for variables: [String: String], key: SymmetricKey) -> String {
        var message = Data("stepfleet-build-secrets-1\n".utf8)
        for name in variables.keys.sorted() {
            message.append(Data("\(name.utf8.count):\(name)\(variables[name]!.utf8.count):\(variables[name]!)\n".utf8))
        }
        return HMAC<SHA256>.authenticationCode(for: message, using: key).hexString
    }

    /// The HMAC key: the first of `paths` that holds one, or can be made to (32 random bytes,
    /// mode 0600, created exclusively so that workers starting together agree on one key).
    /// Kept on disk so that tokens, and with them cached images, survive a restart.
    static func hmacKey(candidates paths: [String]) throws -> SymmetricKey {
        var failures: [String] = []
        for path in paths {
            if let data = FileManager.default.contents(atPath: path), data.count == 32 { return SymmetricKey(data: data) }
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let key = SymmetricKey(size: .bits256)
            let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
            if descriptor < 0 {
                let reason = errno
                // Another worker made it a moment ago: use theirs, once it is written.
                if reason == EEXIST {
                    for _ in 0..<20 {
                        if let data = FileManager.default.contents(atPath: path), data.count == 32 { return SymmetricKey(data: data) }
                        usleep(50_000)
                    }
                }
                failures.append("\(path): \(String(cString: strerror(reason)))")
                continue
            }
            let written = key.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            close(descriptor)
            guard written == 32 else {
                unlink(path)
                failures.append("\(path): short write")
                continue
            }
            return key
        }
        throw StepFailure("no place for the build-secret HMAC key (\(failures.joined(separator: "; ")))")
    }
}
