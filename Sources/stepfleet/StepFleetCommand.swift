import ArgumentParser
import Foundation
import Protocol

@main
struct StepFleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stepfleet",
        abstract: "Run infrastructure changes as trees of steps on a fleet of workers.",
        version: StepFleetVersion.current,
        subcommands: [
            DispatcherCommand.self, WorkerCommand.self, ProjectCommand.self, EnvironmentCommand.self, PropertiesCommand.self,
            ChangeCommand.self, BatchCommand.self, TokenCommand.self, PatchCommand.self, DevCommand.self, BenchCommand.self, ChaosCommand.self, LoadCommand.self,
        ]
    )
}

/// Writes a line to standard output at once (not buffered), so progress shows as it happens
/// even into a pipe. When the reader has gone (`stepfleet change logs ID | head -1`) the
/// process ends as other Unix tools do, by SIGPIPE, without a word (SwiftNIO ignores SIGPIPE
/// for its sockets, and Foundation's `FileHandle.write` then crashes on EPIPE).
func say(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if written >= 0 {
            offset += written
        } else if errno == EPIPE {
            signal(SIGPIPE, SIG_DFL)
            raise(SIGPIPE)
            exit(141)
        } else if errno != EINTR && errno != EAGAIN {
            exit(74)  // EX_IOERR: standard output is broken in another way
        }
    }
}
