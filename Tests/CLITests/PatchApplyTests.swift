import Foundation
import TestSupport
import Testing

/// `stepfleet patch apply` prints the whole result or nothing: a patch whose last operation
/// fails exits 1 with an empty standard output and the failing operation on standard error.
@Suite(.timeLimit(.minutes(1))) struct PatchApplyTests {
    @Test func aPatchWhoseLastOperationFailsPrintsNothingAndExits1() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("patch-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let document = #"{"a":1,"list":[1,2]}"#
        try document.write(toFile: folder + "/document.json", atomically: true, encoding: .utf8)
        try #"[{"op":"add","path":"/b","value":2},{"op":"remove","path":"/list/0"},{"op":"remove","path":"/zzz"}]"#
            .write(toFile: folder + "/bad.json", atomically: true, encoding: .utf8)
        try #"[{"op":"add","path":"/b","value":2},{"op":"remove","path":"/list/0"}]"#
            .write(toFile: folder + "/good.json", atomically: true, encoding: .utf8)

        let failed = try runProgramSeparately(stepfleetExecutable, ["patch", "apply", "document.json", "bad.json"], in: folder)
        #expect(failed.status == 1, "status \(failed.status), stderr: \(failed.stderr)")
        #expect(failed.stdout.isEmpty, "stdout: \(failed.stdout)")
        #expect(failed.stderr.contains("patch operation 2 (remove /zzz)"), "stderr: \(failed.stderr)")
        #expect(try String(contentsOfFile: folder + "/document.json", encoding: .utf8) == document)

        // The control: without the failing operation the same command prints the result.
        let applied = try runProgramSeparately(stepfleetExecutable, ["patch", "apply", "document.json", "good.json"], in: folder)
        #expect(applied.status == 0, "status \(applied.status), stderr: \(applied.stderr)")
        #expect(applied.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == #"{"a":1,"b":2,"list":[2]}"#, "stdout: \(applied.stdout)")
    }
}
