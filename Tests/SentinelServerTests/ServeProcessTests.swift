import AsyncHTTPClient
import _CryptoExtras
import SentinelCore
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import NIOSSL
import SentinelServer
import SentinelTestSupport
import Testing

/// A fresh data directory driven through the CLI, with a password file for `user create`.
struct ShellDataDirectory {
    let dir: TemporaryDirectory
    let data: String
    let passwordFile: String

    init(_ name: String) throws {
        dir = TemporaryDirectory(name)
        data = dir.url.appendingPathComponent("data").path
        passwordFile = dir.url.appendingPathComponent("pw").path
        try "a long enough password".write(toFile: passwordFile, atomically: true, encoding: .utf8)
    }

    /// `sentinel ARGUMENTS --data-dir DATA` to completion.
    func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await SentinelProcess.run(arguments + ["--data-dir", data])
    }
}

/// `sentinel serve` as an admin runs it: the real binary, an empty data directory, HTTPS with the
/// certificate it makes itself, SIGTERM to stop.
@Suite("sentinel serve process")
struct ServeProcessTests {
    @Test("serve runs as many event-loop threads as server.event_loop_threads says; by default one per core over HTTPS, half the cores (at least one) over plain HTTP")
    func eventLoopThreads() async throws {
        #expect(EventLoopThreads.count(configured: 0, tls: false, cores: 1) == 1)
        #expect(EventLoopThreads.count(configured: 0, tls: false, cores: 2) == 1)
        #expect(EventLoopThreads.count(configured: 0, tls: false, cores: 8) == 4)
        #expect(EventLoopThreads.count(configured: 0, tls: true, cores: 2) == 2)
        #expect(EventLoopThreads.count(configured: 3, tls: false, cores: 2) == 3)
        #expect(EventLoopThreads.count(configured: 3, tls: true, cores: 8) == 3)
        let dir = TemporaryDirectory("sentinel-loops")
        defer { dir.cleanup() }
        let cases: [(name: String, tls: Bool, setting: String?, expected: Int)] = [
            ("http", false, nil, EventLoopThreads.count(configured: 0, tls: false)),
            ("https", true, nil, EventLoopThreads.count(configured: 0, tls: true)),
            ("http-3", false, "3", 3),
        ]
        for run in cases {
            let data = dir.url.appendingPathComponent("data-\(run.name)")
            let server = try SentinelProcess.start(["serve", "--data-dir", data.path, "--host", "127.0.0.1", "--port", "0"] + (run.tls ? [] : ["--no-tls"]),
                                                   environment: run.setting.map { ["SENTINEL_SERVER_EVENT_LOOP_THREADS": $0] } ?? [:])
            defer { server.kill() }
            _ = try #require(await server.waitForListeningPort(), "\(server.stderr)")
            let listening = server.stderr.split(separator: "\n").first { $0.contains(#""message":"listening""#) } ?? ""
            #expect(listening.contains(#""event_loop_threads":"\#(run.expected)""#), "\(run.name): \(listening)")
            // The threads themselves: SwiftNIO names its shared group's loops NIO-SGLTN-<group>-#<n>.
            let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.pid)/task")
            let loops = tasks.filter {
                ((try? String(contentsOfFile: "/proc/\(server.pid)/task/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("NIO-SGLTN-")
            }
            #expect(loops.count == run.expected, "\(run.name): \(loops.count) event-loop threads")
            server.terminate()
            #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
        }
    }

    @Test("starts on an empty data dir, answers /healthz over HTTPS with its self-signed certificate and Strict-Transport-Security, exits 0 on SIGTERM")
    func serveOverHTTPS() async throws {
        let dir = TemporaryDirectory("sentinel-serve")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data")
        let server = try SentinelProcess.start(["serve", "--data-dir", data.path, "--host", "127.0.0.1", "--port", "0"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())

        for path in ["control.sqlite", "workspaces", "secrets/master.key", "tls/sentinel.crt", "tls/sentinel.key"] {
            #expect(FileManager.default.fileExists(atPath: data.appendingPathComponent(path).path), "\(path) missing")
        }
        let keyMode = try FileManager.default.attributesOfItem(atPath: data.appendingPathComponent("secrets/master.key").path)[.posixPermissions] as? NSNumber
        #expect(keyMode?.intValue == 0o600)

        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(data.appendingPathComponent("tls/sentinel.crt").path))
        tls.certificateVerification = .fullVerification
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        do {
            for (path, expected) in [("/healthz", #""status":"ok""#), ("/readyz", #""status":"ready""#)] {
                let response = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(port)\(path)"), timeout: .seconds(10))
                #expect(response.status == .ok)
                #expect(response.headers.first(name: "Strict-Transport-Security") == "max-age=31536000")
                let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
                #expect(body.contains(expected), "\(path): \(body)")
            }
            let metrics = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(port)/metrics"), timeout: .seconds(10))
            let text = String(buffer: try await metrics.body.collect(upTo: 1 << 20))
            #expect(text.contains(#"sentinel_http_requests_total{method="GET",route="/healthz",status="200"} 1"#))
            #expect(text.contains("sentinel_workspaces_open"))
            // Problem documents carry it too (a path no route takes).
            let missing = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(port)/api/v1/nothing-here"), timeout: .seconds(10))
            #expect(missing.status == .notFound)
            #expect(missing.headers.first(name: "Strict-Transport-Security") == "max-age=31536000")
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()

        server.terminate()
        let status = await server.waitForExit(timeout: .seconds(30))
        #expect(status == 0)
        #expect(server.stderr.contains("stopped cleanly"))
        // Every line it logged is one JSON object.
        for line in server.stderr.split(separator: "\n") {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "not JSON: \(line)")
        }
    }

    @Test("serve keeps serving when nothing reads its output any more (a log shipper that exited): the lines are dropped, not the process")
    func outputNobodyReads() async throws {
        let dir = TemporaryDirectory("sentinel-serve")
        defer { dir.cleanup() }
        let port = try freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["SENTINEL_RECONCILE_ENABLED"] = "false"
        // Before: SIGPIPE ended it at its first log line (or, with SIGPIPE ignored, FileHandle.write trapped on EPIPE).
        let server = try ChildProcess(executable: SentinelProcess.executable.path,
                                      arguments: ["serve", "--data-dir", dir.path, "--host", "127.0.0.1", "--port", String(port), "--no-tls"],
                                      environment: environment, stdout: .unread, stderr: .unread)
        defer { server.signal(SIGKILL) }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        func status(_ method: HTTPMethod, _ path: String) async -> Int? {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = method
            if method == .POST {
                request.headers.add(name: "X-GitHub-Event", value: "ping")
                request.headers.add(name: "X-GitHub-Delivery", value: UUID().uuidString)
                request.body = .bytes(ByteBuffer(string: "{}"))
            }
            return try? await Int(client.execute(request, timeout: .seconds(10)).status.code)
        }
        var ready = false
        let deadline = ContinuousClock.now + .seconds(60)
        while !ready, server.isRunning, ContinuousClock.now < deadline {
            ready = await status(.GET, "/readyz") == 200
            if !ready { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(ready, "serve never answered; exit status \(server.terminationStatus.map(String.init) ?? "none (running)")")
        // More lines to a pipe nobody reads: a delivery refused (no such integration), a sign-in page.
        #expect(await status(.POST, "/webhooks/github/int_0000000000000000") == 404)
        #expect(await status(.GET, "/sign-in") == 200)
        #expect(await status(.GET, "/healthz") == 200)
        #expect(server.isRunning)
        try await client.shutdown()
        server.signal(SIGTERM)
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("a workspace file the user cannot open (made by a command run as root) is said to be so, with the fix, not 'corrupt' or SQLite's 'unable to open database file' (whose fix, a restore, loses data)",
          .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func workspaceFileOfAnotherUser() async throws {
        let dir = TemporaryDirectory("sentinel-owner")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let nobody: UInt32 = 65534
        for name in ["acme", "rootmade"] { #expect(try await SentinelProcess.run(["workspace", "create", name, "--data-dir", data]).status == 0) }
        let shown = try await SentinelProcess.run(["workspace", "show", "rootmade", "--data-dir", data, "--json"])
        let file = try #require((try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])?["file"] as? String)
        // The data directory is the service user's (nobody here), but for the file root's `workspace create` left.
        #expect(chown(dir.url.path, nobody, nobody) == 0)
        for case let path as String in FileManager.default.enumerator(atPath: dir.url.path)! {
            #expect(chown(dir.url.appendingPathComponent(path).path, nobody, nobody) == 0)
        }
        #expect(chown(file, 0, 0) == 0 && chmod(file, 0o600) == 0)
        // The binary must be reachable by that user (it is under a world-readable checkout in CI).
        guard try await SentinelProcess.run(["version"], user: nobody).status == 0 else { return }
        let asService = try await SentinelProcess.run(["workspace", "show", "rootmade", "--data-dir", data, "--json"], user: nobody)
        #expect((try JSONSerialization.jsonObject(with: Data(asService.stdout.utf8)) as? [String: Any])?["status"] as? String == "unreadable",
                "\(asService.stdout) \(asService.stderr)")
        let listed = try await SentinelProcess.run(["workspace", "list", "--data-dir", data], user: nobody)
        #expect(listed.stdout.contains("rootmade  plan=free  file=unreadable") && listed.stdout.contains("acme  plan=free  file=ok"), "\(listed.stdout)")
        let providers = try await SentinelProcess.run(["provider", "list", "--data-dir", data, "--workspace", "rootmade"], user: nobody)
        #expect(providers.status == 1 && providers.stderr.contains("is not readable and writable by uid 65534 (its owner is uid 0, mode 600)")
                && providers.stderr.contains("do not restore it"), "\(providers.stderr)")
        #expect(try await SentinelProcess.run(["provider", "list", "--data-dir", data, "--workspace", "acme"], user: nobody).status == 0)
        // The backup and verify say it is not damaged (the backup said to restore it, losing what was written since).
        let backup = try await SentinelProcess.run(["backup", "--data-dir", data, "--out", dir.url.appendingPathComponent("b1").path], user: nobody)
        #expect(backup.status == 1 && backup.stderr.contains("it is not damaged: give it to the user Sentinel runs as")
                && backup.stderr.contains("restore from an earlier backup only one whose file is missing or damaged"), "\(backup.stderr)")
        let verify = try await SentinelProcess.run(["verify", "--data-dir", data], user: nobody)
        #expect(verify.stdout.contains("cannot be opened: it is not readable and writable by uid 65534") && !verify.stdout.contains("not a readable database"),
                "\(verify.stdout)")
        // migrate and export said SQLite error 14.
        let migrate = try await SentinelProcess.run(["migrate", "--data-dir", data], user: nobody)
        #expect(migrate.status == 1 && migrate.stderr.contains("is not readable and writable by uid 65534") && migrate.stderr.contains("do not restore it"),
                "\(migrate.stderr)")
        let export = try await SentinelProcess.run(["export", "--data-dir", data], user: nobody)
        #expect(export.stdout.contains("cannot be opened: it is not readable and writable by uid 65534"), "\(export.stdout) \(export.stderr)")
        // control.sqlite left to root: named with the fix (SQLite's "unable to open database file", from serve too).
        let control = dir.url.appendingPathComponent("data/control.sqlite").path
        #expect(chown(control, 0, 0) == 0 && chmod(control, 0o600) == 0)
        for command in [["workspace", "list", "--data-dir", data], ["serve", "--data-dir", data, "--no-tls", "--port", "0"]] {
            let refused = try await SentinelProcess.run(command, user: nobody)
            #expect(refused.status != 0 && refused.stderr.contains("cannot open \(control): it is not readable and writable by uid 65534 (its owner is uid 0")
                    && refused.stderr.contains("do not restore it"), "\(command[0]): \(refused.stderr)")
        }
    }

    @Test("user create and workspace create with a value refused make no data directory (a typo left one, with a master key, behind)")
    func refusedCreateMakesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let password = dir.url.appendingPathComponent("pw")
        try "a long enough password\n".write(to: password, atomically: true, encoding: .utf8)
        let data = dir.url.appendingPathComponent("typo").path
        let badEmail = try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", "bad", "--password-file", password.path])
        #expect(badEmail.status != 0 && badEmail.stderr.contains("'bad' is not an email address"), "\(badEmail.stderr)")
        let badName = try await SentinelProcess.run(["workspace", "create", "   ", "--data-dir", data])
        #expect(badName.status != 0 && badName.stderr.contains("workspace name must be"), "\(badName.stderr)")
        #expect(!FileManager.default.fileExists(atPath: data))
        // An output path that cannot be written is said in words (Foundation's error codes were printed).
        let toDirectory = try await SentinelProcess.run(["openapi", "--out", dir.path])
        #expect(toDirectory.status != 0 && toDirectory.stderr.contains("it is a directory; give a file name"), "\(toDirectory.stderr)")
    }

    @Test("workspace add-member changes a member's role, remove-member takes one out; the last owner stays; each change is audited by cli")
    func membersFromTheShell() async throws {
        let shell = try ShellDataDirectory("sentinel-members")
        defer { shell.dir.cleanup() }
        let (data, passwordFile, run) = (shell.data, shell.passwordFile, shell.run)
        #expect(try await run(["workspace", "create", "acme"]).status == 0)
        for email in ["owner@example.com", "dev@example.com"] {
            #expect(try await run(["user", "create", "--email", email, "--password-file", passwordFile]).status == 0)
        }
        #expect(try await run(["workspace", "add-member", "--workspace", "acme", "--email", "owner@example.com", "--role", "owner"]).status == 0)
        let added = try await run(["workspace", "add-member", "--workspace", "acme", "--email", "dev@example.com", "--role", "member"])
        #expect(added.status == 0 && added.stdout.contains("dev@example.com is member of workspace acme"), "\(added)")
        let promoted = try await run(["workspace", "add-member", "--workspace", "acme", "--email", "dev@example.com", "--role", "admin"])
        #expect(promoted.status == 0 && promoted.stdout.contains("is admin of workspace acme") && promoted.stdout.contains("(was member)"), "\(promoted)")
        let lastOwner = try await run(["workspace", "remove-member", "--workspace", "acme", "--email", "owner@example.com"])
        #expect(lastOwner.status != 0 && lastOwner.stderr.contains("a workspace keeps at least one owner"), "\(lastOwner)")
        let removed = try await run(["workspace", "remove-member", "--workspace", "acme", "--email", "dev@example.com"])
        #expect(removed.status == 0 && removed.stdout.contains("dev@example.com is no longer a member"), "\(removed)")
        let again = try await run(["workspace", "remove-member", "--workspace", "acme", "--email", "dev@example.com"])
        #expect(again.status != 0 && again.stderr.contains("no such member"), "\(again)")
        let nobody = try await run(["workspace", "remove-member", "--workspace", "acme", "--email", "nobody@example.com"])
        #expect(nobody.status != 0 && nobody.stderr.contains("no user with email nobody@example.com"), "\(nobody)")

        let shown = try await run(["workspace", "show", "acme", "--json"])
        let id = try #require((try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])?["id"] as? String, "\(shown)")
        let file = DataDirectory(path: data).workspaceFile(try #require(WorkspaceID(id)))
        var configuration = Configuration()
        configuration.readonly = true
        let events = try await DatabaseQueue(path: file.path, configuration: configuration).read { db in
            try Row.fetchAll(db, sql: "SELECT type, data FROM events WHERE type LIKE 'Member%' ORDER BY seq").map { row -> String in
                let fields = try JSONSerialization.jsonObject(with: Data((row["data"] as String).utf8)) as? [String: String] ?? [:]
                return "\(row["type"] as String) \(fields["role"] ?? "") by \(fields["by"] ?? "")"
            }
        }
        #expect(events == ["MemberAdded owner by cli", "MemberAdded member by cli", "MemberRoleChanged admin by cli", "MemberRemoved admin by cli"],
                "\(events)")
    }

    @Test("sentinel audit lists the appliance's changes with who made them; --subject takes an email or a workspace name")
    func applianceAuditFromTheShell() async throws {
        let shell = try ShellDataDirectory("sentinel-audit")
        defer { shell.dir.cleanup() }
        let (passwordFile, run) = (shell.passwordFile, shell.run)
        #expect(try await run(["user", "create", "--email", "dev@example.com", "--password-file", passwordFile]).status == 0)
        #expect(try await run(["workspace", "create", "acme"]).status == 0)
        #expect(try await run(["workspace", "add-member", "--workspace", "acme", "--email", "dev@example.com", "--role", "member"]).status == 0)
        #expect(try await run(["user", "disable", "dev@example.com"]).status == 0)
        let listed = try await run(["audit"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let lines = listed.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(listed.stdout)")
        #expect(lines.first?.contains("UserCreated  user:usr_") == true && lines.allSatisfy { $0.contains("by cli") }, "\(listed.stdout)")
        let aboutUser = try await run(["audit", "--subject", "dev@example.com", "--json"])
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(aboutUser.stdout.utf8)) as? [[String: Any]], "\(aboutUser)")
        #expect(entries.map { $0["type"] as? String ?? "" } == ["UserCreated", "UserDisabled"])
        let aboutWorkspace = try await run(["audit", "--subject", "acme"])
        #expect(aboutWorkspace.stdout.split(separator: "\n").count == 1 && aboutWorkspace.stdout.contains("WorkspaceCreated"), "\(aboutWorkspace.stdout)")
        #expect(try await run(["audit", "--subject", "user:usr_gone"]).stdout.contains("no audit entries about user:usr_gone"))
        // A workspace's own log: the membership, by cli.
        let inside = try await run(["audit", "--workspace", "acme", "--json"])
        let workspaceEntries = try #require(try JSONSerialization.jsonObject(with: Data(inside.stdout.utf8)) as? [[String: Any]], "\(inside)")
        #expect(workspaceEntries.map { $0["type"] as? String ?? "" } == ["MemberAdded"], "\(inside.stdout)")
        // As the API serves them: `data` an object, and the workspace entry's `by` beside it.
        #expect((workspaceEntries.first?["data"] as? [String: Any])?["by"] as? String == "cli", "\(inside.stdout)")
        #expect(workspaceEntries.first?["by"] as? String == "cli", "\(inside.stdout)")
        #expect(entries.allSatisfy { $0["data"] is [String: Any] && $0["actor"] as? String == "cli" }, "\(aboutUser.stdout)")
        // The budget as the API's `ai-budget` answers: numbers, `usd` absent without a budget.
        let budget = try await run(["provider", "budget", "--workspace", "acme", "--usd", "12.5", "--json"])
        let budgetJSON = try #require(try JSONSerialization.jsonObject(with: Data(budget.stdout.utf8)) as? [String: Any], "\(budget)")
        #expect(budgetJSON["usd"] as? Double == 12.5 && budgetJSON["spent_usd"] as? Double == 0, "\(budget.stdout)")
        // In text, as set (it showed 0.0155 as 0.02 beside a spend shown to four places).
        let small = try await run(["provider", "budget", "--workspace", "acme", "--usd", "0.0155"])
        #expect(small.stdout.hasPrefix("budget: 0.0155 USD/month; spent this month: 0 USD"), "\(small.stdout)")
        let noBudget = try await run(["provider", "budget", "--workspace", "acme", "--none", "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(noBudget.stdout.utf8)) as? [String: Any])?.keys.sorted() == ["spent_usd"], "\(noBudget.stdout)")
        let both = try await run(["audit", "--workspace", "acme", "--subject", "dev@example.com"])
        #expect(both.status != 0 && both.stderr.contains("--subject narrows the appliance's log"), "\(both.stderr)")
        let unknown = try await run(["audit", "--subject", "nobody@example.com"])
        #expect(unknown.status != 0 && unknown.stderr.contains("no user with email nobody@example.com"), "\(unknown.stderr)")
        // A deleted workspace's entries, by its bare id (it said the workspace does not exist).
        let shown = try await run(["workspace", "show", "acme", "--json"])
        let id = try #require((try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])?["id"] as? String, "\(shown)")
        #expect(try await run(["workspace", "delete", "acme", "--confirm", "acme"]).status == 0)
        let deleted = try await run(["audit", "--subject", id])
        #expect(deleted.status == 0 && deleted.stdout.contains("WorkspaceCreated") && deleted.stdout.contains("WorkspaceDeleted"), "\(deleted)")
        let gone = try await run(["audit", "--subject", "acme"])
        #expect(gone.status != 0 && gone.stderr.contains("a deleted workspace's entries are found by its id"), "\(gone.stderr)")
    }

    @Test("a second serve on the same data directory refuses with a one-line reason")
    func secondServeRefused() async throws {
        let dir = TemporaryDirectory("sentinel-serve")
        defer { dir.cleanup() }
        let first = try SentinelProcess.start(["serve", "--data-dir", dir.path, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { first.kill() }
        _ = try #require(await first.waitForListeningPort())
        let second = try SentinelProcess.start(["serve", "--data-dir", dir.path, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        let status = await second.waitForExit(timeout: .seconds(30))
        #expect(status != 0)
        #expect(second.stderr.contains("already running"))
        first.terminate()
        #expect(await first.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("serve warns, with the fix, when the master key can be read by other users (copied in with cp from a backup); not when it is its own, or only its directory is open")
    func exposedMasterKeyWarned() async throws {
        let shell = try ShellDataDirectory("sentinel-serve")
        defer { shell.dir.cleanup() }
        #expect(try await shell.run(["workspace", "create", "acme"]).status == 0)
        let secrets = shell.data + "/secrets", key = secrets + "/master.key"
        func serve() async throws -> String {
            let server = try SentinelProcess.start(["serve", "--data-dir", shell.data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
            defer { server.kill() }
            _ = try #require(await server.waitForListeningPort(), "\(server.stderr)")
            server.terminate()
            #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
            return server.stderr
        }
        let warning = #""message":"the master key can be read by other users of this machine"#
        #expect(try await !serve().contains(warning))
        // Before: serve started without a word; only `doctor` said so.
        #expect(chmod(key, 0o644) == 0 && chmod(secrets, 0o755) == 0)
        let exposedKey = try await serve()
        #expect(exposedKey.contains(warning))
        #expect(exposedKey.contains(#""fix":"chmod 600 \#(key)""#))
        // A directory others may search or list does not give them a key only its owner can read.
        #expect(chmod(key, 0o600) == 0 && chmod(secrets, 0o711) == 0)
        #expect(try await !serve().contains(warning))
        // Read by the group through a directory the group can search.
        #expect(chmod(key, 0o640) == 0 && chmod(secrets, 0o710) == 0)
        #expect(try await serve().contains(warning))
    }

    @Test("a first user made without --admin is told the appliance has no admin yet; doctor says so with the fix; the admin made after ends both")
    func firstUserWithoutAdmin() async throws {
        let shell = try ShellDataDirectory("sentinel-serve")
        defer { shell.dir.cleanup() }
        let member = try await shell.run(["user", "create", "--email", "dev@example.com", "--password-file", shell.passwordFile])
        #expect(member.status == 0)
        #expect(member.stderr.contains("note: the appliance has no admin yet (to add users and workspaces): create one with `sentinel user create --admin`"))
        #expect(FileManager.default.fileExists(atPath: shell.data + "/secrets/setup-token"))
        let doctor = try await shell.run(["doctor"])
        #expect(doctor.stdout.contains("no appliance admin: 1 user(s), none of them an active admin"), "\(doctor.stdout)")
        let admin = try await shell.run(["user", "create", "--email", "ops@example.com", "--password-file", shell.passwordFile, "--admin"])
        #expect(admin.status == 0 && !admin.stderr.contains("no admin yet"))
        #expect(!FileManager.default.fileExists(atPath: shell.data + "/secrets/setup-token"))
        let after = try await shell.run(["doctor"]).stdout
        #expect(!after.contains("no appliance admin") && !after.contains("no admin yet"), "\(after)")
    }

    @Test("workspace create/list/show and backup/restore from the command line")
    func workspaceAndBackupCommands() async throws {
        let dir = TemporaryDirectory("sentinel-cli")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data, "--json"])
        #expect(created.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any]
        let id = try #require(object?["id"] as? String)
        #expect(id.hasPrefix("ws_"))
        let listed = try await SentinelProcess.run(["workspace", "list", "--data-dir", data, "--json"])
        let array = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]
        #expect(array?.compactMap { $0["id"] as? String } == [id])
        let shown = try await SentinelProcess.run(["workspace", "show", "acme", "--data-dir", data, "--json"])
        #expect(shown.stdout.contains("\"schema_version\""))
        let duplicate = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        #expect(duplicate.status != 0)
        #expect(duplicate.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1)
        #expect(duplicate.stderr.contains("already exists"))

        let backupDir = dir.url.appendingPathComponent("backup").path
        let backup = try await SentinelProcess.run(["backup", "--data-dir", data, "--out", backupDir])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(FileManager.default.fileExists(atPath: backupDir + "/manifest.json"))
        let migrate = try await SentinelProcess.run(["migrate", "--data-dir", data])
        #expect(migrate.status == 0)
        let restore = try await SentinelProcess.run(["restore", "--data-dir", data, "--from", backupDir, "--workspace", id])
        #expect(restore.status == 0, "\(restore.stderr)")
        let bad = try await SentinelProcess.run(["restore", "--data-dir", data, "--from", dir.url.appendingPathComponent("nothing").path])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("not a Sentinel backup"))
    }

    @Test("export, analytics, plan and usage from the command line")
    func analyticsCommands() async throws {
        let dir = TemporaryDirectory("sentinel-cli")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let export = try await SentinelProcess.run(["export", "--data-dir", data])
        #expect(export.status == 0, "\(export.stderr)")
        let line = export.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasSuffix("0 events"), "\(line)")
        let path = String(line.split(separator: " ").first ?? "")
        #expect(path.hasPrefix(URL(fileURLWithPath: data).appendingPathComponent("exports").path) && path.hasSuffix(".sql"), "\(path)")
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(FileManager.default.fileExists(atPath: path + ".manifest.json"))
        let out = dir.url.appendingPathComponent("nightly.sql").path
        let explicit = try await SentinelProcess.run(["export", "--data-dir", data, "--out", out])
        #expect(explicit.stdout.hasPrefix(out), "\(explicit.stdout)")
        #expect(FileManager.default.fileExists(atPath: out))
        // A directory takes the dump under its export id, and the line names that file.
        let intoDirectory = try await SentinelProcess.run(["export", "--data-dir", data, "--out", dir.url.path])
        let written = String(intoDirectory.stdout.split(separator: " ").first ?? "")
        #expect(intoDirectory.status == 0 && written.hasPrefix(dir.url.path + "/sentinel-export-") && written.hasSuffix(".sql"), "\(intoDirectory.stdout)")
        #expect(FileManager.default.fileExists(atPath: written))
        // A path that is not a file is refused, saying why, and left as it was.
        let fifo = dir.url.appendingPathComponent("dump.fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let toPipe = try await SentinelProcess.run(["export", "--data-dir", data, "--out", fifo])
        #expect(toPipe.status != 0 && toPipe.stderr.contains("it is not a regular file (a device, pipe or socket)"), "\(toPipe.stderr)")
        // A directory named with a trailing slash that is not there is an error, not a file of that name.
        let missing = dir.url.appendingPathComponent("not-made").path + "/"
        let toMissing = try await SentinelProcess.run(["export", "--data-dir", data, "--out", missing])
        #expect(toMissing.status != 0 && toMissing.stderr.contains("the directory does not exist"), "\(toMissing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("not-made").path))
        // A workspace whose file cannot be read is named, and the export exits 1 (it exited 0).
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: data + "/workspaces"))
        #expect(try await SentinelProcess.run(["workspace", "create", "beta", "--data-dir", data]).status == 0)
        let beta = try #require(try FileManager.default.contentsOfDirectory(atPath: data + "/workspaces").first { !before.contains($0) && $0.hasSuffix(".sqlite") })
        try FileManager.default.moveItem(atPath: data + "/workspaces/" + beta, toPath: dir.url.appendingPathComponent("moved.sqlite").path)
        let partial = try await SentinelProcess.run(["export", "--data-dir", data])
        #expect(partial.status == 1 && partial.stdout.contains("exported up to event"), "\(partial.stdout) \(partial.stderr)")
        try FileManager.default.moveItem(atPath: dir.url.appendingPathComponent("moved.sqlite").path, toPath: data + "/workspaces/" + beta)

        let analytics = try await SentinelProcess.run(["analytics", "--data-dir", data, "--workspace", "acme", "--json"])
        #expect(analytics.status == 0, "\(analytics.stderr)")
        #expect(analytics.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || analytics.stdout.contains("[]"), "\(analytics.stdout)")
        let badDay = try await SentinelProcess.run(["analytics", "--data-dir", data, "--workspace", "acme", "--from", "yesterday"])
        #expect(badDay.status != 0)
        #expect(badDay.stderr.contains("not a day"))

        let plan = try await SentinelProcess.run(["plan", "set", "--data-dir", data, "--workspace", "acme", "team"])
        #expect(plan.status == 0, "\(plan.stderr)")
        let unknown = try await SentinelProcess.run(["plan", "set", "--data-dir", data, "--workspace", "acme", "platinum"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("unknown plan"))
        let usage = try await SentinelProcess.run(["usage", "--data-dir", data, "--workspace", "acme", "--period", "2026-11", "--json"])
        #expect(usage.status == 0, "\(usage.stderr)")
        #expect(usage.stdout.contains("\"period\""))
        // Only YYYY-MM names a month (`+2026-12` was December under the heading "+2026-12", without the plan's limits).
        // A month before 1970 is one, just none Sentinel records: the message says which months it takes.
        for odd in ["+2026-12", "2026-0012", "2026-1", "1969-12"] {
            let refused = try await SentinelProcess.run(["usage", "--data-dir", data, "--workspace", "acme", "--period", odd])
            #expect(refused.status != 0 && refused.stderr.contains("period must be a month from 1970-01 to 9999-12 in the form YYYY-MM"),
                    "\(odd): \(refused.stderr)")
        }
    }

    @Test("user create, token create and workspace add-member from the command line; the token works against the served API")
    func identityCommands() async throws {
        let dir = TemporaryDirectory("sentinel-cli")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let passwordFile = dir.url.appendingPathComponent("pw").path
        try "a long enough password\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let created = try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", "Ops@Example.com",
                                                     "--password-file", passwordFile, "--admin", "--json"])
        #expect(created.status == 0, "\(created.stderr)")
        let user = try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any]
        #expect(user?["email"] as? String == "ops@example.com")
        #expect(user?["is_admin"] as? Bool == true)
        #expect(!created.stdout.contains("password"))
        let duplicate = try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", "ops@example.com", "--password-file", passwordFile])
        #expect(duplicate.status != 0)
        #expect(duplicate.stderr.contains("already exists"))
        let short = dir.url.appendingPathComponent("short").path
        try "short".write(toFile: short, atomically: true, encoding: .utf8)
        let weak = try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", "b@example.com", "--password-file", short])
        #expect(weak.stderr.contains("a password needs at least 12 characters"))

        let token = try await SentinelProcess.run(["token", "create", "--data-dir", data, "--email", "ops@example.com", "--scopes", "read", "write"])
        #expect(token.status == 0, "\(token.stderr)")
        let secret = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("snt_"))
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let member = try await SentinelProcess.run(["workspace", "add-member", "--data-dir", data, "--workspace", "acme",
                                                    "--email", "ops@example.com", "--role", "owner"])
        #expect(member.status == 0, "\(member.stderr)")
        let badRole = try await SentinelProcess.run(["workspace", "add-member", "--data-dir", data, "--workspace", "acme",
                                                     "--email", "ops@example.com", "--role", "boss"])
        #expect(badRole.stderr.contains("owner, admin, member, viewer"))
        let openapi = try await SentinelProcess.run(["openapi"])
        #expect(openapi.stdout.contains("\"openapi\": \"3.1.0\""))
        // A typo of --out naming a database is refused; the database is left as it was.
        let control = URL(fileURLWithPath: data).appendingPathComponent("control.sqlite")
        let before = try Data(contentsOf: control)
        let overDatabase = try await SentinelProcess.run(["openapi", "--out", control.path])
        #expect(overDatabase.status != 0 && overDatabase.stderr.contains("is an SQLite database"), "\(overDatabase.stderr)")
        #expect(try Data(contentsOf: control) == before)

        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", "0"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/workspaces")
        request.headers.add(name: "Authorization", value: "Bearer \(secret)")
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status == .ok)
        #expect(body.contains("\"name\":\"acme\"") && body.contains("\"role\":\"owner\""), "\(body)")

        // Users and tokens listed from the shell; a token revoked there stops working at once.
        let users = try await SentinelProcess.run(["user", "list", "--data-dir", data, "--json"])
        #expect(users.status == 0, "\(users.stderr)")
        #expect(users.stdout.contains("\"email\" : \"ops@example.com\"") || users.stdout.contains("\"email\": \"ops@example.com\""), "\(users.stdout)")
        // The API's User shape: `disabled` always, `created_at` in ISO 8601.
        let listedUsers = try #require(try JSONSerialization.jsonObject(with: Data(users.stdout.utf8)) as? [[String: Any]])
        #expect(listedUsers.allSatisfy { Set($0.keys) == ["id", "email", "is_admin", "disabled", "created_at"] && $0["created_at"] is String }, "\(users.stdout)")
        let listed = try await SentinelProcess.run(["token", "list", "--data-dir", data, "--email", "ops@example.com", "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let tokens = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(tokens.count == 1)
        #expect(!listed.stdout.contains(secret), "the secret is never listed")
        let tokenID = try #require(tokens.first?["id"] as? String)
        let revoked = try await SentinelProcess.run(["token", "revoke", "--data-dir", data, "--email", "ops@example.com", tokenID])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        let afterRevoke = try await client.execute(request, timeout: .seconds(10))
        #expect(afterRevoke.status == .unauthorized)
        let unknown = try await SentinelProcess.run(["token", "revoke", "--data-dir", data, "--email", "ops@example.com", "tok_nope"])
        #expect(unknown.status != 0 && unknown.stderr.contains("no such token"), "\(unknown.stderr)")
        try await client.shutdown()
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("user disable, enable, set-password and delete from the shell take effect on the running server at once")
    func userLifecycleCommands() async throws {
        let dir = TemporaryDirectory("sentinel-users")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let passwordFile = dir.url.appendingPathComponent("pw").path
        let password = "a long enough password"
        try "\(password)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        for (email, admin) in [("ops@example.com", true), ("alice@example.com", false)] {
            let created = try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", email, "--password-file", passwordFile]
                                                        + (admin ? ["--admin"] : []))
            #expect(created.status == 0, "\(created.stderr)")
        }
        let token = try await SentinelProcess.run(["token", "create", "--data-dir", data, "--email", "alice@example.com", "--scopes", "read"])
        let secret = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("snt_"), "\(token.stderr)")

        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", "0"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        func me(_ bearer: String) async throws -> UInt {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/auth/me")
            request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
            return try await client.execute(request, timeout: .seconds(10)).status.code
        }
        func login(_ email: String, _ password: String) async throws -> (UInt, String?) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/auth/login")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: ["email": email, "password": password])))
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]
            return (response.status.code, object?["token"] as? String)
        }
        let (loggedIn, session) = try await login("alice@example.com", password)
        #expect(loggedIn == 200)
        let aliceSession = try #require(session)
        #expect(try await me(aliceSession) == 200)
        #expect(try await me(secret) == 200)

        // Disabled: the session and the token get 401 on the next request, and sign-in fails.
        let disabled = try await SentinelProcess.run(["user", "disable", "--data-dir", data, "alice@example.com"])
        #expect(disabled.status == 0, "\(disabled.stderr)")
        #expect(try await me(aliceSession) == 401)
        #expect(try await me(secret) == 401)
        #expect(try await login("alice@example.com", password).0 == 401)
        let listed = try await SentinelProcess.run(["user", "list", "--data-dir", data])
        #expect(listed.stdout.contains("alice@example.com  disabled"), "\(listed.stdout)")
        let lastAdmin = try await SentinelProcess.run(["user", "disable", "--data-dir", data, "ops@example.com"])
        #expect(lastAdmin.status != 0 && lastAdmin.stderr.contains("last active admin"), "\(lastAdmin.stderr)")

        // Enabled again: sign-in and the token work.
        #expect(try await SentinelProcess.run(["user", "enable", "--data-dir", data, "alice@example.com"]).status == 0)
        let (again, newSession) = try await login("alice@example.com", password)
        #expect(again == 200)
        #expect(try await me(secret) == 200)

        // A new password from stdin: the rules apply, sessions end, the old password stops working.
        let weak = try await SentinelProcess.run(["user", "set-password", "--data-dir", data, "alice@example.com", "--password-stdin"], stdin: "short\n")
        #expect(weak.status != 0 && weak.stderr.contains("a password needs at least 12 characters"), "\(weak.stderr)")
        // Bytes that are not UTF-8 are refused, as from a file (they were replaced, and another password set).
        let latin1 = try ChildProcess(executable: SentinelProcess.executable.path,
                                      arguments: ["user", "set-password", "--data-dir", data, "alice@example.com", "--password-stdin"],
                                      environment: ProcessInfo.processInfo.environment, stdin: Data([0xFF, 0xFE]) + Data("latin1-password-123\n".utf8))
        #expect(latin1.waitUntilExitBlocking() != 0 && latin1.stderr.contains("not UTF-8"), "\(latin1.stderr)")
        // A token name with a control character is refused from the command line too.
        let controlName = try await SentinelProcess.run(["token", "create", "--data-dir", data, "--email", "alice@example.com", "--name", "a\u{1}b"])
        #expect(controlName.status != 0 && controlName.stderr.contains("must not contain control characters"), "\(controlName.stderr)")
        let noSource = try await SentinelProcess.run(["user", "set-password", "--data-dir", data, "alice@example.com"])
        #expect(noSource.status != 0 && noSource.stderr.contains("--password-stdin"), "\(noSource.stderr)")
        let changed = try await SentinelProcess.run(["user", "set-password", "--data-dir", data, "alice@example.com", "--password-stdin"],
                                                    stdin: "a brand new password\n")
        #expect(changed.status == 0, "\(changed.stderr)")
        #expect(try await me(try #require(newSession)) == 401)
        #expect(try await login("alice@example.com", password).0 == 401)
        #expect(try await login("alice@example.com", "a brand new password").0 == 200)

        // Deleted: the token is refused; the audit entries keep the user's id.
        let aliceID = try #require(try JSONSerialization.jsonObject(with: Data(
            try await SentinelProcess.run(["user", "list", "--data-dir", data, "--json"]).stdout.utf8)) as? [[String: Any]])
            .first { $0["email"] as? String == "alice@example.com" }?["id"] as? String
        let deleted = try await SentinelProcess.run(["user", "delete", "--data-dir", data, "alice@example.com"])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        #expect(try await me(secret) == 401)
        #expect(try await login("alice@example.com", "a brand new password").0 == 401)
        let control = try DatabaseQueue(path: data + "/control.sqlite")
        let audit = try await control.read { db in
            try String.fetchAll(db, sql: "SELECT type FROM audit_events WHERE subject = ? ORDER BY seq", arguments: ["user:\(aliceID ?? "")"])
        }
        try control.close()
        #expect(audit == ["UserCreated", "TokenCreated", "UserDisabled", "UserEnabled", "UserPasswordChanged", "UserDeleted"])
        try await client.shutdown()
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("workspace rename works beside serve; delete refuses while serve runs, then backs up and removes; webhooks answer 410")
    func workspaceRenameAndDelete() async throws {
        let dir = TemporaryDirectory("sentinel-wsdel")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let pem = dir.url.appendingPathComponent("app.pem")
        try TestRSAKeys.other().pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let secretFile = dir.url.appendingPathComponent("secret.txt")
        try "delete-webhook-secret\n".write(to: secretFile, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", "acme", "--app-id", "77",
                                                   "--private-key-file", pem.path, "--webhook-secret-file", secretFile.path, "--json"])
        let path = try #require((try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any])?["webhook_path"] as? String)

        func send(_ port: Int, _ client: HTTPClient) async throws -> (UInt, String, String?) {
            let body = Data(#"{"zen":"Design for failure.","hook_id":1}"#.utf8)
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = .POST
            request.headers.add(name: "X-GitHub-Event", value: "ping")
            request.headers.add(name: "X-GitHub-Delivery", value: UUID().uuidString)
            request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: Data("delete-webhook-secret".utf8)))
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(10))
            return (response.status.code, String(buffer: try await response.body.collect(upTo: 1 << 20)), response.headers.first(name: "Content-Type"))
        }

        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", "0"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        #expect(try await send(port, client).0 == 200)
        let renamed = try await SentinelProcess.run(["workspace", "rename", "--data-dir", data, "acme", "acme-corp"])
        #expect(renamed.status == 0, "\(renamed.stderr)")
        let refused = try await SentinelProcess.run(["workspace", "delete", "--data-dir", data, "acme-corp", "--confirm", "acme-corp"])
        #expect(refused.status != 0 && refused.stderr.contains("stop it before deleting"), "\(refused.stderr)")
        #expect(try await send(port, client).0 == 200, "a refused delete changed nothing")
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)

        let unconfirmed = try await SentinelProcess.run(["workspace", "delete", "--data-dir", data, "acme-corp", "--confirm", "acme"])
        #expect(unconfirmed.status != 0 && unconfirmed.stderr.contains("--confirm"), "\(unconfirmed.stderr)")
        let deleted = try await SentinelProcess.run(["workspace", "delete", "--data-dir", data, "acme-corp", "--confirm", "acme-corp", "--json"])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        let deletion = try #require(try JSONSerialization.jsonObject(with: Data(deleted.stdout.utf8)) as? [String: Any])
        let backup = try #require(deletion["backup"] as? String)
        #expect(backup.contains("/backups/deleted/"))
        #expect(FileManager.default.fileExists(atPath: backup + "/manifest.json"))
        let listed = try await SentinelProcess.run(["workspace", "list", "--data-dir", data])
        #expect(listed.stdout.contains("no workspaces yet"), "\(listed.stdout)")
        let files = try FileManager.default.contentsOfDirectory(atPath: data + "/workspaces").filter { $0.hasSuffix(".sqlite") }
        #expect(files.isEmpty, "\(files)")

        let again = try SentinelProcess.start(["serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", "0"])
        defer { again.kill() }
        let port2 = try #require(await again.waitForListeningPort())
        let (status, body, contentType) = try await send(port2, client)
        #expect(status == 410, "\(body)")
        #expect(contentType == "application/problem+json")
        #expect(body.contains("urn:sentinel:problem:integration-deleted"), "\(body)")
        try await client.shutdown()
        again.terminate()
        #expect(await again.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("hundreds of concurrent API and readiness requests all complete (no thread starvation on control.sqlite)")
    func concurrentRequestsComplete() async throws {
        let dir = TemporaryDirectory("sentinel-load")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let passwordFile = dir.url.appendingPathComponent("pw").path
        try "a long enough password\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        _ = try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", "ops@example.com", "--password-file", passwordFile, "--admin"])
        let token = try await SentinelProcess.run(["token", "create", "--data-dir", data, "--email", "ops@example.com"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        _ = try await SentinelProcess.run(["workspace", "add-member", "--data-dir", data, "--workspace", "acme", "--email", "ops@example.com", "--role", "owner"])
        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", "0"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 128)))
        let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
            for i in 0..<400 {
                group.addTask {
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)" + (i % 2 == 0 ? "/readyz" : "/api/v1/workspaces"))
                    request.headers.add(name: "Authorization", value: "Bearer \(token)")
                    let response = try await client.execute(request, timeout: .seconds(30))
                    _ = try await response.body.collect(upTo: 1 << 20)
                    return response.status.code
                }
            }
            return try await group.reduce(into: [UInt]()) { $0.append($1) }
        }
        try await client.shutdown()
        #expect(statuses.count == 400)
        #expect(statuses.allSatisfy { $0 == 200 }, "\(Set(statuses))")
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("integration add github works while serve runs, and the running server accepts that integration's deliveries at once")
    func integrationAddedWhileServing() async throws {
        let dir = TemporaryDirectory("sentinel-live")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data, "--json"])
        #expect(created.status == 0)
        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        let pem = dir.url.appendingPathComponent("app.pem")
        try TestRSAKeys.other().pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let secretFile = dir.url.appendingPathComponent("secret.txt")
        try "live-webhook-secret-123\n".write(to: secretFile, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", "acme", "--app-id", "77",
                                                   "--private-key-file", pem.path, "--webhook-secret-file", secretFile.path, "--json"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(!added.stdout.contains("live-webhook-secret"))
        #expect(!added.stdout.contains("PRIVATE KEY"))
        let object = try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any]
        let path = try #require(object?["webhook_path"] as? String)
        #expect(path.hasPrefix("/webhooks/github/int_"))
        let noSecret = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", "acme", "--app-id", "77",
                                                      "--private-key-file", pem.path, "--webhook-secret-file", dir.url.appendingPathComponent("absent").path])
        #expect(noSecret.status != 0)

        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        func send(_ event: String, _ body: Data) async throws -> Int {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = .POST
            request.headers.add(name: "X-GitHub-Event", value: event)
            request.headers.add(name: "X-GitHub-Delivery", value: UUID().uuidString)
            request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: Data("live-webhook-secret-123".utf8)))
            request.body = .bytes(ByteBuffer(bytes: body))
            return Int(try await client.execute(request, timeout: .seconds(10)).status.code)
        }
        let ping = try await send("ping", Data(#"{"zen":"Design for failure.","hook_id":1}"#.utf8))
        let star = try await send("star", Data(#"{"action":"created"}"#.utf8))
        try await client.shutdown()
        #expect(ping == 200)
        #expect(star == 202)
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
        #expect(!server.stderr.contains("live-webhook-secret"))
    }

    @Test("kill -9 with deliveries acknowledged into the intake journal and not yet in their workspace file: the next start applies them")
    func journalledDeliveriesSurviveKill() async throws {
        let dir = TemporaryDirectory("sentinel-journal")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let dataDirectory = DataDirectory(path: data)
        let pem = dir.url.appendingPathComponent("app.pem")
        try TestRSAKeys.other().pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let secret = "journal-webhook-secret-1"
        let secretFile = dir.url.appendingPathComponent("secret.txt")
        try secret.write(to: secretFile, atomically: true, encoding: .utf8)
        var paths: [String: String] = [:]
        var workspaceIDs: [String: WorkspaceID] = [:]
        for name in ["a", "b"] {
            let created = try await SentinelProcess.run(["workspace", "create", name, "--data-dir", data, "--json"])
            #expect(created.status == 0, "\(created.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any]
            workspaceIDs[name] = try #require((object?["id"] as? String).flatMap { WorkspaceID($0) })
            let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", name, "--app-id", "77",
                                                       "--private-key-file", pem.path, "--webhook-secret-file", secretFile.path, "--json"])
            #expect(added.status == 0, "\(added.stderr)")
            paths[name] = try #require((try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any])?["webhook_path"] as? String)
        }
        let a = try #require(workspaceIDs["a"])
        // One file open at a time: a delivery for the other workspace finds its file closed.
        let environment = ["SENTINEL_WORKSPACES_MAX_OPEN": "1", "SENTINEL_STORAGE_BUSY_TIMEOUT_MS": "200"]
        var server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"], environment: environment)
        defer { server.kill() }
        var port = try #require(await server.waitForListeningPort())
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        func send(_ workspace: String, id: String) async throws -> (Int, String) {
            let body = Data(#"{"action":"created","starred_at":"2026-12-03T00:00:00Z"}"#.utf8)
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(paths[workspace]!)")
            request.method = .POST
            request.headers.add(name: "X-GitHub-Event", value: "star")
            request.headers.add(name: "X-GitHub-Delivery", value: id)
            request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: Data(secret.utf8)))
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(10))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
        }
        #expect(try await send("a", id: "a-first").0 == 202)

        // Workspace a's file is write-locked from here (its reads still work), so nothing can be
        // applied to it: what it is sent stays in the journal.
        var lockConfiguration = Configuration()
        lockConfiguration.busyMode = .timeout(30)
        let lock = try DatabaseQueue(path: dataDirectory.workspaceFile(a).path, configuration: lockConfiguration)
        let release = DispatchSemaphore(value: 0)
        let locked = await withCheckedContinuation { (locked: CheckedContinuation<Bool, Never>) in
            lock.asyncWriteWithoutTransaction { db in
                do {
                    try db.execute(sql: "BEGIN IMMEDIATE")
                } catch {
                    locked.resume(returning: false)
                    return
                }
                locked.resume(returning: true)
                release.wait()
                try? db.execute(sql: "ROLLBACK")
            }
        }
        defer { release.signal() }
        try #require(locked, "the test could not take workspace a's write lock")
        // b's delivery closes a's file (LRU of one); a's next delivery then goes to the journal (as it
        // would with a's file open: the direct write meets the lock and the journal takes it).
        #expect(try await send("b", id: "b-0").0 == 202)
        let answer = try await send("a", id: "a-journalled")
        #expect(answer.0 == 202, "\(answer.1)")
        #expect(answer.1.contains("accepted"))
        // A redelivery while it waits in the journal is a duplicate.
        let again = try await send("a", id: "a-journalled")
        #expect(again.0 == 202 && again.1.contains("duplicate"), "\(again.1)")

        try await client.shutdown()
        server.kill()
        _ = await server.waitForExit(timeout: .seconds(30))
        @Sendable func journalled() throws -> [String] {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: dataDirectory.intakeJournalFile.path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { try String.fetchAll($0, sql: "SELECT delivery_id FROM journal ORDER BY seq") }
        }
        @Sendable func inWorkspace() throws -> [String] {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: dataDirectory.workspaceFile(a).path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { try String.fetchAll($0, sql: "SELECT id FROM deliveries ORDER BY id") }
        }
        #expect(try journalled() == ["a-journalled"])
        #expect(try inWorkspace() == ["a-first"])

        release.signal()
        server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"], environment: environment)
        port = try #require(await server.waitForListeningPort())
        #expect(await eventually(timeout: .seconds(30)) { try inWorkspace() == ["a-first", "a-journalled"] && journalled().isEmpty })
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
        try lock.close()
    }

    @Test("a delivery to a workspace whose open file another process holds write-locked is acknowledged into the intake journal (it was 503) and reaches the file once the lock is gone")
    func lockedWorkspaceFileJournalsDelivery() async throws {
        let dir = TemporaryDirectory("sentinel-locked-intake")
        defer { dir.cleanup() }
        let secret = "locked-webhook-secret-1"
        let setup = try await CommandLineGitHubSetup.make(in: dir, webhookSecret: secret)
        let dataDirectory = DataDirectory(path: setup.data)
        let server = try SentinelProcess.start(["serve", "--data-dir", setup.data, "--host", "127.0.0.1", "--port", "0", "--no-tls"],
                                               environment: ["SENTINEL_STORAGE_BUSY_TIMEOUT_MS": "200"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        func send(id: String) async throws -> (status: Int, body: String) { try await setup.deliverStar(port: port, secret: secret, deliveryID: id) }
        @Sendable func rows(_ file: URL, _ sql: String) throws -> [String] {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: file.path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { try String.fetchAll($0, sql: sql) }
        }
        let workspaceFile = dataDirectory.workspaceFile(setup.workspaceID)
        // The first delivery opens acme's file (directly or through the journal's applier), and
        // nothing else is served: the file stays open.
        #expect(try await send(id: "first").status == 202)
        #expect(await eventually(timeout: .seconds(30)) { try rows(workspaceFile, "SELECT id FROM deliveries") == ["first"] })

        let lock = try await SQLiteWriteLock(workspaceFile.path)
        let answer = try await send(id: "while-locked")
        #expect(answer.status == 202 && answer.body.contains("accepted"), "\(answer.body)")
        #expect(server.stderr.contains("workspace file locked by another writer; delivery goes to the intake journal"))
        #expect(try rows(dataDirectory.intakeJournalFile, "SELECT delivery_id FROM journal") == ["while-locked"])
        // A redelivery meanwhile is a duplicate, and what follows keeps its order behind it in the journal.
        let again = try await send(id: "while-locked")
        #expect(again.status == 202 && again.body.contains("duplicate"), "\(again.body)")
        #expect(try await send(id: "after").status == 202)
        #expect(try rows(dataDirectory.intakeJournalFile, "SELECT delivery_id FROM journal ORDER BY seq") == ["while-locked", "after"])

        await lock.release()
        #expect(await eventually(timeout: .seconds(30)) {
            try rows(workspaceFile, "SELECT id FROM deliveries ORDER BY id") == ["after", "first", "while-locked"]
                && rows(dataDirectory.intakeJournalFile, "SELECT delivery_id FROM journal").isEmpty
        })
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }
}
