import Foundation
import Testing
@testable import StepRunner

#if canImport(Glibc)
    import Glibc
#endif

/// `opschain-action --wait`: the action's name is read from standard input to its end; what is
/// not one name is refused, never run.
@Suite(.timeLimit(.minutes(1))) struct AwaitedActionTests {
    static func name(_ text: String) -> String? {
        try? AwaitedAction.parse(Array(text.utf8)).get()
    }

    @Test func oneNameIsTheAction() {
        #expect(Self.name("deploy\n") == "deploy")
        #expect(Self.name("  build-all ") == "build-all")
    }

    @Test func anythingElseIsRefused() {
        #expect(Self.name("") == nil)
        #expect(Self.name("\n") == nil)
        #expect(Self.name("--help") == nil)
        #expect(Self.name("a\nb") == nil)
        #expect(Self.name(String(repeating: "x", count: AwaitedAction.maximumBytes + 1)) == nil)
    }

    @Test func theNameIsReadFromADescriptorToItsEnd() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let text = Array("deploy\n".utf8)
        #expect(text.withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) } == text.count)
        close(ends[1])
        #expect(try AwaitedAction.read(from: ends[0]).get() == "deploy")
        close(ends[0])
    }

    @Test func aClosedInputWithNoNameIsRefused() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        close(ends[1])
        guard case .failure(let problem) = AwaitedAction.read(from: ends[0]) else {
            Issue.record("an empty input gave an action")
            return
        }
        #expect(problem.description == "no action's name came on standard input")
        close(ends[0])
    }
}
