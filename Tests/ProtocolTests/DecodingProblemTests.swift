import Foundation
import Testing
@testable import Protocol

/// Decoding errors as an operator reads them: file, field, value, what is allowed, and where a
/// syntax error is.
@Suite struct DecodingProblemTests {
    func problem<T: Decodable>(_ type: T.Type, _ text: String, file: String = "step_result.json") -> String {
        let data = Data(text.utf8)
        do {
            _ = try JSONDecoder().decode(T.self, from: data)
            return "decoded"
        } catch let error as DecodingError {
            return DecodingProblem(error, file: file, data: data).description
        } catch {
            return "\(error)"
        }
    }

    @Test(.timeLimit(.minutes(1))) func aSyntaxErrorSaysWhereInTheFile() {
        let text = "{\n  \"steps\": {\n    \"children\": [,]\n  }\n}"
        #expect(problem(StepResult.self, text) == "step_result.json is not valid JSON: line 3, column 18 (byte 32): unexpected character ','")
    }

    @Test(.timeLimit(.minutes(1))) func anInvalidEnumerationValueIsNamedWithWhatIsAllowed() {
        #expect(problem(StepResult.self, #"{"project": {"properties_diff": []}, "environment": {"properties_diff": []}, "step": {"properties": {}}, "steps": {"children": [], "child_execution_strategy": "sideways"}}"#)
            == #"step_result.json: /steps/child_execution_strategy is "sideways"; allowed: serial, parallel"#)
    }

    @Test(.timeLimit(.minutes(1))) func aMissingMemberIsNamedWithWhereItIsMissing() {
        #expect(problem(StepContext.self, #"{"context": {}}"#, file: "step_context.json")
            .hasPrefix("step_context.json: the member \""))
        #expect(problem(ChildStep.self, #"{}"#, file: "child.json") == #"child.json: the member "action" is missing from the top level"#)
        #expect(problem([ChildStep].self, #"[{"action": "a"}, {"name": "b"}]"#, file: "c.json") == #"c.json: the member "action" is missing from /1"#)
    }

    @Test(.timeLimit(.minutes(1))) func aWrongTypeShowsTheValueFoundAndTheTypeWanted() {
        #expect(problem(StepResult.self, #"{"project": {"properties_diff": []}, "environment": {"properties_diff": []}, "step": {"properties": {}}, "steps": {"children": "x"}}"#) == #"step_result.json: /steps/children is a string ("x"); it must be a list"#)
        #expect(problem(ChildStep.self, #"{"action": 42}"#, file: "c.json") == "c.json: /action is the number 42; it must be a string")
        #expect(problem(ChildStep.self, #"{"action": null}"#, file: "c.json") == "c.json: /action is null; it must be a string")
        #expect(problem(ChildStep.self, #"[1,2]"#, file: "c.json") == "c.json: the top level is a list of 2 items; it must be an object")
    }

    @Test(.timeLimit(.minutes(1))) func noSwiftInternalsEverShow() {
        for text in ["", "nope", #"{"steps": 1}"#, #"{"project": {"properties_diff": {}}}"#, #"{"steps": {"children": [{"action": []}]}}"#] {
            let shown = problem(StepResult.self, text)
            for word in ["CodingKeys", "keyNotFound", "typeMismatch", "dataCorrupted", "valueNotFound", "Swift.", "DecodingError", "debugDescription"] {
                #expect(!shown.contains(word), "\(text): \(shown)")
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func lineAndColumnCountCharactersNotBytes() {
        #expect(DecodingProblem.location(ofByte: 0, in: Array("x".utf8)) == "line 1, column 1 (byte 0)")
        #expect(DecodingProblem.location(ofByte: 5, in: Array("é\nab!".utf8)) == "line 2, column 3 (byte 5)")
    }
}
