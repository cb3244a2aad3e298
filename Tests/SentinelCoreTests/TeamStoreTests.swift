import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Teams")
struct TeamStoreTests {
    @Test("a team change and its audit event commit together: a transaction that fails afterwards leaves neither")
    func auditInSameTransaction() async throws {
        let h = try TestHarness()
        let workspace = try h.createWorkspace()
        struct Abort: Error {}
        try await h.supervisor.withWorkspace(workspace) { actor in
            await #expect(throws: Abort.self) {
                try await actor.write { tx in
                    _ = try TeamStore.create(name: "platform", by: "user:1", in: &tx)
                    throw Abort()
                }
            }
            let team = try await actor.write { tx in try TeamStore.create(name: " platform ", by: "user:1", in: &tx) }
            #expect(team.name == "platform")
            _ = try await actor.write { tx in try TeamStore.addMember("usr_2", to: team.id, by: "user:1", in: &tx) }
            let (teams, events) = try await actor.read { db in
                (try TeamStore.list(in: db),
                 try String.fetchAll(db, sql: "SELECT type FROM events WHERE type LIKE 'Team%' ORDER BY seq"))
            }
            #expect(teams.map(\.name) == ["platform"])
            #expect(teams.first?.members == ["usr_2"])
            #expect(events == ["TeamCreated", "TeamMemberAdded"])
            await #expect(throws: IdentityError.self) {
                try await actor.write { tx in _ = try TeamStore.create(name: "platform", by: "user:1", in: &tx) }
            }
        }
        await h.stop()
    }

    @Test("a team's name holds at most 100 characters and no control characters, whoever creates it")
    func nameRules() async throws {
        let h = try TestHarness()
        let workspace = try h.createWorkspace()
        try await h.supervisor.withWorkspace(workspace) { actor in
            for (name, problem) in [(String(repeating: "n", count: 101), "name: must have at most 100 characters"),
                                    ("core\u{0}", "name: must not contain control characters"),
                                    ("core\tteam", "name: must not contain control characters"), ("   ", "name: must not be blank")] {
                await #expect {
                    try await actor.write { tx in _ = try TeamStore.create(name: name, by: "user:1", in: &tx) }
                } throws: { error in
                    (error as? IdentityError)?.description == problem
                }
            }
            let longest = try await actor.write { tx in try TeamStore.create(name: String(repeating: "n", count: 100), by: "user:1", in: &tx) }
            let names = try await actor.read { db in try TeamStore.list(in: db).map(\.name) }
            #expect(names == [longest.name])
        }
        await h.stop()
    }
}
