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
}
