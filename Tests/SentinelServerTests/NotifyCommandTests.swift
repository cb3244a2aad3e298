import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("sentinel notify")
struct NotifyCommandTests {
    @Test("add, list (redacted), test (the remote answer, delivered or not), remove")
    func addListTestRemove() async throws {
        let receiver = try await FakeNotificationReceiver.start()
        let dir = TemporaryDirectory("sentinel-cli-notify")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let urlFile = dir.url.appendingPathComponent("slack-url").path
        let hookURLFile = dir.url.appendingPathComponent("hook-url").path
        let secretFile = dir.url.appendingPathComponent("secret").path
        try Data((receiver.baseURL + "/slack/T000/B000/TOKENSECRET").utf8).write(to: URL(fileURLWithPath: urlFile))
        try Data((receiver.baseURL + "/hook").utf8).write(to: URL(fileURLWithPath: hookURLFile))
        try Data("not-the-receivers-secret".utf8).write(to: URL(fileURLWithPath: secretFile))
        _ = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])

        let added = try await SentinelProcess.run(["notify", "add", "--data-dir", data, "--workspace", "acme", "--kind", "slack", "--name", "alerts",
                                                   "--url-file", urlFile, "--event", "run.failed", "--event", "plan.soft_limit", "--json"])
        #expect(added.status == 0, "\(added.stderr)")
        let channel = try #require((try JSONSerialization.jsonObject(with: Data(added.stdout.utf8))) as? [String: Any])
        let id = try #require(channel["id"] as? String)
        #expect(channel["destination"] as? String == "\(receiver.baseURL)/…")

        let listed = try await SentinelProcess.run(["notify", "list", "--data-dir", data, "--workspace", "acme"])
        #expect(listed.status == 0)
        #expect(listed.stdout.contains(id) && listed.stdout.contains("events=plan.soft_limit,run.failed"))
        #expect(!listed.stdout.contains("TOKENSECRET"))

        let tested = try await SentinelProcess.run(["notify", "test", id, "--data-dir", data, "--workspace", "acme"])
        #expect(tested.status == 0, "\(tested.stderr)")
        #expect(tested.stdout.contains("delivered: HTTP 200  ok"), "\(tested.stdout)")
        let slack = await receiver.state.accepted("/slack")
        #expect(slack.count == 1)
        #expect((slack.first?.json["text"] as? String)?.contains("test message for channel alerts") == true)

        // A webhook channel whose secret the receiver does not share: the answer is reported and the exit status says so.
        let hook = try await SentinelProcess.run(["notify", "add", "--data-dir", data, "--workspace", "acme", "--kind", "webhook", "--name", "hook",
                                                  "--url-file", hookURLFile, "--secret-file", secretFile, "--event", "run.failed", "--json"])
        let hookID = try #require(((try JSONSerialization.jsonObject(with: Data(hook.stdout.utf8))) as? [String: Any])?["id"] as? String)
        let refused = try await SentinelProcess.run(["notify", "test", hookID, "--data-dir", data, "--workspace", "acme"])
        #expect(refused.status != 0)
        #expect(refused.stdout.contains("not delivered: HTTP 401  bad or stale signature"), "\(refused.stdout)")

        let bad = try await SentinelProcess.run(["notify", "add", "--data-dir", data, "--workspace", "acme", "--kind", "pager", "--name", "x",
                                                 "--url-file", urlFile, "--event", "run.failed"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("unknown channel kind 'pager'"), "\(bad.stderr)")
        // Options of another kind of channel were dropped without a word (and a minimum severity nothing used).
        let mixed = try await SentinelProcess.run(["notify", "add", "--data-dir", data, "--workspace", "acme", "--kind", "slack", "--name", "x",
                                                   "--url-file", urlFile, "--smtp-host", "mail.example.com", "--event", "run.failed"])
        #expect(mixed.status != 0 && mixed.stderr.contains("--smtp-host is for email channels, not slack"), "\(mixed.stderr)")
        let severity = try await SentinelProcess.run(["notify", "add", "--data-dir", data, "--workspace", "acme", "--kind", "slack", "--name", "x",
                                                      "--url-file", urlFile, "--min-severity", "high", "--event", "run.failed"])
        #expect(severity.status != 0 && severity.stderr.contains("--min-severity applies to the run.findings event only"), "\(severity.stderr)")
        let both = try await SentinelProcess.run(["provider", "budget", "--data-dir", data, "--workspace", "acme", "--none", "--usd", "5"])
        #expect(both.status != 0 && both.stderr.contains("give --usd AMOUNT or --none, not both"), "\(both.stderr)")

        for channelID in [id, hookID] {
            #expect(try await SentinelProcess.run(["notify", "remove", channelID, "--data-dir", data, "--workspace", "acme"]).status == 0)
        }
        #expect(try await SentinelProcess.run(["notify", "list", "--data-dir", data, "--workspace", "acme"]).stdout.contains("no notification channels"))
        await receiver.stop()
    }
}
