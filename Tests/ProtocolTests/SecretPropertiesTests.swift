import Protocol
import Testing

@Suite(.timeLimit(.minutes(1))) struct SecretPropertiesTests {
    let document: JSON = ["app": ["replicas": 2], "opschain": ["config": ["pool": "gpu"], "secrets": ["db": ["password": "hunter2", "port": 5432], "keys": ["a1", "b2"], "none": nil]]]

    @Test func everyLeafUnderOpschainSecretsIsMaskedAndNothingElse() {
        let masked = SecretProperties.masked(document)
        #expect(masked == ["app": ["replicas": 2], "opschain": ["config": ["pool": "gpu"], "secrets": ["db": ["password": "****", "port": "****"], "keys": ["****", "****"], "none": nil]]])
        #expect(SecretProperties.masked(["app": 1]) == ["app": 1])
        #expect(Set(SecretProperties.values(document)) == ["hunter2", "5432", "a1", "b2"])
        #expect(SecretProperties.maskValues(in: "password hunter2 on 5432 (a1)", of: [document]) == "password **** on **** (a1)")
    }

    @Test func aMaskedDocumentWrittenBackKeepsTheStoredSecrets() {
        var edited = SecretProperties.masked(document)
        guard case .object(var members) = edited else {
            Issue.record("masking returned \(edited.typeName), not an object")
            return
        }
        members["app"] = ["replicas": 3]
        edited = .object(members)
        let restored = SecretProperties.restoringMasked(edited, from: document)
        #expect(restored["opschain"]?["secrets"] == document["opschain"]?["secrets"])
        #expect(restored["app"] == ["replicas": 3])
        // A new value replaces the old one; a new key with **** and nothing stored stays ****.
        let changed: JSON = ["opschain": ["secrets": ["db": ["password": "new-one", "port": "****"], "extra": "****"]]]
        #expect(SecretProperties.restoringMasked(changed, from: document) == ["opschain": ["secrets": ["db": ["password": "new-one", "port": 5432], "extra": "****"]]])
    }
}
