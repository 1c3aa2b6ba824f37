import Foundation
import TestSupport
import Testing

/// `stepfleet … | head -1` ends quietly, as other Unix tools do, instead of crashing with a
/// backtrace when the reader closes the pipe.
@Suite(.timeLimit(.minutes(2))) struct ClosedPipeTests {
    @Test func aClosedPipeEndsTheCommandBySIGPIPEWithoutAWord() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pipe-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Far more than a pipe holds (64 KiB), on many lines, so the writer meets the closed pipe.
        let members = (0..<20_000).map { "\"key\($0)\": \"\(String(repeating: "v", count: 40))\"" }.joined(separator: ",")
        try "{\(members)}".write(toFile: folder + "/big.json", atomically: true, encoding: .utf8)
        try "[]".write(toFile: folder + "/empty.json", atomically: true, encoding: .utf8)
        // SIGPIPE ignored, as SwiftNIO leaves it in every command that talks to the API
        // (`change logs`): an ignored signal stays ignored across exec.
        let script = """
            set -o pipefail
            trap '' PIPE
            "$0" patch apply --pretty "$1/big.json" "$1/empty.json" 2>"$1/stderr" | head -1 >"$1/first"
            echo "status $?"
            """
        let result = try runProgram("/bin/bash", ["-c", script, stepfleetExecutable, folder])
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines) == "status 141", "\(result.output)")
        let stderr = try String(contentsOfFile: folder + "/stderr", encoding: .utf8)
        #expect(stderr.isEmpty, "the command said: \(stderr)")
        #expect(try String(contentsOfFile: folder + "/first", encoding: .utf8) == "{\n")
    }
}
