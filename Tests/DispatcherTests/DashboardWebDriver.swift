import AsyncHTTPClient
import Foundation
import HostCommand
import NIOCore
import Protocol
import TestSupport

/// Debian's headless chromium, driven over WebDriver (W3C, JSON over HTTP) through its
/// `chromedriver`, from Swift: no Selenium, no PyPI. The browser reaches loopback only (every
/// host name resolves to nothing but 127.0.0.1, background networking off).
final class DashboardBrowser {
    static let chromium = "/usr/bin/chromium"
    static let chromedriver = "/usr/bin/chromedriver"
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    let driverPort: Int
    let session: String
    private let driver: pid_t

    var base: String { "http://127.0.0.1:\(driverPort)/session/\(session)" }

    /// Starts chromedriver and a headless chromium session; `logFolder` gets chromedriver's log.
    init(logFolder: String) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.chromium), FileManager.default.isExecutableFile(atPath: Self.chromedriver) else {
            throw TestSetupError("the browser tests need Debian's chromium and chromium-driver (ops/test installs them: apt-get install chromium chromium-driver)")
        }
        let port = Int.random(in: 40_000..<50_000)
        let process = try Spawn.launch(Self.chromedriver, ["--port=\(port)", "--log-path=\(logFolder)/chromedriver.log"], logPath: "/dev/null")
        driverPort = port
        driver = process
        let deadline = ContinuousClock.now + .seconds(20)
        var ready = false
        while !ready, ContinuousClock.now < deadline {
            ready = (try? await Self.call("GET", "http://127.0.0.1:\(port)/status", nil))?["value"]?["ready"]?.boolValue == true
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard ready else {
            kill(process, SIGKILL)
            Spawn.wait(process)
            throw TestSetupError("chromedriver did not answer on 127.0.0.1:\(port) within 20 s (see \(logFolder)/chromedriver.log)")
        }
        let arguments: [JSON] = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1100", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", .string("--user-data-dir=\(logFolder)/chromium-profile"),
        ]
        let capabilities: JSON = ["capabilities": ["alwaysMatch": ["browserName": "chrome", "goog:chromeOptions": ["binary": .string(Self.chromium), "args": .array(arguments)]]]]
        do {
            let answer = try await Self.call("POST", "http://127.0.0.1:\(port)/session", capabilities, timeout: .seconds(60))
            guard let id = answer["value"]?["sessionId"]?.stringValue else { throw TestSetupError("chromedriver made no session: \(answer.serialized())") }
            session = id
        } catch {
            kill(process, SIGKILL)
            Spawn.wait(process)
            throw error
        }
    }

    /// Ends the browser session and chromedriver.
    func quit() async {
        _ = try? await Self.call("DELETE", base, nil)
        // SIGKILL: the browser went with its session, and nothing of chromedriver's is needed.
        kill(driver, SIGKILL)
        Spawn.wait(driver)
    }

    // MARK: WebDriver commands

    func open(_ url: String) async throws { _ = try await command("POST", "/url", ["url": .string(url)]) }

    /// The first element `css` finds, or nil.
    func element(_ css: String) async throws -> String? {
        let answer = try await command("POST", "/elements", ["using": "css selector", "value": .string(css)])
        return answer.arrayValue?.first?[Self.elementKey]?.stringValue
    }

    /// Clicks the element `css` finds once it exists (a re-rendered element is looked up again).
    func click(_ css: String, timeout: Duration = .seconds(20)) async throws {
        try await retrying("click \(css)", timeout) { id in _ = try await self.command("POST", "/element/\(id)/click", [:]) } find: { try await self.element(css) }
    }

    func type(_ css: String, _ text: String) async throws {
        try await retrying("type into \(css)", .seconds(20)) { id in _ = try await self.command("POST", "/element/\(id)/value", ["text": .string(text)]) } find: { try await self.element(css) }
    }

    /// Runs `script` (a function body) in the page; its return value.
    @discardableResult
    func run(_ script: String, _ arguments: [JSON] = []) async throws -> JSON {
        try await command("POST", "/execute/sync", ["script": .string(script), "args": .array(arguments)])
    }

    /// Waits until `script` returns true; fails with `what` and the page's notice.
    func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ script: String, _ arguments: [JSON] = []) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await run(script, arguments).boolValue == true { return }
            try await Task.sleep(for: .milliseconds(150))
        }
        let notice = try? await run("return document.getElementById('notice') ? document.getElementById('notice').textContent : ''")
        throw TestSetupError("timed out after \(timeout) waiting until \(what) (page notice: \(notice?.stringValue ?? "none"))")
    }

    func cookies() async throws -> [JSON] { try await command("GET", "/cookie", nil).arrayValue ?? [] }

    /// The page as a PNG.
    func screenshot() async throws -> Data {
        guard let text = try await command("GET", "/screenshot", nil).stringValue, let data = Data(base64Encoded: text) else {
            throw TestSetupError("chromedriver sent no screenshot")
        }
        return data
    }

    private func retrying(_ what: String, _ timeout: Duration, _ action: (String) async throws -> Void, find: () async throws -> String?) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                if let id = try await find() {
                    try await action(id)
                    return
                }
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(150))
        }
        throw TestSetupError("could not \(what) within \(timeout): \(lastError.map { "\($0)" } ?? "no such element")")
    }

    private func command(_ method: String, _ path: String, _ body: JSON?) async throws -> JSON {
        let answer = try await Self.call(method, base + path, body)
        return answer["value"] ?? .null
    }

    private static func call(_ method: String, _ url: String, _ body: JSON?, timeout: Duration = .seconds(30)) async throws -> JSON {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Content-Type", value: "application/json")
        if let body { request.body = .bytes(ByteBuffer(string: body.serialized())) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(Int64(timeout.components.seconds)))
        let data = try await response.body.collect(upTo: 64 << 20)
        let json = (try? JSON.parse(bytes: data.readableBytesView)) ?? .string(String(buffer: data))
        guard (200..<300).contains(Int(response.status.code)) else {
            throw TestSetupError("WebDriver \(method) \(url): \(response.status.code) \(json["value"]?["message"]?.stringValue ?? json.serialized())")
        }
        return json
    }
}
