import Foundation
import StepRunner

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 1, let action = arguments.first, !action.hasPrefix("-") else {
    FileHandle.standardError.write(Data("usage: opschain-action ACTION\n".utf8))
    exit(64)
}
exit(ActionRunner().run(action: action))
