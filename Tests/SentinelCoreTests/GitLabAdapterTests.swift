import Foundation
import SentinelCore
import Testing

@Suite("GitLab adapter")
struct GitLabAdapterTests {
    @Test("X-Gitlab-Token must equal the webhook secret exactly")
    func webhookToken() {
        let secret = Data("s3cret-token".utf8)
        #expect(GitLabWebhookToken.isValid(header: "s3cret-token", secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: "s3cret-token ", secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: "s3cret", secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: nil, secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: "", secret: secret))
    }

    @Test("draft titles are recognised as GitLab marks them")
    func draftTitles() {
        for title in ["Draft: fix", "draft: fix", "[Draft] fix", "(Draft) fix", "WIP: fix", "[WIP] fix"] {
            #expect(GitLabSession.hasDraftTitle(title), "\(title)")
        }
        for title in ["Fix drafts", "Redraft: the parser", "fix"] { #expect(!GitLabSession.hasDraftTitle(title), "\(title)") }
    }

    @Test("suggestion fences become GitLab's suggestion:-N+0 for the lines the finding spans")
    func suggestions() {
        let one = ReviewComment(path: "a", line: 5, side: .right, startLine: nil, body: "Use x.\n\n```suggestion\nlet x = 1\n```")
        #expect(GitLabSession.gitLabBody(one).contains("```suggestion:-0+0\nlet x = 1\n```"))
        let three = ReviewComment(path: "a", line: 7, side: .right, startLine: 5, body: "````suggestion\na\nb\nc\n````")
        #expect(GitLabSession.gitLabBody(three).hasPrefix("````suggestion:-2+0\n"))
    }
}
