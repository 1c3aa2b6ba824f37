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
    // Inside an image build: the build secrets, for this command's environment only.
    if let url = ProcessInfo.processInfo.environment[BuildSecretsClient.variable], !url.isEmpty {
        for (name, value) in try BuildSecretsClient.fetch(url) { setenv(name, value, 1) }
        unsetenv(BuildSecretsClient.variable)
    }
} catch {
    FileHandle.standardError.write(Data("opschain-exec: \(error)\n".utf8))
    exit(127)
}
var argv = arguments.map { strdup($0) } + [nil]
execvp(arguments[0], &argv)
FileHandle.standardError.write(Data("opschain-exec: cannot run \(arguments[0]): \(String(cString: strerror(errno)))\n".utf8))
exit(127)
