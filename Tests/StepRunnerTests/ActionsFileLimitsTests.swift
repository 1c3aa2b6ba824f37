import Foundation
import Testing
@testable import StepRunner

#if canImport(Glibc)
    import Glibc
#endif

/// The actions file is parsed in the worker's own process: a small hostile file must not take
/// its memory or time.
@Suite(.timeLimit(.minutes(2))) struct ActionsFileLimitsTests {
    /// The classic "billion laughs": 388 bytes, nine levels of ten aliases each.
    static let billionLaughs = """
        a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
        c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
        g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
        i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
        actions: {a: {run: 'true'}}
        """

    /// The process's peak resident memory, bytes.
    static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    @Test(.timeLimit(.minutes(1))) func aBillionLaughsIsRefusedQuicklyInBoundedMemory() throws {
        #expect(Self.billionLaughs.utf8.count < 600)
        let before = Self.peakResidentBytes()
        let clock = ContinuousClock()
        let start = clock.now
        #expect {
            _ = try ActionsFile.parse(Self.billionLaughs)
        } throws: { error in
            (error as? ActionsFileError)?.reason.hasPrefix("expands to more than 50000 YAML nodes") == true
        }
        // Refused while counting nodes, not after expanding them: generous for a busy machine.
        #expect(clock.now - start < .seconds(20))
        let grown = Self.peakResidentBytes() - before
        #expect(grown < 64 << 20, "the peak memory grew by \(grown >> 20) MiB")
    }

    @Test(.timeLimit(.minutes(1))) func aliasesWithinTheBudgetStillWork() throws {
        let file = try ActionsFile.parse("""
            common: &common { run: "echo shared", retries: 2 }
            actions:
              a: *common
              b: *common
            """)
        #expect(file.actions["a"] == ActionsFile.Action(run: "echo shared", retries: 2))
        #expect(file.actions["b"] == file.actions["a"])
    }

    /// Deep nesting within the size cap: refused with an error, not a crashed worker.
    @Test(.timeLimit(.minutes(1))) func deepNestingIsRefused() {
        let depth = 100_000
        let text = "actions: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(throws: ActionsFileError(file: ".opschain/actions.yml", reason: "nests deeper than 256 levels")) { _ = try ActionsFile.parse(text) }
        let compact = "actions:\n  a:\n  " + String(repeating: "- ", count: 50_000) + "x\n"
        #expect(throws: ActionsFileError(file: ".opschain/actions.yml", reason: "nests deeper than 256 levels")) { _ = try ActionsFile.parse(compact) }
        // Brackets in quotes and comments are not nesting.
        #expect(ActionsFile.nestingBound("a: '[[[[' # {{{{\nb: \"{{{{\"\n") == 0)
        #expect(ActionsFile.nestingBound("a:\n  - [1, {b: 2}]\n") == 6)
    }

    @Test(.timeLimit(.minutes(1))) func anOversizedFileIsRefused() {
        let text = "actions: {a: {run: 'true'}}\n# " + String(repeating: "x", count: ActionsFile.maximumBytes)
        #expect {
            _ = try ActionsFile.parse(text)
        } throws: { error in
            (error as? ActionsFileError)?.reason == "is \(text.utf8.count) bytes, more than the limit of 262144 bytes"
        }
    }

    /// In the container the runner reads the checkout: a committed link to `/dev/zero` (which
    /// would read for ever) or to any other file is refused.
    @Test(.timeLimit(.minutes(1))) func loadRefusesASymbolicLink() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("actions-link-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: root + "/.opschain", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createSymbolicLink(atPath: root + "/.opschain/actions.yml", withDestinationPath: "/dev/zero")
        #expect(throws: ActionsFileError(file: ".opschain/actions.yml", reason: "is not a regular file (a symbolic link, a device or a directory); commit the file itself")) {
            _ = try ActionsFile.load(repositoryRoot: root)
        }
    }
}

/// The per-build secret server's answers (its socket loop runs in the worker's tests).
@Suite(.timeLimit(.minutes(2))) struct BuildSecretsServerTests {
    static let token = String(repeating: "ab", count: 32)
    static let answer = Data(#"{"A":"1"}"#.utf8)

    @Test(.timeLimit(.minutes(1))) func onlyTheTokensPathGetsTheSecrets() {
        func text(_ line: String?) -> String { String(decoding: BuildSecretsServer.response(to: line, token: Self.token, answer: Self.answer), as: UTF8.self) }
        let granted = text("GET /secrets/\(Self.token) HTTP/1.0")
        #expect(granted.hasPrefix("HTTP/1.0 200 OK\r\n") && granted.hasSuffix("\r\n\r\n{\"A\":\"1\"}"))
        for line in ["GET /secrets/\(String(repeating: "cd", count: 32)) HTTP/1.0", "GET /secrets/\(Self.token)x HTTP/1.0", "POST /secrets/\(Self.token) HTTP/1.0",
            "GET /secrets/ HTTP/1.0", "GET /secrets/\(Self.token)", "", nil] as [String?]
        {
            let refused = text(line)
            #expect(refused.hasPrefix("HTTP/1.0 404 Not Found\r\n") && !refused.contains(#""A""#), "\(line ?? "nil")")
        }
    }

    @Test func theFileCarriesTheTokenThenTheAnswer() {
        #expect(BuildSecretsServer.file(token: Self.token, answer: Self.answer) == Data("\(Self.token)\n{\"A\":\"1\"}".utf8))
        #expect(BuildSecretsServer.url(token: Self.token) == "http://127.0.0.1:4779/secrets/\(Self.token)")
    }
}
