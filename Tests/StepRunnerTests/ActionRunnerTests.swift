import Foundation
import Protocol
import Testing
@testable import StepRunner

/// `opschain-action`'s logic run for real (a real shell, real files) in a scratch folder.
@Suite(.timeLimit(.minutes(2))) struct ActionRunnerTests {
    final class Sandbox {
        let root: URL
        let files: URL
        var runner: ActionRunner { ActionRunner(root: root.path, filesRoot: files.path, home: "/home/stepper") }

        init(actions: String, project: JSON = [:], environment: JSON = [:]) throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("action-runner-\(UUID().uuidString)")
            root = base.appendingPathComponent("repo")
            files = base.appendingPathComponent("files")
            try FileManager.default.createDirectory(at: root.appendingPathComponent(".opschain"), withIntermediateDirectories: true)
            try Data(actions.utf8).write(to: root.appendingPathComponent(".opschain/actions.yml"))
            let context = StepContext(
                context: .init(project: ["code": "demo"], environment: ["code": "dev"], change: [:], step: [:], user: [:]),
                project: .init(properties: project), environment: .init(properties: environment))
            try JSONEncoder().encode(context).write(to: root.appendingPathComponent(".opschain/step_context.json"))
        }

        deinit { try? FileManager.default.removeItem(at: root.deletingLastPathComponent()) }

        func result() throws -> StepResult {
            try JSONDecoder().decode(StepResult.self, from: Data(contentsOf: root.appendingPathComponent(".opschain/step_result.json")))
        }
    }

    @Test func propertyEditsBecomeDiffs() throws {
        let sandbox = try Sandbox(
            actions: """
                actions:
                  edit:
                    run: |
                      jq '.counter += 1 | .tags += ["new"]' "$OPSCHAIN_PROJECT_PROPERTIES" > p && mv p "$OPSCHAIN_PROJECT_PROPERTIES"
                      echo '{"region": "eu"}' > "$OPSCHAIN_ENVIRONMENT_PROPERTIES"
                """,
            project: ["counter": 1, "tags": ["a"]], environment: ["region": "us", "size": 3])
        #expect(sandbox.runner.run(action: "edit") == 0)
        let result = try sandbox.result()
        #expect(result.error == nil)
        #expect(result.project.propertiesDiff.json == (try JSON.parse(#"[{"op":"replace","path":"/counter","value":2},{"op":"add","path":"/tags/-","value":"new"}]"#)))
        #expect(try result.environment.propertiesDiff.apply(to: ["region": "us", "size": 3]) == ["region": "eu"])
        #expect(result.step.properties == ["counter": 1, "tags": ["a"], "region": "us", "size": 3])
    }

    @Test func filesAndEnvReachTheCommand() throws {
        let sandbox = try Sandbox(
            actions: "actions:\n  show: { run: 'test \"$GREETING\" = \"hello from env\" && test \"$(cat \"$TARGET\")\" = secret && test \"$(stat -c %a \"$TARGET\")\" = 600' }",
            // The command runs in the repository; the files root is its sibling folder. TARGET
            // comes as a property, not from this process's environment (tests run in parallel).
            project: ["env": ["GREETING": "hello from project", "TARGET": "../files/etc/app/key"], "files": ["/etc/app/key": ["mode": "0600", "content": "secret"]]],
            environment: ["env": ["GREETING": "hello from env"]])
        #expect(sandbox.runner.run(action: "show") == 0)
        #expect(try sandbox.result().error == nil)
    }

    @Test func aTildePathIsUnderTheStepUsersHome() throws {
        // The command runs in the repository; the files root is its sibling folder.
        let sandbox = try Sandbox(
            actions: """
                actions:
                  show: { run: 'f=../files/home/stepper/.config/app/settings; test "$(cat $f)" = conf && test "$(stat -c %a $f)" = 640' }
                """,
            project: ["files": ["~/.config/app/settings": ["mode": "0640", "content": "conf"]]])
        #expect(sandbox.runner.run(action: "show") == 0)
        #expect(try sandbox.result().error == nil)
    }

    @Test func childrenFromTheFileAndAddedAtRunTime() throws {
        let sandbox = try Sandbox(actions: """
            actions:
              parent: { run: 'echo "[\\"c\\", {\\"action\\": \\"b\\"}]" > "$OPSCHAIN_CHILD_STEPS"', steps: [a], strategy: parallel }
              a: { run: "true" }
              b: { run: "true" }
              c: { run: "true" }
              group: { steps: [a, b] }
            """)
        #expect(sandbox.runner.run(action: "parent") == 0)
        let result = try sandbox.result()
        #expect(result.steps.children.map(\.action) == ["a", "c", "b"])
        #expect(result.steps.childExecutionStrategy == .parallel)
        #expect(sandbox.runner.run(action: "group") == 0)
        #expect(try sandbox.result().steps.children.map(\.action) == ["a", "b"])
        #expect(try sandbox.result().steps.childExecutionStrategy == nil)
    }

    @Test func anUnknownActionIsNamed() throws {
        let sandbox = try Sandbox(actions: "actions:\n  real: { run: 'true' }")
        #expect(sandbox.runner.run(action: "imaginary") == 1)
        #expect(try sandbox.result().error == "unknown action \"imaginary\" (defined: real)")
    }

    @Test func aFailingCommandKeepsItsStatusAndStillWritesTheResult() throws {
        let sandbox = try Sandbox(actions: "actions:\n  fail: { run: 'echo \"{\\\"x\\\": 1}\" > \"$OPSCHAIN_PROJECT_PROPERTIES\"; exit 3', steps: [fail] }", project: [:])
        #expect(sandbox.runner.run(action: "fail") == 3)
        let result = try sandbox.result()
        #expect(result.error == "the command exited with status 3")
        #expect(result.project.propertiesDiff.json == (try JSON.parse(#"[{"op":"add","path":"/x","value":1}]"#)))
    }

    @Test func anInvalidPropertiesCopyIsNamed() throws {
        let sandbox = try Sandbox(actions: "actions:\n  break: { run: 'echo \"{oops\" > \"$OPSCHAIN_ENVIRONMENT_PROPERTIES\"' }")
        #expect(sandbox.runner.run(action: "break") == 1)
        let error = try #require(try sandbox.result().error)
        #expect(error.hasPrefix("the environment properties copy ($OPSCHAIN_ENVIRONMENT_PROPERTIES) was left as invalid JSON"))
    }

    @Test func anUndefinedRuntimeChildIsRefused() throws {
        let sandbox = try Sandbox(actions: "actions:\n  p: { run: 'echo \"[\\\"ghost\\\"]\" > \"$OPSCHAIN_CHILD_STEPS\"' }")
        #expect(sandbox.runner.run(action: "p") == 1)
        #expect(try sandbox.result().error == "child step \"ghost\" added at run time is not a defined action")
    }

    @Test func execExportsEnvAndContext() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("env-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: path) }
        let contextEnv = StepContextEnv(env: ["A": "1"], context: .init(project: ["code": "demo", "name": "Demo"], environment: ["code": "dev"]))
        try JSONEncoder().encode(contextEnv).write(to: path)
        #expect(try ExecEnvironment.variables(path: path.path) == ["A": "1", "OPSCHAIN_PROJECT_CODE": "demo", "OPSCHAIN_PROJECT_NAME": "Demo", "OPSCHAIN_ENVIRONMENT_CODE": "dev"])
        #expect(throws: ExecError.self) { try ExecEnvironment.variables(path: "/nonexistent/step_context_env.json") }
    }
}

extension ActionRunnerTests {
    @Test func guardsPrefixTheDiffWithTests() throws {
        let sandbox = try Sandbox(
            actions: "actions:\n  bump: { run: 'echo \"[\\\"/counter\\\", \\\"/absent\\\"]\" > \"$OPSCHAIN_PROJECT_GUARDS\"; jq \".counter += 1\" \"$OPSCHAIN_PROJECT_PROPERTIES\" > /tmp/g-$$ && mv /tmp/g-$$ \"$OPSCHAIN_PROJECT_PROPERTIES\"' }",
            project: ["counter": 1])
        #expect(sandbox.runner.run(action: "bump") == 0)
        #expect(try sandbox.result().project.propertiesDiff.json == JSON.parse(#"[{"op":"test","path":"/counter","value":1},{"op":"replace","path":"/counter","value":2}]"#))
    }
}
