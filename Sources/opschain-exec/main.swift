import Foundation
import StepRunner

#if canImport(Glibc)
    import Glibc
#endif

let arguments = Array(CommandLine.arguments.dropFirst())
guard !arguments.isEmpty else {
    FileHandle.standardError.write(Data("usage: opschain-exec COMMAND [ARGUMENT…]\n".utf8))
    exit(64)
}
let path = ProcessInfo.processInfo.environment["OPSCHAIN_STEP_CONTEXT_ENV"] ?? ExecEnvironment.defaultPath
do {
    for (name, value) in try ExecEnvironment.variables(path: path) { setenv(name, value, 1) }
} catch {
    FileHandle.standardError.write(Data("opschain-exec: \(error)\n".utf8))
    exit(127)
}
var argv = arguments.map { strdup($0) } + [nil]
execvp(arguments[0], &argv)
FileHandle.standardError.write(Data("opschain-exec: cannot run \(arguments[0]): \(String(cString: strerror(errno)))\n".utf8))
exit(127)
