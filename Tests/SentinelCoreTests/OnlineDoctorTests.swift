import _CryptoExtras
import Foundation
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("sentinel doctor --online")
struct OnlineDoctorTests {
    func integration(_ github: FakeGitHub, key: String? = nil, api: URL? = nil) -> GitHubIntegration {
        GitHubIntegration(id: IntegrationID("int_doctor0000000000")!, workspaceID: WorkspaceID.generate(), appID: github.appID,
                          apiURL: api ?? github.baseURL, caBundlePEM: nil, privateKeyPEM: key ?? github.privateKeyPEM,
                          webhookSecret: Data("s".utf8), botLogin: nil)
    }

    func summary(_ findings: [DoctorFinding]) -> [String] {
        findings.map { "\($0.severity.rawValue): \($0.message)" }
    }

    @Test("a reachable API with valid App credentials: ok; no installation is a warning; an installation makes it all ok")
    func healthy() async throws {
        let github = try await FakeGitHub.start()
        let http = try AsyncOutboundHTTPClient()
        let first = await OnlineDoctor().checkGitHub(integration(github), workspaceName: "acme", http: http)
        #expect(first.map(\.severity) == [.ok, .ok, .warning], "\(summary(first))")
        #expect(first.last?.message.contains("not installed anywhere") == true)
        #expect(first.last?.fix?.contains("install the GitHub App") == true)
        #expect(first.allSatisfy { $0.check == "github" && $0.message.contains("int_doctor0000000000") && $0.message.contains("acme") })
        await github.state.addInstallation(7, account: "acme-org")
        let second = await OnlineDoctor().checkGitHub(integration(github), workspaceName: "acme", http: http)
        #expect(second.map(\.severity) == [.ok, .ok, .ok], "\(summary(second))")
        #expect(second.last?.message.contains("1 installation") == true)
        let requests = await github.state.requests
        #expect(requests.filter { $0 == "GET app" }.count == 2 && requests.filter { $0 == "GET installations" }.count == 2)
        await http.shutdown()
        await github.stop()
    }

    @Test("a private key GitHub does not know for the App is an error naming the fix")
    func wrongKey() async throws {
        let github = try await FakeGitHub.start()
        let http = try AsyncOutboundHTTPClient()
        let other = try TestRSAKeys.other().pemRepresentation
        let findings = await OnlineDoctor().checkGitHub(integration(github, key: other), workspaceName: "acme", http: http)
        let error = try #require(findings.first { $0.severity == .error }, "\(summary(findings))")
        #expect(error.message.contains("credentials are refused") && error.message.contains("401"), "\(error.message)")
        #expect(error.fix?.contains("private key") == true)
        #expect(!(await github.state.requests).contains("GET installations"), "no further calls with refused credentials")
        await http.shutdown()
        await github.stop()
    }

    @Test("a clock ten minutes off is an error (its App JWTs are refused too); an unreachable API is an error")
    func skewAndUnreachable() async throws {
        let github = try await FakeGitHub.start()
        let http = try AsyncOutboundHTTPClient()
        await github.state.addInstallation(7, account: "acme-org")
        let skewed = await OnlineDoctor().checkGitHub(integration(github), workspaceName: "acme", http: http, now: { Date().addingTimeInterval(-600) })
        let clock = try #require(skewed.first { $0.message.contains("clock") }, "\(summary(skewed))")
        #expect(clock.severity == .error && clock.message.contains("behind") && clock.fix?.contains("NTP") == true, "\(clock)")
        #expect(skewed.contains { $0.severity == .error && $0.message.contains("credentials are refused") })
        let ahead = await OnlineDoctor().checkGitHub(integration(github), workspaceName: "acme", http: http, now: { Date().addingTimeInterval(45) })
        #expect(ahead.first { $0.message.contains("clock") }?.severity == .warning, "\(summary(ahead))")
        let port = github.port
        await github.stop()
        let gone = await OnlineDoctor().checkGitHub(integration(github, api: URL(string: "http://127.0.0.1:\(port)")!), workspaceName: "acme", http: http)
        #expect(gone.count == 1 && gone.first?.severity == .error && gone.first?.message.contains("cannot be reached") == true, "\(summary(gone))")
        await http.shutdown()
    }

