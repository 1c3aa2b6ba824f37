import Protocol
import Testing

@Suite(.timeLimit(.minutes(1))) struct SecretMaskTests {
    static let pem = """
        -----BEGIN PRIVATE KEY-----
        MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7
        VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu
        -----END PRIVATE KEY-----
        """
    static let quoted = #"pa"ss\word-42"#
    static let document: JSON = ["opschain": ["secrets": ["key": .string(pem), "quoted": .string(quoted)]], "public": "visible"]

    @Test func aMultiLineSecretIsMaskedLineByLine() {
        let mask = SecretMask([Self.pem])
        for line in Self.pem.split(separator: "\n") {
            let masked = mask.apply(to: "step output: \(line)")
            #expect(masked == "step output: ****", "line \(line) leaked as \(masked)")
        }
        #expect(mask.apply(to: Self.pem) == "****")
    }

    @Test func aSecretWithQuotesOrBackslashesIsMaskedInItsJSONEscapedForm() {
        let serialized = Self.document.serialized()
        #expect(serialized.contains(#"pa\"ss\\word-42"#))  // the form that used to leak
        let masked = SecretProperties.maskValues(in: "current properties: \(serialized)", of: [Self.document])
        #expect(!masked.contains("ss\\\\word"), "\(masked)")
        #expect(!masked.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"), "\(masked)")
        #expect(masked.contains("visible"))
        #expect(SecretMask([Self.quoted]).apply(to: "raw \(Self.quoted) end") == "raw **** end")
    }

    @Test func shortPiecesAndBlankLinesAreNotMasked() {
        let mask = SecretMask(["ab", "x\n\nyz\nlong-enough"])
        #expect(mask.apply(to: "ab x yz") == "ab x yz")
        #expect(mask.apply(to: "long-enough") == "****")
        #expect(!mask.forms.contains(""))
    }
}
