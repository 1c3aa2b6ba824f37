import Foundation
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

/// The dashboard in a real browser (Debian's headless chromium over WebDriver) against a real
/// fleet: dispatcher, worker, broker, Docker and SQLite.
extension FleetTests {
    @Suite(.timeLimit(.minutes(8))) struct DashboardBrowserTests {
        static let secret = "hunter2-dashboard-secret"
        static let scriptPayload = "<script>window.__xss='script';document.title='pwned'</script>"
        static let imagePayload = #""><img src=x onerror="window.__xss='img';document.title='pwned'">"#
        static let hostileName = #""><img src=x onerror=window.__xss=3>"#

        /// Where the test's screenshots go (outside git).
        static let screenshots = repositoryRoot.appendingPathComponent(".state/screenshots")

        /// A fleet and a browser signed in to its dashboard; both stopped whatever happens.
        static func withDashboard(workers: Int = 1, _ body: (FleetHarness, DashboardBrowser, String) async throws -> Void) async throws {
            let fleet = try await FleetHarness(workers: workers, slots: 2)
            let browser: DashboardBrowser
            do {
                browser = try await DashboardBrowser(logFolder: fleet.folder)
            } catch {
                await fleet.stop()
                throw error
            }
            let url = "http://127.0.0.1:\(fleet.port)"
            do {
                try await signIn(browser, url, token: try #require(fleet.token.value))
                try await body(fleet, browser, url)
            } catch {
                await browser.quit()
                await fleet.stop()
                throw error
            }
            await browser.quit()
            await fleet.stop()
        }

        static func signIn(_ browser: DashboardBrowser, _ url: String, token: String) async throws {
            try await browser.open(url + "/ui/")
            try await browser.type("#token", token)
            try await browser.click("#sign-in button[type=submit]")
            try await browser.waitUntil("the dashboard shows the signed-in user", timeout: .seconds(20), """
                return !document.getElementById('nav').hidden && document.getElementById('who').textContent.includes('fleet-tests')
                """)
        }

        static func changeStatus(_ browser: DashboardBrowser) async throws -> String? {
            try await browser.run("const s = document.getElementById('change-status'); return s ? (s.dataset.status || null) : null").stringValue
        }

        static func stepStatus(_ browser: DashboardBrowser, _ action: String) async throws -> String? {
            try await browser.run("""
                const row = [...document.querySelectorAll('#tree li')].find((li) => li.dataset.action === arguments[0]);
                return row ? row.dataset.status : null
                """, [.string(action)]).stringValue
        }

        /// Texts of the log panel's lines of `stream`.
        static func logLines(_ browser: DashboardBrowser, _ stream: String) async throws -> [String] {
            try await browser.run("return [...document.querySelectorAll('#log .line.' + arguments[0] + ' .text')].map((t) => t.textContent)", [.string(stream)])
                .arrayValue?.compactMap(\.stringValue) ?? []
        }

        @Test func anOperatorRunsWatchesReadsCancelsAndSeesSecretsMasked() async throws {
            try await Self.withDashboard { fleet, browser, url in
                let repo = try await fleet.project("""
                    actions:
                      deploy: { run: 'echo out-line; echo err-line >&2', steps: [build, verify] }
                      build: { run: 'echo building' }
                      verify: { run: 'echo verified' }
                      slow: { run: 'echo started-slow; sleep 120' }
                    """, project: ["opschain": ["secrets": ["db_password": .string(Self.secret)]], "region": "eu"])

                // The session cookie is HttpOnly and SameSite=Strict: the page's script cannot read it.
                let cookie = try #require(try await browser.cookies().first { $0["name"]?.stringValue == "stepfleet_session" })
                #expect(cookie["httpOnly"]?.boolValue == true && cookie["sameSite"]?.stringValue == "Strict")
                #expect(try await browser.run("return document.cookie.includes('stepfleet_session')").boolValue == false)

                // Create a change from the form: project, environment, action from the actions file.
                try await browser.click("#nav a[data-page=new]")
                try await browser.click("#new-project option[value=\"\(repo.project)\"]")
                try await browser.click("#new-environment option[value=e]")
                try await browser.click("#new-action option[value=deploy]")
                #expect(try await browser.run("return [...document.querySelectorAll('#new-action option')].map((o) => o.value).join(',')").stringValue == "build,deploy,slow,verify")
                // A reload would lose this mark: it proves the tree below updated in place.
                try await browser.run("window.__samePage = 'kept'")
                try await browser.click("#new-submit")
                try await browser.waitUntil("the change page opens", timeout: .seconds(30), "return location.hash.startsWith('#/change/') && !!document.getElementById('change-status').dataset.status")
                let id = try #require(try await browser.run("return decodeURIComponent(location.hash.split('/')[2])").stringValue)
                #expect(try await fleet.snapshot(id).0.action == "deploy")

                // Watch the tree reach success without a reload.
                var seen: [String] = []
                let deadline = ContinuousClock.now + .seconds(150)
                while ContinuousClock.now < deadline {
                    let status = try await Self.changeStatus(browser) ?? "none"
                    if seen.last != status { seen.append(status) }
                    if status == "success" || status == "error" || status == "cancelled" { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(seen.last == "success", "statuses seen: \(seen)")
                #expect(seen.count >= 2, "the page showed the change before it finished, then its end: \(seen)")
                #expect(try await browser.run("return window.__samePage").stringValue == "kept")
                try await browser.waitUntil("every step shows success", timeout: .seconds(10), """
                    return [...document.querySelectorAll('#tree li')].map((li) => li.dataset.action + ':' + li.dataset.status).sort().join(',') === 'build:success,deploy:success,verify:success'
                    """)
                #expect(try await browser.run("return document.querySelector('#tree li[data-action=build] .detail').textContent").stringValue?.contains("attempt 1 · on fleet-worker-0") == true)

                // The root's log is open: stdout and stderr told apart.
                try await browser.waitUntil("the root's log shows both streams", timeout: .seconds(20), """
                    return [...document.querySelectorAll('#log .line.stdout .text')].some((t) => t.textContent === 'out-line')
                        && [...document.querySelectorAll('#log .line.stderr .text')].some((t) => t.textContent === 'err-line')
                    """)
                #expect(try await Self.logLines(browser, "stderr").contains("out-line") == false)
                // Another step's log.
                try await browser.click("#tree li[data-action=build] button.step-name")
                try await browser.waitUntil("the build step's log", timeout: .seconds(10), """
                    return document.getElementById('log-title').textContent === 'Log of build'
                        && [...document.querySelectorAll('#log .line.stdout .text')].some((t) => t.textContent === 'building')
                    """)
                #expect(try await Self.logLines(browser, "stdout").contains("out-line") == false)

                // The timeline: a row per step, with the worker's run phases as bars.
                #expect(try await browser.run("return document.querySelectorAll('#timeline .row').length").intValue == 3)
                #expect(try await browser.run("return document.querySelectorAll('#timeline .seg-run-running').length").intValue ?? 0 >= 3)
                try FileManager.default.createDirectory(at: Self.screenshots, withIntermediateDirectories: true)
                try await browser.screenshot().write(to: Self.screenshots.appendingPathComponent("dashboard-change.png"))

                // Cancel a long step from its page: its log streams while it runs, then it ends cancelled.
                let slow = try await fleet.createChange(repo, action: "slow")
                try await browser.open(url + "/ui/#/change/" + slow)
                try await browser.waitUntil("the slow step runs and its log streams", timeout: .seconds(90), """
                    return [...document.querySelectorAll('#log .line.stdout .text')].some((t) => t.textContent === 'started-slow')
                    """)
                #expect(try await Self.stepStatus(browser, "slow") == "running")
                try await browser.click("#cancel")
                try await browser.waitUntil("the change shows cancelled", timeout: .seconds(30), """
                    const row = document.querySelector('#tree li[data-action=slow]');
                    return document.getElementById('change-status').dataset.status === 'cancelled' && row && row.dataset.status === 'cancelled'
                    """)
                #expect(try await fleet.snapshot(slow).0.status == .cancelled)

                // Retry it from its page: the retry's page opens, a new change of the same action
                // that names the cancelled one as its origin, and it runs (then is cancelled too).
                try await browser.waitUntil("the retry button shows", timeout: .seconds(10), "const b = document.getElementById('retry'); return !!b && !b.hidden && !b.disabled")
                try await browser.click("#retry")
                try await browser.waitUntil("the retry's page opens", timeout: .seconds(30), """
                    return location.hash.startsWith('#/change/') && decodeURIComponent(location.hash.split('/')[2]) !== arguments[0]
                        && !!document.getElementById('change-status').dataset.status
                    """, [.string(slow)])
                let retried = try #require(try await browser.run("return decodeURIComponent(location.hash.split('/')[2])").stringValue)
                let retriedChange = try await fleet.snapshot(retried).0
                #expect(retriedChange.retryOf == slow && retriedChange.action == "slow")
                #expect(try await browser.run("return document.body.innerText.includes('Retry of')").boolValue == true)
                try await browser.waitUntil("the retried step runs", timeout: .seconds(90), """
                    return [...document.querySelectorAll('#log .line.stdout .text')].some((t) => t.textContent === 'started-slow')
                    """)
                try await browser.click("#cancel")
                try await browser.waitUntil("the retry shows cancelled", timeout: .seconds(30), "return document.getElementById('change-status').dataset.status === 'cancelled'")

                // Properties: the secret is masked in the document and in a diff of its change.
                _ = try await fleet.send("PATCH", "/projects/\(repo.project)/properties", [
                    ["op": "replace", "path": "/opschain/secrets/db_password", "value": .string(Self.secret + "-2")], ["op": "replace", "path": "/region", "value": "us"],
                ])
                try await browser.open(url + "/ui/#/properties/" + repo.project)
                try await browser.waitUntil("the current properties", timeout: .seconds(20), """
                    return document.getElementById('props-current').textContent.includes('"db_password": "****"') && document.querySelectorAll('#props-versions tr').length >= 2
                    """)
                // Who wrote the newest version: the API, with the harness's token.
                #expect(try await browser.run("return document.querySelector('#props-versions tr').textContent").stringValue?.contains("the API (token fleet-tests)") == true)
                try await browser.click("#diff-show")
                try await browser.waitUntil("the diff", timeout: .seconds(10), "return document.getElementById('props-diff').textContent.includes('replace /region = \"us\"')")
                #expect(try await browser.run("return document.getElementById('props-diff').textContent").stringValue?.contains(#"replace /opschain/secrets/db_password = "****""#) == true)
                #expect(try await browser.run("return document.body.innerText.includes(arguments[0])", [.string(Self.secret)]).boolValue == false)

                // Workers and the broker connection.
                try await browser.open(url + "/ui/#/workers")
                try await browser.waitUntil("the worker and the broker state", timeout: .seconds(20), """
                    return document.getElementById('broker-state') && document.getElementById('broker-state').textContent === 'connected'
                        && [...document.querySelectorAll('#workers tr')].some((tr) => (tr.dataset.worker || '').startsWith('fleet-worker-0'))
                    """)

                // Signing out ends the session: the cookie the browser held no longer works.
                let value = try #require(cookie["value"]?.stringValue)
                try await browser.click("#sign-out")
                try await browser.waitUntil("the sign-in form", timeout: .seconds(10), "return !!document.getElementById('sign-in')")
                let after = try await fleet.raw("GET", "/changes", nil, headers: ["Cookie": "stepfleet_session=\(value)"], authenticated: false)
                #expect(after.0 == 401)
            }
        }

        @Test func hostileLogsPropertiesAndStepNamesAreShownAsTextAndRunNothing() async throws {
            try await Self.withDashboard { fleet, browser, url in
                let repo = try await fleet.project("""
                    actions:
                      hostile: { run: 'cat payload.txt; cat payload.txt >&2', steps: ['\(Self.hostileName)'] }
                      '\(Self.hostileName)': { run: 'cat payload.txt' }
                    """,
                    project: ["note": .string(Self.scriptPayload), "html": .string(Self.imagePayload), "opschain": ["secrets": ["k": "hostile-secret-<b>bold</b>"]]],
                    environment: ["x": .string(Self.scriptPayload)],
                    files: ["payload.txt": Self.scriptPayload + "\n" + Self.imagePayload + "\n"])
                let id = try await fleet.createChange(repo, action: "hostile")
                try await browser.open(url + "/ui/#/change/" + id)
                try await browser.waitUntil("the change finishes", timeout: .seconds(150), """
                    return ['success', 'error', 'cancelled'].includes(document.getElementById('change-status').dataset.status)
                    """)
                // The hostile step name is a step in the tree, as text.
                #expect(try await browser.run("""
                    return [...document.querySelectorAll('#tree button.step-name')].some((b) => b.textContent === arguments[0])
                    """, [.string(Self.hostileName)]).boolValue == true)
                try await browser.waitUntil("the payloads in the log as text, on both streams", timeout: .seconds(20), """
                    const texts = (stream) => [...document.querySelectorAll('#log .line.' + stream + ' .text')].map((t) => t.textContent);
                    return ['stdout', 'stderr'].every((s) => texts(s).includes(arguments[0]) && texts(s).includes(arguments[1]))
                    """, [.string(Self.scriptPayload), .string(Self.imagePayload)])
                try await browser.click("#tree li[data-action='\(Self.hostileName)'] button.step-name")
                try await browser.waitUntil("the hostile step's own log", timeout: .seconds(20), """
                    return [...document.querySelectorAll('#log .line.stdout .text')].some((t) => t.textContent === arguments[0])
                        && document.getElementById('log-title').textContent === 'Log of ' + arguments[1]
                    """, [.string(Self.imagePayload), .string(Self.hostileName)])
                try await Self.expectNothingRan(browser)

                for path in ["/ui/#/properties/\(repo.project)", "/ui/#/properties/\(repo.project)/e", "/ui/#/changes"] {
                    try await browser.open(url + path)
                    try await Task.sleep(for: .milliseconds(300))
                    if path.contains("properties") {
                        try await browser.waitUntil("the hostile properties as text on \(path)", timeout: .seconds(20), """
                            return document.getElementById('props-current').textContent.includes(JSON.stringify(arguments[0]).slice(1, -1))
                            """, [.string(Self.scriptPayload)])
                    } else {
                        try await browser.waitUntil("the changes list", timeout: .seconds(20), "return document.querySelectorAll('#changes tr[data-change-id]').length >= 1")
                    }
                    try await Self.expectNothingRan(browser)
                }
            }
        }

        /// No payload ran (no global set, the title kept) and none became an element.
        static func expectNothingRan(_ browser: DashboardBrowser) async throws {
            let verdict = try await browser.run("""
                return { xss: typeof window.__xss, title: document.title, elements: document.querySelectorAll('main img, main script, #notice img').length }
                """)
            #expect(verdict["xss"]?.stringValue == "undefined")
            #expect(verdict["title"]?.stringValue == "StepFleet")
            #expect(verdict["elements"]?.intValue == 0)
        }
    }
}
