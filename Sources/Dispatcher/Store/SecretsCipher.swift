import Crypto
import Foundation
import Protocol

/// Secrets at rest: AES-GCM (256-bit key from `SecretsKey`, a random nonce per value).
///
/// - property documents: each leaf under `opschain.secrets` becomes the string
///   `sfenc:v1:<base64 of nonce, ciphertext, tag>` of the leaf's JSON text (the document's
///   shape and its other properties stay readable);
/// - step contexts and results (they hold whole property documents): the whole text, same form;
/// - outbox bodies (jobs carry the full context): `sfenc:v1:` then the sealed bytes.
///
/// Values written before encryption existed (no prefix) read as they are, and are encrypted
/// when the store opens (`Store.encryptClearSecrets`).
// `SymmetricKey` is an immutable value that swift-crypto does not mark Sendable.
struct SecretsCipher: @unchecked Sendable {
    let key: SymmetricKey

    static let prefix = "sfenc:v1:"
    static let prefixBytes = Data(prefix.utf8)

    /// The cipher of the store whose `read`/`write` is running (bound there), nil when the
    /// store has no key.
    @TaskLocal static var current: SecretsCipher?

    // MARK: Whole texts and blobs

    func seal(text: String) throws -> String {
        Self.prefix + (try AES.GCM.seal(Data(text.utf8), using: key).combined!).base64EncodedString()
    }

    func seal(blob: Data) throws -> Data {
        Self.prefixBytes + (try AES.GCM.seal(blob, using: key).combined!)
    }

    static func isSealed(_ text: String) -> Bool { text.hasPrefix(prefix) }
    static func isSealed(_ blob: Data) -> Bool { blob.starts(with: prefixBytes) }

    func open(text: String) throws -> String {
        guard Self.isSealed(text) else { return text }
        guard let data = Data(base64Encoded: String(text.dropFirst(Self.prefix.count))) else {
            throw SecretsKeyError("a sealed value in the database is damaged (not base64)")
        }
        return String(decoding: try openSealed(data), as: UTF8.self)
    }

    func open(blob: Data) throws -> Data {
        guard Self.isSealed(blob) else { return blob }
        return try openSealed(blob.dropFirst(Self.prefixBytes.count))
    }

    private func openSealed(_ data: Data) throws -> Data {
        do {
            return try AES.GCM.open(AES.GCM.SealedBox(combined: data), using: key)
        } catch {
            throw SecretsKeyError("a secret in the database does not open with this secrets key: the key file is not the one this database was written with (give the right one with --secrets-key)")
        }
    }

    // MARK: Property documents

    /// `document` (as the API or a step gave it: all clear) with every leaf under
    /// `opschain.secrets` sealed. Every leaf: a value that merely looks sealed (a user may write
    /// `sfenc:v1:…`) is sealed too, so it reads back as written and never fails to open.
    func sealSecrets(in document: JSON) throws -> JSON {
        try Self.mapSecretLeaves(document) { leaf in .string(try seal(text: leaf.serialized())) }
    }

    /// For a document an older version stored: seals the leaves still in clear, keeps the sealed ones.
    func sealClearSecrets(in document: JSON) throws -> JSON {
        try Self.mapSecretLeaves(document) { leaf in
            if case .string(let text) = leaf, Self.isSealed(text) { return leaf }
            return .string(try seal(text: leaf.serialized()))
        }
    }

    /// `document` with every sealed leaf under `opschain.secrets` opened.
    func openSecrets(in document: JSON) throws -> JSON {
        try Self.mapSecretLeaves(document) { leaf in try Self.openLeaf(leaf, with: self) }
    }

    static func openLeaf(_ leaf: JSON, with cipher: SecretsCipher?) throws -> JSON {
        guard case .string(let text) = leaf, isSealed(text) else { return leaf }
        guard let cipher else {
            throw SecretsKeyError("the database holds encrypted secrets and this command has no secrets key")
        }
        return try JSON.parse(try cipher.open(text: text))
    }

    /// Whether a leaf under `opschain.secrets` is still in clear.
    static func hasClearSecrets(_ document: JSON) -> Bool {
        var clear = false
        _ = try? mapSecretLeaves(document) { leaf in
            if case .string(let text) = leaf, isSealed(text) {} else { clear = true }
            return leaf
        }
        return clear
    }

    /// Applies `transform` to every leaf (not null, not a container) under `opschain.secrets`.
    static func mapSecretLeaves(_ document: JSON, _ transform: (JSON) throws -> JSON) throws -> JSON {
        guard case .object(var top) = document, case .object(var opschain)? = top["opschain"], let secrets = opschain["secrets"] else { return document }
        func walk(_ value: JSON) throws -> JSON {
            switch value {
            case .null: return .null
            case .object(let members): return .object(try members.mapValues(walk))
            case .array(let items): return .array(try items.map(walk))
            default: return try transform(value)
            }
        }
        opschain["secrets"] = try walk(secrets)
        top["opschain"] = .object(opschain)
        return .object(top)
    }
}
