import Foundation
import TestSupport
import Testing
@testable import Worker

@Suite(.timeLimit(.minutes(2))) struct TarTests {
    @Test func gnuTarReadsWhatWeWrite() throws {
        let archive = Tar.archive([
            .directory(".opschain"),
            .file(".opschain/step_context.json", Data("{\"a\":1}".utf8), mode: 0o600),
            .file(String(repeating: "d/", count: 60) + "deep.txt", Data("deep".utf8)),
        ])
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tar-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try archive.write(to: folder.appendingPathComponent("a.tar"))
        #expect(try runProgram("/bin/tar", ["-xf", "a.tar"], in: folder.path).status == 0)
        let extracted = folder.appendingPathComponent(".opschain/step_context.json")
        #expect(try String(contentsOf: extracted, encoding: .utf8) == "{\"a\":1}")
        let mode = try FileManager.default.attributesOfItem(atPath: extracted.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try String(contentsOf: folder.appendingPathComponent(String(repeating: "d/", count: 60) + "deep.txt"), encoding: .utf8) == "deep")
    }

    @Test func extractsByNameOrBaseName() throws {
        let archive = Tar.archive([.file("x/step_result.json", Data("R".utf8)), .file("other", Data("O".utf8))])
        #expect(try Tar.extract("step_result.json", from: archive) == Data("R".utf8))
        #expect(try Tar.extract("x/step_result.json", from: archive) == Data("R".utf8))
        #expect(try Tar.extract("missing", from: archive) == nil)
        #expect(throws: TarError.self) { try Tar.extract("other", from: archive.prefix(600)) }
    }
}
