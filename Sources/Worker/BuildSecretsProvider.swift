import Crypto
import Foundation
import Synchronization

/// A worker's build secrets: its sets on disk and its HMAC key. Each build that has secrets
/// gets them served by a container of its own (`BuildSecretsSidecar`).
public final class BuildSecretsProvider: Sendable {
    let store: BuildSecretStore
    let workDirectory: String
    /// The HMAC key's bytes, read (or made) on the first build and kept.
    private let keyBytes = Mutex<Data?>(nil)

    public init(directory: String?, workDirectory: String) {
        store = BuildSecretStore(directory: directory)
        self.workDirectory = workDirectory
    }

    /// The secrets of the sets `names`, nil when they hold none (then nothing about them can
    /// make two workers' images differ, and the build needs no secrets container).
    func secrets(_ names: [String]) throws(StepFailure) -> BuildRequest.Secrets? {
        let variables = try store.resolve(names)
        guard !variables.isEmpty else { return nil }
        return BuildRequest.Secrets(token: BuildSecretStore.token(for: variables, key: try key()), variables: variables)
    }

    /// Where the HMAC key is kept: in the secrets folder when it can be (every worker reading
    /// the folder then has the same key, and workers sharing an engine share its images), else
    /// in this worker's work directory.
    var keyCandidates: [String] {
        (store.directory.map { [$0 + "/.build-secrets.key"] } ?? []) + [workDirectory + "/build-secrets.key"]
    }

    private func key() throws(StepFailure) -> SymmetricKey {
        if let bytes = keyBytes.withLock({ $0 }) { return SymmetricKey(data: bytes) }
        do {
            let key = try BuildSecretStore.hmacKey(candidates: keyCandidates)
            keyBytes.withLock { $0 = key.withUnsafeBytes { Data($0) } }
            return key
        } catch {
            throw StepFailure("build secrets: cannot read or create the HMAC key: \(error)")
        }
    }
}
