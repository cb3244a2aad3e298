import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Console: AI providers' priority")
struct ConsoleProviderPriorityTests {
    @Test("admins change a provider's priority (the order providers are tried) within the API's bounds; others may not")
    func priority() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await admin.get(base + "/providers")
            #expect(try await admin.post(base + "/providers", ["kind": "anthropic", "api_key": "sk-ant-1111", "priority": "5"]).status == .seeOther)
            #expect(try await admin.post(base + "/providers", ["kind": "openai", "api_key": "sk-open-2222", "priority": "50"]).status == .seeOther)
            let added = try await world.providers()
            let anthropic = try #require(added.first { $0.kind == "anthropic" }).id
            let openai = try #require(added.first { $0.kind == "openai" }).id
            let page = try await admin.get(base + "/providers")
            #expect(page.body.contains(#"action="\#(base)/providers/\#(openai)/priority""#))
            #expect(page.body.contains(#"<label for="priority-\#(openai)">Priority</label>"#))
            #expect(page.body.contains(#"id="priority-\#(openai)" name="priority" inputmode="numeric" pattern="[0-9]*" size="5" value="50""#))

            #expect(try await admin.post(base + "/providers/\(openai)/priority", ["priority": "1"], csrf: "forged").status == .forbidden)
            let moved = try await admin.post(base + "/providers/\(openai)/priority", ["priority": "1"])
            #expect(moved.status == .seeOther)
            #expect(try await world.providers().map(\.id) == [openai, anthropic])
            let tooHigh = try await admin.post(base + "/providers/\(openai)/priority", ["priority": "10001"])
            #expect(tooHigh.status == .badRequest)
            #expect(tooHigh.body.contains("priority: must be a whole number from 0 to 10000"))
            let negative = try await admin.post(base + "/providers", ["kind": "gemini", "api_key": "g-3333", "priority": "-1"])
            #expect(negative.status == .badRequest)
            #expect(try await admin.post(base + "/providers/\(openai)/priority", ["priority": "soon"]).status == .badRequest)
            #expect(try await admin.post(base + "/providers/prv_nosuchprovider/priority", ["priority": "3"]).status == .notFound)
            #expect(try await world.providers().map(\.priority) == [1, 5])
            let audit = try await admin.get(base + "/audit")
            #expect(audit.body.contains("ProviderPriorityChanged"))
            #expect(audit.body.contains("&quot;priority&quot;:&quot;1&quot;") || audit.body.contains(#""priority":"1""#))

            for role in [WorkspaceRole.viewer, .member] {
                let other = ConsoleSession(client: first.client)
                try await other.signIn("\(role.rawValue)@example.com", APIWorld.password(role))
                #expect(!(try await other.get(base + "/providers").body.contains("/priority\"")), "\(role)")
                #expect(try await other.post(base + "/providers/\(anthropic)/priority", ["priority": "0"]).status == .forbidden, "\(role)")
            }
            #expect(try await world.providers().first { $0.id == anthropic }?.priority == 5)
        }
    }

    @Test("admins change and clear the monthly AI budget; a negative or non-numeric one is refused; others may not change it")
    func budget() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        @Sendable func budget() async throws -> Double? {
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { try await world.appliance.api.providers.monthlyBudget(in: $0) }
        }
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            #expect(try await admin.get(base + "/providers").body.contains("Monthly AI budget: no limit"))
            #expect(try await admin.post(base + "/providers/budget", ["usd": "12.5"]).status == .seeOther)
            #expect(try await budget() == 12.5)
            #expect(try await admin.get(base + "/providers").body.contains(#"id="usd" name="usd" inputmode="decimal" value="12.5""#))
            #expect(try await admin.post(base + "/providers/budget", ["usd": "-1"]).status == .badRequest)
            #expect(try await admin.post(base + "/providers/budget", ["usd": "lots"]).status == .badRequest)
            // Read as typed: a hexadecimal 0x10 was taken as 16 USD, and 1e308 shown with 309 digits.
            for text in ["0x10", "1e308", "2000000000"] {
                let refused = try await admin.post(base + "/providers/budget", ["usd": text])
                #expect(refused.status == .badRequest && refused.body.contains("the budget must be a number of USD"), "\(text): \(refused.body)")
            }
            #expect(try await budget() == 12.5)
            // A form without the field is refused (it removed the budget), not read as a blank one.
            let missing = try await admin.post(base + "/providers/budget", [:])
            #expect(missing.status == .badRequest && missing.body.contains("Missing field"), "\(missing.body)")
            #expect(try await budget() == 12.5)
            // A sub-cent budget is shown in digits the form takes back (it showed 1e-05 and refused it).
            #expect(try await admin.post(base + "/providers/budget", ["usd": "0.00001"]).status == .seeOther)
            #expect(try await admin.get(base + "/providers").body.contains(#"value="0.00001""#))
            #expect(try await admin.post(base + "/providers/budget", ["usd": "0.00001"]).status == .seeOther)
            // Below a millionth of a dollar too (six places showed 0, and saving the form unchanged stored 0).
            #expect(try await admin.post(base + "/providers/budget", ["usd": "0.0000001"]).status == .seeOther)
            let tiny = try await admin.get(base + "/providers").body
            #expect(tiny.contains(#"value="0.0000001""#) && tiny.contains("Monthly AI budget: $0.0000001;"), "\(tiny)")
            #expect(try await budget() == 0.0000001)
            #expect(try await admin.post(base + "/providers/budget", ["usd": "12.5"]).status == .seeOther)
            let member = ConsoleSession(client: first.client)
            try await member.signIn("member@example.com", APIWorld.password(.member))
            #expect(try await member.post(base + "/providers/budget", ["usd": "1000"]).status == .forbidden)
            #expect(try await admin.post(base + "/providers/budget", ["usd": ""]).status == .seeOther)
            #expect(try await budget() == nil)
            #expect(try await admin.get(base + "/providers").body.contains("Monthly AI budget: no limit"))
            #expect(try await admin.get(base + "/audit").body.contains("AIBudgetChanged"))
        }
    }

    @Test("the priority's bounds are the API document's, for adding and for changing a provider")
    func boundsMatchTheDocument() throws {
        let document = try APIDocument.load()
        let validator = SchemaValidator(root: document.root)
        func property(_ operation: String, _ name: String) throws -> JSONValue {
            let body = try #require(document.operations[operation]?.body)
            return try #require(validator.resolve(body)["properties"]?[name])
        }
        for operation in ["createProvider", "updateProvider"] {
            #expect(try property(operation, "priority")["minimum"] == .int(ProviderStore.priorities.lowerBound))
            #expect(try property(operation, "priority")["maximum"] == .int(ProviderStore.priorities.upperBound))
        }
    }
}

