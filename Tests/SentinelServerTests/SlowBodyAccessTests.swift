import Foundation
import GRDB
import NIOCore
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

/// A request whose headers arrive while its credential is good, and whose body arrives after the
/// credential was revoked, the user disabled or the member demoted: the operation is judged with
/// the access the caller has when the body is in, not the one it had when the headers came.
@Suite("Access checked again after a slow body", .serialized)
struct SlowBodyAccessTests {
    /// Sends `head` and the first byte of `body`, runs `meanwhile`, then the rest; the answer's status line.
    func send(port: Int, head: String, body: String, meanwhile: () async throws -> Void) async throws -> String {
        let connection = try await RawConnection.open(port: port)
        return try await connection.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: head + String(body.prefix(1))))
            try await Task.sleep(for: .milliseconds(200))
            try await meanwhile()
            try await outbound.write(ByteBuffer(string: String(body.dropFirst())))
            var text = ""
            for try await chunk in inbound {
                text += String(buffer: chunk)
                if text.contains("\r\n\r\n") { break }
            }
            return String(text.prefix { $0 != "\r" })
        }
    }

    func teams(_ world: GitHubWorld) async throws -> [String] {
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try TeamStore.list(in: db).map(\.name) }
        }
    }

    @Test("an API request whose body arrives after its token was revoked, or its member demoted, is refused; nothing is created")
    func apiBodyAfterRevocation() async throws {
        let world = try await GitHubWorld()
        let identity = world.appliance.identity
        let owner = try identity.createUser(email: "owner@example.com", password: "correct horse battery", isAdmin: false)
        let admin = try identity.createUser(email: "admin@example.com", password: "correct horse battery", isAdmin: false)
        try identity.setRole(.owner, userID: owner.id, in: world.workspace)
        try identity.setRole(.admin, userID: admin.id, in: world.workspace)
        let ownerToken = try identity.createToken(for: owner, name: "t", scopes: [.read, .write], expiresInDays: nil)
        let adminToken = try identity.createToken(for: admin, name: "t", scopes: [.read, .write], expiresInDays: nil)
        func head(_ token: String, _ body: String) -> String {
            "POST /api/v1/workspaces/\(world.workspace.rawValue)/teams HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
        }
        let revoked = #"{"name":"after-revocation"}"#
        let first = try await send(port: world.port, head: head(ownerToken.token, revoked), body: revoked) {
            try identity.revokeToken(id: ownerToken.summary.id, of: owner)
        }
        #expect(first.hasPrefix("HTTP/1.1 401"), "\(first)")
        let demoted = #"{"name":"after-demotion"}"#
        let second = try await send(port: world.port, head: head(adminToken.token, demoted), body: demoted) {
            try identity.setRole(.viewer, userID: admin.id, in: world.workspace)
        }
        #expect(second.hasPrefix("HTTP/1.1 403"), "\(second)")
        #expect(try await teams(world).isEmpty)
        // With access kept all along, the same slow body is carried out.
        try identity.setRole(.admin, userID: admin.id, in: world.workspace)
        let kept = #"{"name":"slow-but-allowed"}"#
        let third = try await send(port: world.port, head: head(adminToken.token, kept), body: kept) {}
        #expect(third.hasPrefix("HTTP/1.1 201"), "\(third)")
        #expect(try await teams(world) == ["slow-but-allowed"])
        await world.stop()
    }

    @Test("a console form whose body arrives after its user was disabled is not carried out: the visitor is sent to sign in")
    func consoleFormAfterDisable() async throws {
        let world = try await GitHubWorld()
        let identity = world.appliance.identity
        _ = try identity.createUser(email: "root@example.com", password: "correct horse battery", isAdmin: true)
        let admin = try identity.createUser(email: "admin@example.com", password: "correct horse battery", isAdmin: false)
        try identity.setRole(.admin, userID: admin.id, in: world.workspace)
        let session = try identity.createSession(for: admin).token
        let csrf = Console.formToken(secret: session)
        let form = "name=console-after-disable&csrf=\(csrf)"
        let head = "POST /workspaces/\(world.workspace.rawValue)/teams HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: \(Console.sessionCookie)=\(session)\r\n"
            + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: \(form.utf8.count)\r\n\r\n"
        let answer = try await send(port: world.port, head: head, body: form) {
            try identity.disableUser(id: admin.id, by: "test")
        }
        #expect(answer.hasPrefix("HTTP/1.1 303"), "\(answer)")
        #expect(try await teams(world).isEmpty)
        await world.stop()
    }
}
