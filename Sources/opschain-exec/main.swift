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
// In the worker's per-build secrets container (see BuildSecretsServer).
if arguments.count == 2, arguments[0] == BuildSecretsServer.flag {
    FileHandle.standardError.write(Data("opschain-exec: \(BuildSecretsServer.serve(file: arguments[1]))\n".utf8))
    exit(1)
}
let path = ProcessInfo.processInfo.environment["OPSCHAIN_STEP_CONTEXT_ENV"] ?? ExecEnvironment.defaultPath
do {
    for (name, value) in try ExecEnvironment.variables(path: path) { setenv(name, value, 1) }
    // Inside an image build: the build secrets, for this command's environment only. An empty
    // URL means the build has none.
    if let url = ProcessInfo.processInfo.environment[BuildSecretsClient.variable], !url.isEmpty {
        for (name, value) in try BuildSecretsClient.fetch(url) { setenv(name, value, 1) }
    }
    unsetenv(BuildSecretsClient.variable)
} catch {
    FileHandle.standardError.write(Data("opschain-exec: \(error)\n".utf8))
    exit(127)
}
var argv = arguments.map { strdup($0) } + [nil]
execvp(arguments[0], &argv)
FileHandle.standardError.write(Data("opschain-exec: cannot run \(arguments[0]): \(String(cString: strerror(errno)))\n".utf8))
exit(127)
