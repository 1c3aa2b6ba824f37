import AMQP
import Crypto
import Foundation

/// A worker's build secrets: its sets on disk, its HMAC key and its loopback server.
public struct BuildSecretsProvider: Sendable {
    let store: BuildSecretStore
    let workDirectory: String
    let server: SecretServer
    /// The HMAC key's bytes, read (or made) on the first build and kept.
    private let keyBytes = LockedValue<Data?>(nil)

    public init(directory: String?, workDirectory: String, server: SecretServer) {
        store = BuildSecretStore(directory: directory)
        self.workDirectory = workDirectory
        self.server = server
    }

    /// The secrets of one build: served at `url` until revoked.
    struct Grant: Sendable {
        let token: String
        let url: String
        let values: [String]
        /// What the build key takes from the secrets: the token, or nil when there are none
        /// (then nothing about them can make two workers' images differ).
        let cacheKey: String?
    }

    func grant(_ names: [String]) throws(StepFailure) -> Grant {
        let variables = try store.resolve(names)
        let token = BuildSecretStore.token(for: variables, key: try key())
        let url = try server.register(variables, token: token)
        return Grant(token: token, url: url, values: Array(variables.values), cacheKey: variables.isEmpty ? nil : token)
    }

    /// Where the HMAC key is kept: in the secrets folder when it can be (every worker reading
    /// the folder then has the same key, and workers sharing an engine share its images), else
    /// in this worker's work directory.
    var keyCandidates: [String] {
        (store.directory.map { [$0 + "/.build-secrets.key"] } ?? []) + [workDirectory + "/build-secrets.key"]
    }

    private func key() throws(StepFailure) -> SymmetricKey {
        if let bytes = keyBytes.value { return SymmetricKey(data: bytes) }
        do {
            let key = try BuildSecretStore.hmacKey(candidates: keyCandidates)
            keyBytes.value = key.withUnsafeBytes { Data($0) }
            return key
        } catch {
            throw StepFailure("build secrets: cannot read or create the HMAC key: \(error)")
        }
    }

    func revoke(_ grant: Grant) {
        server.unregister(grant.token)
    }
}