@Suite("API: AI provider priority")
struct APIProviderPriorityTests {
    @Test("PATCH …/providers/{id} sets the priority within 0…10000, for admins, audited with who and what")
    func priority() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.test { api in
            let admin = world.token(.admin)
            let created = try await api.call(.post, base + "/providers", token: admin, body: #"{"kind":"openai","api_key":"sk-test-1234","priority":40}"#)
            #expect(created.status == .created)
            let id = try #require(created.json["id"] as? String)
            let moved = try await api.call(.patch, base + "/providers/\(id)", token: admin, body: #"{"priority":7}"#)
            #expect(moved.status == .ok, "\(moved.body)")
            #expect(moved.json["priority"] as? Int == 7)
            #expect(moved.json["enabled"] as? Bool == true)
            let both = try await api.call(.patch, base + "/providers/\(id)", token: admin, body: #"{"enabled":false,"priority":0}"#)
            #expect(both.json["priority"] as? Int == 0 && both.json["enabled"] as? Bool == false)
            for bad in [#"{"priority":10001}"#, #"{"priority":-1}"#, #"{"priority":"1"}"#, #"{"priority":1,"name":"x"}"#] {
                #expect(try await api.call(.patch, base + "/providers/\(id)", token: admin, body: bad).status == .badRequest, "\(bad)")
            }
            #expect(try await api.call(.patch, base + "/providers/\(id)", token: world.token(.member), body: #"{"priority":3}"#).status == .forbidden)
            #expect(try await api.call(.patch, base + "/providers/prv_none", token: admin, body: #"{"priority":3}"#).status == .notFound)
            let list = try await api.call(.get, base + "/providers", token: admin)
            #expect(((list.json["items"] as? [[String: Any]])?.first?["priority"] as? Int) == 0)
            let audit = try await api.call(.get, base + "/audit", token: admin)
            let changes = ((audit.json["items"] as? [[String: Any]]) ?? []).filter { $0["type"] as? String == "ProviderPriorityChanged" }
            #expect(changes.count == 2)
            #expect((changes.first?["data"] as? [String: Any])?["priority"] as? String == "7")
            #expect((changes.first?["data"] as? [String: Any])?["by"] as? String == "admin@example.com")
        }
    }

    @Test("GET and PUT …/ai-budget read, set and remove the monthly AI budget (admins), the same budget the console changes")
    func budget() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.test { api in
            let admin = world.token(.admin)
            let none = try await api.call(.get, base + "/ai-budget", token: world.token(.viewer))
            #expect(none.status == .ok, "\(none.body)")
            #expect(none.json["usd"] == nil && none.json["spent_usd"] as? Double == 0)
            let set = try await api.call(.put, base + "/ai-budget", token: admin, body: #"{"usd":25.5}"#)
            #expect(set.status == .ok, "\(set.body)")
            #expect(set.json["usd"] as? Double == 25.5)
            #expect(try await world.appliance.supervisor.withWorkspace(world.workspaceA) { try await world.appliance.api.providers.monthlyBudget(in: $0) } == 25.5)
            #expect(try await api.call(.get, base + "/ai-budget", token: world.token(.viewer)).json["usd"] as? Double == 25.5)
            for bad in [#"{"usd":-1}"#, #"{}"#, #"{"usd":"10"}"#, #"{"usd":1,"per":"month"}"#] {
                #expect(try await api.call(.put, base + "/ai-budget", token: admin, body: bad).status == .badRequest, "\(bad)")
            }
            #expect(try await api.call(.put, base + "/ai-budget", token: world.token(.member), body: #"{"usd":1000}"#).status == .forbidden)
            let removed = try await api.call(.put, base + "/ai-budget", token: admin, body: #"{"usd":null}"#)
            #expect(removed.status == .ok, "\(removed.body)")
            #expect(removed.json["usd"] == nil)
            let audit = try await api.call(.get, base + "/audit", token: admin)
            let changes = ((audit.json["items"] as? [[String: Any]]) ?? []).filter { $0["type"] as? String == "AIBudgetChanged" }
            #expect(changes.compactMap { ($0["data"] as? [String: Any])?["usd"] as? String } == ["25.5", "none"])
        }
    }
}
