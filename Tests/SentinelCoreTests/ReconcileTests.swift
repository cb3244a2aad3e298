import Foundation
import SentinelCore
import Testing

@Suite("Catch-up building blocks")
struct ReconcileTests {
    @Test("the next page of a Link header: GitHub's page and cursor forms, several relations, none on the last page")
    func nextPageQuery() {
        let pages = #"<https://api.github.com/repositories/1300192/pulls?state=open&per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1300192/pulls?state=open&per_page=100&page=7>; rel="last""#
        #expect(GitHubClient.nextPageQuery(pages)?.map { "\($0.0)=\($0.1)" } == ["state=open", "per_page=100", "page=2"])
        let cursor = #"<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12077215967>; rel="next""#
        #expect(GitHubClient.nextPageQuery(cursor)?.first { $0.0 == "cursor" }?.1 == "v1_12077215967")
        let last = #"<https://api.github.com/repositories/1/pulls?page=1>; rel="prev", <https://api.github.com/repositories/1/pulls?page=1>; rel="first""#
        #expect(GitHubClient.nextPageQuery(last) == nil)
        #expect(GitHubClient.nextPageQuery(nil) == nil)
        #expect(GitHubClient.nextPageQuery("garbage") == nil)
    }

    @Test("the rate budget is read from GitHub's x-ratelimit headers; an answer without them changes nothing")
    func rateBudget() async {
        let budget = GitHubRateBudget()
        await budget.observe(OutboundResponse(status: 200, headers: [("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "900"),
                                                                     ("x-ratelimit-reset", "1767225600")]))
        #expect(await budget.current == RateBudget(remaining: 900, limit: 5000, resetAt: Date(timeIntervalSince1970: 1_767_225_600)))
        #expect(await budget.current?.fraction == 0.18)
        await budget.observe(OutboundResponse(status: 200, headers: [("Content-Type", "application/json")]))
        #expect(await budget.current?.remaining == 900)
    }

    @Test("the first sweep comes within 10% of the interval (at most 30 s), the next ones at the interval ±10%")
    func delays() {
        for _ in 0..<100 {
            #expect((0...30).contains(ReconcileService.delay(interval: 600, first: true)))
            #expect((0...0.5).contains(ReconcileService.delay(interval: 5, first: true)))
            #expect((540...660).contains(ReconcileService.delay(interval: 600, first: false)))
        }
    }
}

@Suite("GitLab catch-up building blocks")
struct GitLabReconcileTests {
    @Test("the rate budget is read from GitLab's RateLimit-* headers (reset in Unix seconds); an answer without them changes nothing")
    func rateBudget() async {
        let budget = GitLabRateBudget()
        #expect(await budget.current == nil)
        await budget.observe(OutboundResponse(status: 200, headers: [("RateLimit-Limit", "2000"), ("RateLimit-Remaining", "300"),
                                                                     ("RateLimit-Reset", "1767225600"), ("RateLimit-Observed", "1700")]))
        #expect(await budget.current == RateBudget(remaining: 300, limit: 2000, resetAt: Date(timeIntervalSince1970: 1_767_225_600)))
        #expect(await budget.current?.fraction == 0.15)
        await budget.observe(OutboundResponse(status: 200, headers: [("Content-Type", "application/json")]))
        #expect(await budget.current?.remaining == 300)
    }
}