    @Test("each AI provider kind's models endpoint is called with its own authentication: ok with the right key, an error naming rotate with a wrong one")
    func providers() async throws {
        let llm = try await FakeLLMServer.start()
        let http = try AsyncOutboundHTTPClient()
        for kind in ProviderKind.allCases {
            let good = await OnlineDoctor().checkProvider(llm.config(kind), workspaceName: "acme", http: http)
            #expect(good.severity == .ok && good.check == "ai-provider", "\(kind): \(good.message)")
            let bad = await OnlineDoctor().checkProvider(llm.config(kind, key: "wrong-key-123456"), workspaceName: "acme", http: http)
            if kind == .openAICompatible {
                #expect(bad.severity == .error, "\(kind): \(bad.message)")
            } else {
                #expect(bad.severity == .error && bad.message.contains("key is refused") && bad.fix?.contains("sentinel provider rotate") == true,
                        "\(kind): \(bad.message)")
            }
            #expect(!bad.message.contains("wrong-key-123456"), "the key is never shown")
        }
        let calls = await llm.state.requests().filter { $0.method == "GET" }
        #expect(Set(calls.map(\.api)) == Set(FakeLLMAPI.allCases), "\(calls.map(\.path))")
        #expect(calls.allSatisfy { $0.path.hasSuffix("/models") })
        #expect(await llm.state.requests().allSatisfy { $0.method == "GET" }, "no completion was requested: no tokens spent")
        await http.shutdown()
        await llm.stop()
    }

    @Test("a GitLab token the instance accepts is ok; one expiring within 30 days a warning; a revoked one, or one without the api scope's reach, is an error naming the fix")
    func gitLab() async throws {
        let gitlab = try await FakeGitLab.start()
        let http = try AsyncOutboundHTTPClient()
        func integration(_ token: String) -> GitLabIntegration {
            GitLabIntegration(id: IntegrationID("int_doctorgitlab0000")!, workspaceID: WorkspaceID.generate(), baseURL: gitlab.baseURL,
                              caBundlePEM: nil, token: token, webhookSecret: Data("s".utf8), botUsername: nil)
        }
        let healthy = await OnlineDoctor().checkGitLab(integration(FakeGitLab.token), workspaceName: "acme", http: http)
        #expect(healthy.map(\.severity) == [.ok], "\(summary(healthy))")
        #expect(healthy.first?.message.contains(FakeGitLabState.botUser.username) == true)
        // GitLab says when the token expires: within 30 days is a warning naming the rotation.
        func day(_ days: Double) -> String { String(ISO8601.string(Date().addingTimeInterval(days * 86_400)).prefix(10)) }
        await gitlab.state.setTokenExpiry(FakeGitLab.token, day(10))
        let expiring = await OnlineDoctor().checkGitLab(integration(FakeGitLab.token), workspaceName: "acme", http: http)
        let warning = try #require(expiring.first { $0.severity == .warning }, "\(summary(expiring))")
        #expect(warning.message.contains("expires on \(day(10))") && warning.message.contains("in 9 day(s)"), "\(warning.message)")
        #expect(warning.fix?.contains("sentinel integration rotate int_doctorgitlab0000 --workspace acme --token-file") == true, "\(warning.fix ?? "")")
        await gitlab.state.setTokenExpiry(FakeGitLab.token, day(100))
        #expect(await OnlineDoctor().checkGitLab(integration(FakeGitLab.token), workspaceName: "acme", http: http).map(\.severity) == [.ok])
        await gitlab.state.revokeToken(FakeGitLab.token)
        let revoked = await OnlineDoctor().checkGitLab(integration(FakeGitLab.token), workspaceName: "acme", http: http)
        let error = try #require(revoked.first { $0.severity == .error }, "\(summary(revoked))")
        #expect(error.message.contains("token is refused") && error.fix?.contains("api scope") == true, "\(error.message)")
        let unknown = await OnlineDoctor().checkGitLab(integration("glpat-unknown"), workspaceName: "acme", http: http)
        #expect(unknown.contains { $0.severity == .error && $0.message.contains("401") }, "\(summary(unknown))")
        await http.shutdown()
        await gitlab.stop()
    }
}
