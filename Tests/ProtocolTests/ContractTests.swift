import Foundation
import Testing
@testable import Protocol

@Suite(.timeLimit(.minutes(2))) struct ContractTests {
    private func fixture(_ name: String) throws -> Data {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return try Data(contentsOf: url)
    }

    @Test func stepResultFromTheSeedDecodesAndEncodesToTheSameShape() throws {
        let data = try fixture("step_result.json")
        let result = try JSONDecoder().decode(StepResult.self, from: data)
        #expect(result.project.propertiesDiff.operations == [.add(path: try JSONPointer("/new_element"), value: "test_value")])
        #expect(result.environment.propertiesDiff.isEmpty)
        #expect(result.step.properties == ["opschain": [:]])
        #expect(result.steps.children == [ChildStep(action: "sample:hello_world_1:run")])
        #expect(result.steps.childExecutionStrategy == nil)
        #expect(result.steps.effectiveStrategy == .serial)

        let encoded = try JSON.parse(bytes: JSONEncoder().encode(result))
        #expect(encoded == (try JSON.parse(bytes: data)))
        #expect(encoded["steps"]?["child_execution_strategy"] == .null)
    }

    @Test(arguments: ExecutionStrategy.allCases)
    func strategiesRoundTrip(_ strategy: ExecutionStrategy) throws {
        let text = #"{"children":[{"action":"a"},{"action":"b"}],"child_execution_strategy":"\#(strategy.rawValue)"}"#
        let children = try JSONDecoder().decode(StepResult.Children.self, from: Data(text.utf8))
        #expect(children.childExecutionStrategy == strategy)
        #expect(try JSON.parse(bytes: JSONEncoder().encode(children)) == JSON.parse(text))
    }

    @Test func unknownStrategyIsRefused() {
        let text = #"{"children":[],"child_execution_strategy":"sideways"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(StepResult.Children.self, from: Data(text.utf8)) }
    }

    @Test func stepContextDecodesAndEncodesToTheSameShape() throws {
        let data = try fixture("step_context.json")
        let context = try JSONDecoder().decode(StepContext.self, from: data)
        #expect(context.context.project["code"] == "demo")
        #expect(context.project.properties["project_property"] == "value")
        #expect(try JSON.parse(bytes: JSONEncoder().encode(context)) == JSON.parse(bytes: data))

        let files = try context.mergedProperties.fileProperties()
        #expect(files == [
            FileProperty(path: "/path/to/another_file.txt", mode: 0o600, content: "contents of the file"),
            FileProperty(path: "/path/to/file.txt", mode: 0o600, content: "contents of the file"),
        ])
        #expect(try context.mergedProperties.envProperties() == ["VARIABLE_NAME": "variable value"])
    }

    @Test func badFilesAndEnvShapesSayWhere() throws {
        #expect(throws: PropertyShapeError(path: "/files/relative", reason: "file path must be absolute or start with ~/ (the step user's home)")) {
            try (["files": ["relative": ["content": "x"]]] as JSON).fileProperties()
        }
        #expect(throws: PropertyShapeError(path: "/files/~0other~1x", reason: "file path must be absolute or start with ~/ (the step user's home)")) {
            try (["files": ["~other/x": ["content": "x"]]] as JSON).fileProperties()
        }
        #expect(try (["files": ["~/.ssh/config": ["content": "x"]]] as JSON).fileProperties() == [FileProperty(path: "~/.ssh/config", mode: 0o644, content: "x")])
        #expect(throws: PropertyShapeError(path: "/files/~1a", reason: "\"mode\" must be an octal string such as \"0600\"")) {
            try (["files": ["/a": ["content": "x", "mode": "rw"]]] as JSON).fileProperties()
        }
        #expect(throws: PropertyShapeError(path: "/env/X", reason: "must be a string, not object")) {
            try (["env": ["X": [:]]] as JSON).envProperties()
        }
        #expect(try (["env": ["N": 3, "B": true]] as JSON).envProperties() == ["N": "3", "B": "true"])
    }
}
