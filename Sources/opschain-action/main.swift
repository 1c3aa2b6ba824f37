import Foundation
import StepRunner

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments == [AwaitedAction.flag] {
    // Started before its step is known (the oci runtime's warm container): do the work every
    // run does first, then wait for the action's name.
    ActionRunner.prepare()
    switch AwaitedAction.read() {
    case .success(let action):
        exit(ActionRunner().run(action: action))
    case .failure(let problem):
        FileHandle.standardError.write(Data("opschain-action \(AwaitedAction.flag): \(problem)\n".utf8))
        exit(64)
    }
}
guard arguments.count == 1, let action = arguments.first, !action.hasPrefix("-") else {
    FileHandle.standardError.write(Data("usage: opschain-action ACTION\n       opschain-action \(AwaitedAction.flag)   (the action's name on standard input)\n".utf8))
    exit(64)
}
exit(ActionRunner().run(action: action))
