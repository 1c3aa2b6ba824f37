import Protocol
import Testing
@testable import StepRunner

@Suite(.timeLimit(.minutes(2))) struct ActionsFileTests {
    @Test func parsesTheArchitectureExample() throws {
        let file = try ActionsFile.parse("""
            actions:
              build:   { run: "make build" }
              test:    { run: "make test" }
              deploy:  { run: "./deploy.sh", steps: [build, test], strategy: parallel, timeout: 600 }
              notify:  { run: "./notify.sh", ignore_failure: true, retries: 2 }
            """)
        #expect(file.actions["build"] == ActionsFile.Action(run: "make build"))
        #expect(file.actions["deploy"] == ActionsFile.Action(run: "./deploy.sh", steps: ["build", "test"], strategy: .parallel, timeout: 600))
        #expect(file.actions["notify"]?.policy == ActionPolicy(ignoreFailure: true, retries: 2))
    }

    @Test func jsonWorksToo() throws {
        let file = try ActionsFile.parse(#"{"actions": {"a": {"run": "true", "steps": [{"action": "b"}]}, "b": "echo b"}}"#, file: ".opschain/actions.json")
        #expect(file.actions["a"]?.steps == ["b"])
        #expect(file.actions["b"]?.run == "echo b")
    }

    @Test(arguments: [
        ("actions: [1]", "\"actions\" must be a mapping"),
        ("- a", "must be a mapping with an \"actions\" key"),
        ("actions:\n  a: { run: 1 }", "action \"a\": \"run\" must be a string"),
        ("actions:\n  a: { run: x, strategy: sideways }", "\"strategy\" must be serial or parallel"),
        ("actions:\n  a: { run: x, timeout: -1 }", "\"timeout\" must be a positive number"),
        ("actions:\n  a: { run: x, retries: many }", "\"retries\" must be a whole number"),
        ("actions:\n  a: { run: x, rnu: y }", "unknown key \"rnu\""),
        ("actions:\n  a: { steps: [nope] }", "child step \"nope\", which is not defined"),
        ("actions:\n  a: {}", "needs \"run\" or \"steps\""),
        ("actions: {a: [unclosed", "not valid YAML"),
    ])
    func mistakesAreExplained(_ text: String, _ expected: String) {
        #expect {
            _ = try ActionsFile.parse(text)
        } throws: { error in
            (error as? ActionsFileError)?.description.contains(expected) == true
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct DefaultDockerfileTests {
    @Test func startsFromTheBaseRunnerAndAddsTheContext() {
        let instructions = DefaultDockerfile.text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        #expect(instructions.prefix(2) == ["ARG OPSCHAIN_BASE_RUNNER", "FROM ${OPSCHAIN_BASE_RUNNER}"])
        #expect(instructions.contains("ADD repo.tar ./"))
        #expect(instructions.contains("COPY step_context_env.json .opschain/step_context_env.json"))
        for argument in ["GIT_REV", "GIT_SHA", "OPSCHAIN_VERSION"] { #expect(instructions.contains("ARG \(argument)")) }
    }
}
