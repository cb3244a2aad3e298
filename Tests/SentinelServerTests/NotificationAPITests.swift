import Foundation
import HTTPTypes
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("API: notification channels")
struct NotificationAPITests {
    @Test("add, list (redacted), test (the remote answer), remove: audited, secrets and passwords write-only, bad bodies refused")
    func channels() async throws {
        let receiver = try await FakeNotificationReceiver.start()
        let world = try APIWorld()
        let ws = world.workspaceA
        let admin = world.token(.admin)
        try await world.test { api in
            let slack = try await api.call(.post, "/workspaces/\(ws)/notifications", token: admin, body: """
                {"kind":"slack","name":"alerts","url":"\(receiver.baseURL)/slack/T000/B000/URLSECRET","events":["run.failed","ai.budget"]}
                """)
            #expect(slack.status == .created, "\(slack.body)")
            let slackID = try #require(slack.json["id"] as? String)
            #expect(slack.json["destination"] as? String == "\(receiver.baseURL)/…")
            #expect(slack.json["topics"] as? [String] == ["ai.budget", "run.failed"])

            let email = try await api.call(.post, "/workspaces/\(ws)/notifications", token: admin, body: """
                {"kind":"email","name":"mail","events":["job.dead"],"email":{"host":"127.0.0.1","port":9,"security":"tls",
                 "username":"bot","password":"MAILPASSWORDSECRET","from":"sentinel@example.com","to":["ops@example.com"]}}
                """)
            #expect(email.status == .created, "\(email.body)")
            let emailID = try #require(email.json["id"] as? String)
            #expect(email.json["destination"] as? String == "smtp://127.0.0.1:9 (tls, 1 recipient)")

            let hook = try await api.call(.post, "/workspaces/\(ws)/notifications", token: admin, body: """
                {"kind":"webhook","name":"hook","url":"\(receiver.baseURL)/hook","secret":"\(receiver.secret)","events":["export.failed"]}
                """)
            #expect(hook.status == .created, "\(hook.body)")

            let list = try await api.call(.get, "/workspaces/\(ws)/notifications", token: admin)
            #expect(list.status == .ok)
            #expect((list.json["items"] as? [[String: Any]])?.count == 3)

            let tested = try await api.call(.post, "/workspaces/\(ws)/notifications/\(slackID)/test", token: admin)
            #expect(tested.status == .ok, "\(tested.body)")
            #expect(tested.json["delivered"] as? Bool == true && tested.json["status"] as? Int == 200 && tested.json["answer"] as? String == "ok")
            #expect(tested.json["transport"] as? String == "http")
            #expect(await receiver.state.accepted("/slack").count == 1)
            // Nothing listens on port 9: no answer, said so, still 200 (the test ran).
            let refused = try await api.call(.post, "/workspaces/\(ws)/notifications/\(emailID)/test", token: admin)
            #expect(refused.status == .ok)
            #expect(refused.json["delivered"] as? Bool == false && refused.json["status"] == nil && refused.json["transport"] as? String == "smtp")
            #expect((refused.json["answer"] as? String)?.contains("mail server connection failed") == true, "\(refused.body)")

            // Bad bodies: an unknown field, an unknown event, an email channel without its server, a URL for email.
            for body in [#"{"kind":"slack","name":"x","url":"https://hooks.example.com/x","events":["run.failed"],"extra":1}"#,
                         #"{"kind":"slack","name":"x","url":"https://hooks.example.com/x","events":["run.exploded"]}"#,
                         #"{"kind":"email","name":"x","events":["run.failed"]}"#,
                         #"{"kind":"email","name":"x","url":"https://x.example.com","events":["run.failed"],"email":{"host":"h","from":"a@b.co","to":["c@d.co"]}}"#,
                         #"{"kind":"slack","name":"x","url":"http://hooks.example.com/x","events":["run.failed"]}"#] {
                let reply = try await api.call(.post, "/workspaces/\(ws)/notifications", token: admin, body: body)
                #expect(reply.status == .badRequest, "\(body): \(reply.status) \(reply.body)")
            }
            // A member may not see or change channels.
            #expect(try await api.call(.get, "/workspaces/\(ws)/notifications", token: world.token(.member)).status == .forbidden)

            #expect(try await api.call(.delete, "/workspaces/\(ws)/notifications/\(emailID)", token: admin).status == .noContent)
            #expect(try await api.call(.delete, "/workspaces/\(ws)/notifications/\(emailID)", token: admin).status == .notFound)

            let audit = try await api.call(.get, "/workspaces/\(ws)/audit", token: admin)
            let types = (audit.json["items"] as? [[String: Any]] ?? []).compactMap { $0["type"] as? String }
            #expect(types.filter { $0 == "NotificationChannelAdded" }.count == 3)
            #expect(types.filter { $0 == "NotificationChannelTested" }.count == 2)
            #expect(types.contains("NotificationChannelRemoved"))
            for reply in [slack, email, hook, list, audit] {
                for secret in ["URLSECRET", "MAILPASSWORDSECRET", receiver.secret] { #expect(!reply.body.contains(secret)) }
            }
        }
        await receiver.stop()
    }
}
