import Foundation
import HostCommand
import TestSupport

/// A unix socket in front of the Docker engine that holds each container's start request
/// until the test opens the gate, and notes in order what it saw: `start-held ID`,
/// `kill ID`, `start-released ID`. A test can so put a cancel exactly between a step's
/// "run started" and its container's start, and prove it came there.
final class StartHoldingProxy: Sendable {
    let socket: String
    let gate: String
    let notes: String
    private let pid: pid_t

    private static let script = #"""
        import os, re, socket, sys, threading, time
        listen_path, target, gate, notes = sys.argv[1:5]
        START = re.compile(rb'POST [^ ]*/containers/([0-9a-f]+)/start')
        KILL = re.compile(rb'POST [^ ]*/containers/([0-9a-f]+)/kill')
        lock = threading.Lock()
        def note(text):
            with lock, open(notes, 'a') as f:
                f.write(text + '\n')
        def pump(src, dst, inspect):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if inspect:
                        for m in KILL.finditer(data):
                            note('kill ' + m.group(1).decode())
                        m = START.search(data)
                        if m:
                            note('start-held ' + m.group(1).decode())
                            while not os.path.exists(gate):
                                time.sleep(0.02)
                            note('start-released ' + m.group(1).decode())
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(listen_path)
        server.listen(64)
        while True:
            client, _ = server.accept()
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(target)
            threading.Thread(target=pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=pump, args=(engine, client, False), daemon=True).start()
        """#

    /// `holdingStarts: false`: a plain forwarder (one process: stopping it ends every
    /// connection it forwards, so the engine is away at once).
    init(socket path: String? = nil, holdingStarts: Bool = true) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("hold-\(UUID().uuidString.prefix(6))").path
        socket = path ?? base + ".sock"
        gate = base + ".gate"
        notes = base + ".notes"
        FileManager.default.createFile(atPath: notes, contents: nil)
        if !holdingStarts { FileManager.default.createFile(atPath: gate, contents: nil) }
        unlink(socket)
        pid = try Spawn.launch("/usr/bin/python3", ["-c", Self.script, socket, "/var/run/docker.sock", gate, notes], logPath: base + ".log")
        let deadline = ContinuousClock.now + .seconds(10)
        while !FileManager.default.fileExists(atPath: socket) {
            guard ContinuousClock.now < deadline else { throw TestSetupError("the start-holding proxy did not listen on \(socket) within 10 s") }
            usleep(20_000)
        }
    }

    /// What the proxy saw, in order.
    var seen: [String] {
        ((try? String(contentsOfFile: notes, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Lets held starts (and all later ones) through.
    func release() {
        FileManager.default.createFile(atPath: gate, contents: nil)
    }

    /// Ends the proxy (and so every connection it forwards) at once. SIGKILL: it needs no
    /// goodbye, and a signal that cannot be blocked or ignored is the one a wait can rely on.
    func stop() {
        release()
        kill(pid, SIGKILL)
        Spawn.wait(pid)
        for path in [socket, gate, notes] { unlink(path) }
    }
}
