import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

/// The loopback fakes for the browser test (`appliance/tests/console_browser.py`), which starts this
/// one test with `SENTINEL_BROWSER_FAKES=DIR`: a fake GitHub (manifest flow, the pull request to
/// review, reviews and checks) and a fake OpenAI-compatible model. Their addresses go to
/// `DIR/fakes.json`; they serve until `DIR/stop` appears, then the test checks that the browser
/// test used them (the App was created from a manifest and converted, a review was posted).
/// Without the variable the test is skipped.
@Suite("Console browser test: loopback fakes")
struct ConsoleBrowserFakes {
    static let directory = ProcessInfo.processInfo.environment["SENTINEL_BROWSER_FAKES"]
    static let repository = "acme/web"

    @Test("serve the fake GitHub and the fake model until the browser test is done", .enabled(if: directory != nil))
    func serve() async throws {
        let directory = URL(fileURLWithPath: try #require(Self.directory))
        let github = try await FakeGitHub.start()
        let llm = try await FakeLLMServer.start()
        await llm.state.setReview(summary: "One issue.", findings: [
            FakeLLMFinding(path: "app.py", line: 2, severity: "medium", category: "correctness", title: "KEY may be missing",
                           body: "os.environ.get returns None when KEY is unset; print(KEY) then prints None."),
        ])
        await github.state.addPull(FakePullRequest(repo: Self.repository, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: [
            ("app.py", "modified", "@@ -1,3 +1,4 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n+AWS_ACCESS_KEY_ID = \"AKIAQWERTYUIOPASDFGH\"\n print(KEY)"),
            ("README.md", "modified", "@@ -10,2 +10,4 @@\n ## Usage\n+<<<<<<< HEAD\n+Run it.\n Done."),
        ]))
        let fakes: [String: Any] = [
            "github": github.baseURL.absoluteString, "llm": llm.openAIBaseURL.absoluteString,
            "llm_key": FakeLLMServer.defaultKeys[.openAI] ?? "", "webhook_secret": "fake-manifest-webhook-secret",
            "repository": Self.repository, "pr": 7, "head": "aaa111", "base": "bbb000",
        ]
        let temp = directory.appendingPathComponent("fakes.json.tmp")
        try JSONSerialization.data(withJSONObject: fakes).write(to: temp)
        try FileManager.default.moveItem(at: temp, to: directory.appendingPathComponent("fakes.json"))
        let stop = directory.appendingPathComponent("stop").path
        while !FileManager.default.fileExists(atPath: stop) {
            try await Task.sleep(for: .milliseconds(100))
        }
        let requests = await github.state.requests
        await llm.stop()
        await github.stop()
        #expect(requests.contains("POST settings/apps/new"))
        #expect(requests.contains("POST app-manifests conversions"))
        #expect(!(await github.state.reviews(on: Self.repository, 7)).isEmpty)
    }
}
