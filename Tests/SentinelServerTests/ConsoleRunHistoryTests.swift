import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Console: a run's state history")
struct ConsoleRunHistoryTests {
    @Test("the run page lists each state change with its time, what happened, who asked and why it ended")
    func history() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let finished = try await world.addFinishedRun(repository: repo)
        // A run that started, then was superseded by a newer head of the same pull request.
        let older = try await world.addQueuedRun(repository: repo, pr: 9)
        try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in try tx.db.execute(sql: "UPDATE review_runs SET state = 'running', started_at = ? WHERE id = ?",
                                                            arguments: [tx.now.timeIntervalSince1970, older]) }
        }
        let newer = try await world.addQueuedRun(repository: repo, pr: 10)
        let superseding = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                let record = try RepositoryStore.find(id: repo, in: tx.db)!
                return try ReviewRunStore.request(repository: record, prNumber: 9, headSHA: "def456", baseSHA: nil, trigger: "push",
                                                  fullReview: false, correlationID: nil, in: &tx).0
            }
        }
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("member@example.com", APIWorld.password(.member))
            let done = try await browser.get(base + "/runs/\(finished)")
            #expect(done.body.contains("<h2>History</h2>"))
            let doneRows = historyRows(done.body)
            #expect(doneRows.count == 2, "\(doneRows)")
            #expect(doneRows.first?.hasPrefix("queued|Created by the test:") == true)
            #expect(doneRows.last == "completed|Completed with 1 finding||")
            #expect(done.body.contains(#"<table class="history"><caption>Each change of the run's state, oldest first</caption>"#))
            #expect(done.body.contains(" UTC</td><td><span class=\"state queued\">queued</span>"))

            #expect(historyRows(try await browser.get(base + "/runs/\(older)").body) == [
                "queued|Created by the opened trigger||", "running|Started||", "superseded|Ended superseded||superseded by run \(superseding)",
            ])
            #expect(historyRows(try await browser.get(base + "/runs/\(newer)").body) == ["queued|Created by the opened trigger||"])

            // A re-run names who asked for it; a cancel who cancelled it.
            let rerun = try await browser.post(base + "/runs/\(finished)/rerun")
            let location = try #require(rerun.location)
            let newID = try #require(location.split(separator: "/").last.map(String.init))
            #expect(historyRows(try await browser.get(location).body) == ["queued|Created on request|member@example.com|"])
            #expect(try await browser.post(base + "/runs/\(newID)/cancel").status == .seeOther)
            #expect(historyRows(try await browser.get(location).body) == [
                "queued|Created on request|member@example.com|", "skipped|Cancelled|member@example.com|cancelled by member@example.com",
            ])
        }
    }
}

@Suite("Console: the pull request link of a run")
struct ConsolePullRequestLinkTests {
    @Test("the pull request link: github.com, a GitHub Enterprise Server host, and a GitLab merge request under the instance's path")
    func pullRequestLinks() async throws {
        let world = try APIWorld()
        let github = try await world.addRepository("acme/api", kind: "github", apiURL: "https://api.github.com")
        let ghes = try await world.addRepository("acme/web", kind: "github", apiURL: "https://ghe.example.com/api/v3")
        let gitlab = try await world.addRepository("group/sub/project", kind: "gitlab", apiURL: "https://gitlab.example.com/gl")
        let runs = (try await world.addQueuedRun(repository: github, pr: 7), try await world.addQueuedRun(repository: ghes, pr: 3),
                    try await world.addQueuedRun(repository: gitlab, pr: 12))
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("viewer@example.com", APIWorld.password(.viewer))
            let onGitHub = try await browser.get(base + "/runs/\(runs.0)")
            #expect(onGitHub.body.contains(#"<a href="https://github.com/acme/api/pull/7">"#))
            let onGHES = try await browser.get(base + "/runs/\(runs.1)")
            #expect(onGHES.body.contains(#"<a href="https://ghe.example.com/acme/web/pull/3">"#))
            let onGitLab = try await browser.get(base + "/runs/\(runs.2)")
            #expect(onGitLab.body.contains(#"<a href="https://gitlab.example.com/gl/group/sub/project/-/merge_requests/12">"#), "\(onGitLab.body)")
            #expect(!onGitLab.body.contains("/pull/12"))
            // Named as each platform names it (a merge request read "PR #12", its link "Pull request").
            #expect(onGitLab.body.contains("group/sub/project MR !12</h1>") && onGitLab.body.contains("<dt>Merge request</dt>"), "\(onGitLab.body)")
            #expect(onGitHub.body.contains("acme/api PR #7</h1>") && onGitHub.body.contains("<dt>Pull request</dt>"))
        }
    }
}
