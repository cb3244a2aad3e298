import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

/// The operator's commands as an admin runs them: version, migrate, verify.
@Suite("sentinel version, migrate and verify")
struct OperationsCommandTests {
    static func execute(_ path: String, _ sql: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in try db.execute(sql: sql) }
        try queue.close()
    }

    @Test("version --json names the binary version and the control and workspace schema versions it knows")
    func versionJSON() async throws {
        let result = try await SentinelProcess.run(["version", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["version"] as? String == SentinelVersion.current)
        let schemas = try #require(object["schemas"] as? [String: [String: Any]])
        #expect(schemas["control"]?["version"] as? Int == DatabaseKind.control.knownVersion)
        #expect(schemas["workspace"]?["version"] as? Int == DatabaseKind.workspace.knownVersion)
        #expect(schemas["workspace"]?["latest"] as? String == DatabaseKind.workspace.knownMigrations.last)
    }

    @Test("a command pointed at a directory without control.sqlite says so and creates nothing; workspace create and user create make it")
    func mistypedDataDirectory() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let typo = dir.url.appendingPathComponent("sentinal").path
        for command in [["workspace", "list"], ["user", "list"], ["jobs", "list", "--workspace", "acme"], ["migrate"],
                        ["usage", "--workspace", "acme"], ["backup", "--out", dir.url.appendingPathComponent("b").path]] {
            let result = try await SentinelProcess.run(command + ["--data-dir", typo])
            #expect(result.status != 0, "\(command)")
            #expect(result.stderr.contains("no Sentinel data directory at \(typo)"), "\(command): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: typo), "\(command) created \(typo)")
        }
        // A file where the data directory should be.
        let file = dir.url.appendingPathComponent("a-file").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        for command in [["workspace", "create", "acme"], ["serve", "--port", "0", "--no-tls"], ["restore", "--from", dir.path]] {
            let onFile = try await SentinelProcess.run(command + ["--data-dir", file])
            #expect(onFile.status != 0)
            #expect(onFile.stderr.contains("the data directory \(file) is a file, not a directory"), "\(command): \(onFile.stderr)")
        }
        // The commands that set an appliance up still make a new data directory.
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        #expect(created.status == 0, "\(created.stderr)")
        let listed = try await SentinelProcess.run(["workspace", "list", "--data-dir", data])
        #expect(listed.stdout.contains("acme"), "\(listed.stderr)")
        let password = dir.url.appendingPathComponent("pw").path
        try Data("a long enough password\n".utf8).write(to: URL(fileURLWithPath: password))
        let other = dir.url.appendingPathComponent("other").path
        let user = try await SentinelProcess.run(["user", "create", "--email", "ops@example.com", "--password-file", password, "--admin", "--data-dir", other])
        #expect(user.status == 0, "\(user.stderr)")
        #expect(FileManager.default.fileExists(atPath: other + "/control.sqlite"))
        // A directory where control.sqlite should be is named as such.
        try FileManager.default.removeItem(atPath: other + "/control.sqlite")
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: other + "/control.sqlite" + suffix) }
        try FileManager.default.createDirectory(atPath: other + "/control.sqlite", withIntermediateDirectories: false)
        let onDirectory = try await SentinelProcess.run(["user", "list", "--data-dir", other])
        #expect(onDirectory.status != 0)
        #expect(onDirectory.stderr.contains("\(other)/control.sqlite: it is a directory, not a database file"), "\(onDirectory.stderr)")
    }

    @Test("a command that runs while another one probes for a restore is not refused as if a restore ran (two commands at once from a cron script)")
    func concurrentCommandsAreNotARestore() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let lockFile = DataDirectory(path: data).restoreLockFile
        do {
            // Another command's probe, held: a shared lock on the restore lock file.
            let probe = try #require(try FileLock.tryAcquireShared(lockFile))
            let listed = try await SentinelProcess.run(["workspace", "list", "--data-dir", data])
            #expect(listed.status == 0 && !listed.stderr.contains("a restore is running"), "\(listed.stderr)")
            withExtendedLifetime(probe) {}
        }
        // A restore (the exclusive lock) still stops it.
        let restore = try #require(try FileLock.tryAcquire(lockFile))
        let refused = try await SentinelProcess.run(["workspace", "list", "--data-dir", data])
        #expect(refused.status != 0 && refused.stderr.contains("a restore is running"), "\(refused.stderr)")
        withExtendedLifetime(restore) {}
    }

    @Test("jobs retry of a dead notification job says it sends nothing (its batch was dropped); of another job, just that it is queued again")
    func retryOfDeadNotificationJob() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let shown = try await SentinelProcess.run(["workspace", "show", "acme", "--json", "--data-dir", data])
        let id = try #require((try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])?["id"] as? String)
        let now = Date().timeIntervalSince1970
        try Self.execute(data + "/workspaces/\(id).sqlite", """
            INSERT INTO jobs (id, kind, payload, priority, state, attempts, max_attempts, run_at, created_at, finished_at, last_error)
            VALUES (41, 'notify.flush', CAST('{"channel_id":"ntf_x"}' AS BLOB), 2, 'dead', 5, 5, \(now), \(now), \(now), 'the channel answered 500'),
                   (42, 'export.events', CAST('{}' AS BLOB), 3, 'dead', 5, 5, \(now), \(now), \(now), 'disk full');
            """)
        let notification = try await SentinelProcess.run(["jobs", "retry", "--workspace", "acme", "41", "--data-dir", data])
        #expect(notification.status == 0, "\(notification.stderr)")
        #expect(notification.stdout.contains("job 41 queued again\nnote: a notification job's messages were dropped when it went dead, so this retry does not send them again"),
                "\(notification.stdout)")
        let other = try await SentinelProcess.run(["jobs", "retry", "--workspace", "acme", "42", "--data-dir", data])
        #expect(other.stdout == "job 42 queued again\n", "\(other.stdout) \(other.stderr)")
        let audit = try await SentinelProcess.run(["audit", "--workspace", "acme", "--data-dir", data])
        #expect(audit.stdout.contains("JobRetried") && audit.stdout.contains("job:41") && audit.stdout.contains("cli"), "\(audit.stdout)")
    }

    @Test("backup with one workspace's file missing backs up the others, names the missing one and exits 1")
    func backupSkipsMissingWorkspace() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        for name in ["kept", "lost"] {
            let created = try await SentinelProcess.run(["workspace", "create", name, "--data-dir", data])
            #expect(created.status == 0, "\(created.stderr)")
        }
        let listed = try await SentinelProcess.run(["workspace", "list", "--json", "--data-dir", data])
        let workspaces = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]], "\(listed.stdout)")
        let lost = try #require(workspaces.first { $0["name"] as? String == "lost" }?["id"] as? String)
        try FileManager.default.removeItem(atPath: "\(data)/workspaces/\(lost).sqlite")
        let out = dir.url.appendingPathComponent("nightly").path
        let backup = try await SentinelProcess.run(["backup", "--out", out, "--data-dir", data])
        #expect(backup.status == 1)
        #expect(backup.stdout.contains("backed up 2 file(s)"), "\(backup.stdout)")
        #expect(backup.stderr.contains("1 workspace(s) could not be backed up") && backup.stderr.contains(lost), "\(backup.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/manifest.json"))

        // While a restore runs (it holds .restore.lock), other commands wait their turn instead of
        // making changes the restore would overwrite or orphan; a second restore says so too.
        let restoring = try FileLock.acquire(DataDirectory(path: data).restoreLockFile)
        let during = try await SentinelProcess.run(["workspace", "create", "during-restore", "--data-dir", data])
        #expect(during.status != 0 && during.stderr.contains("a restore is running on"), "\(during.stderr)")
        let second = try await SentinelProcess.run(["restore", "--from", out, "--data-dir", data])
        #expect(second.status != 0 && second.stderr.contains("another restore is running"), "\(second.stderr)")
        withExtendedLifetime(restoring) {}
    }

    @Test("files a command makes are readable by Sentinel's user alone, from a shell with umask 022 too (every tenant's file was readable by every user)")
    func filesPrivate() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let files = [data + "/control.sqlite"] + (try FileManager.default.contentsOfDirectory(atPath: data + "/workspaces"))
            .filter { $0.hasSuffix(".sqlite") }.map { data + "/workspaces/" + $0 }
        #expect(files.count == 2)
        for file in files {
            var info = stat()
            #expect(stat(file, &info) == 0 && info.st_mode & 0o077 == 0, "\(file): \(String(info.st_mode & 0o777, radix: 8))")
        }
    }

    @Test("a restore or backup stopped by a full disk (a file-size limit) says why in words and leaves no partial copy behind")
    func copyFailuresExplained() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let out = dir.url.appendingPathComponent("b").path
        #expect(try await SentinelProcess.run(["backup", "--out", out, "--data-dir", data]).status == 0)
        // Files of at most 400 blocks (200 KiB): control.sqlite is copied, the workspace file (256 KiB) is not.
        let target = dir.url.appendingPathComponent("new-machine").path
        let restore = try await SentinelProcess.run(["restore", "--from", out, "--data-dir", target], fileSizeBlocks: 400)
        #expect(restore.status != 0 && restore.stderr.contains("File too large") && restore.stderr.contains("nothing was restored"), "\(restore.stderr)")
        let left = (FileManager.default.enumerator(atPath: target)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".restoring") }
        #expect(left.isEmpty, "a partial copy stayed, hidden: \(left)")
        // SQLite's copy said "SQLite error 10: not an error".
        let backup = try await SentinelProcess.run(["backup", "--out", dir.url.appendingPathComponent("c").path, "--data-dir", data], fileSizeBlocks: 400)
        #expect(backup.status != 0 && !backup.stderr.contains("not an error") && backup.stderr.contains("file-size limit"), "\(backup.stderr)")
    }

    @Test("serve --port outside 0...65535 stops with the reason instead of listening on another port")
    func servePortChecked() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        // 99,999 would wrap around to 34,463 in the socket address.
        let serve = try await SentinelProcess.run(["serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", "99999"])
        #expect(serve.status != 0)
        #expect(serve.stderr.contains("server.port must be 0...65535"), "\(serve.stderr)")
        #expect(!serve.stderr.contains("listening"))
        // Also as a JSON line, as a log reader filtering by level looks for it.
        let critical = serve.stderr.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { $0["level"] as? String == "critical" }
        #expect(critical?["message"] as? String == "serve could not start" && (critical?["error"] as? String)?.contains("server.port must be 0...65535") == true,
                "\(serve.stderr)")
    }

    @Test("serve on a port another process holds, or on a host name that resolves to nothing, stops naming the address and what to do")
    func servePortInUse() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let first = try SentinelProcess.start(["serve", "--data-dir", dir.url.appendingPathComponent("a").path, "--no-tls", "--host", "127.0.0.1", "--port", "0"])
        let port = try #require(await first.waitForListeningPort(), "\(first.stderr)")
        let second = try await SentinelProcess.run(["serve", "--data-dir", dir.url.appendingPathComponent("b").path, "--no-tls", "--host", "127.0.0.1",
                                                    "--port", String(port)])
        #expect(second.status != 0)
        #expect(second.stderr.contains("cannot listen on 127.0.0.1:\(port): the address is in use"), "\(second.stderr)")
        let unknown = try await SentinelProcess.run(["serve", "--data-dir", dir.url.appendingPathComponent("c").path, "--no-tls", "--host", "sentinel.invalid",
                                                     "--port", "0"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("cannot listen on sentinel.invalid:0: no address is known for the host name 'sentinel.invalid'"), "\(unknown.stderr)")
        first.terminate()
        #expect(await first.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("on a data directory remounted read-only, commands say so (was: SQLite error 14: unable to open database file) and doctor exits 2",
          .enabled(if: geteuid() == 0, "mounting a file system needs root"))
    func readOnlyDataDirectory() async throws {
        let dir = TemporaryDirectory("sentinel-ops-ro")
        defer { dir.cleanup() }
        func run(_ tool: String, _ arguments: [String]) -> Int32 {
            (try? ChildProcess(executable: tool, arguments: arguments, environment: [:]).waitUntilExitBlocking()) ?? -1
        }
        // Some containers refuse mounts even to root: nothing to observe there.
        guard run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", dir.path]) == 0 else { return }
        defer { _ = run("/usr/bin/umount", [dir.path]) }
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(run("/usr/bin/mount", ["-o", "remount,ro", dir.path]) == 0)
        let list = try await SentinelProcess.run(["workspace", "list", "--data-dir", data])
        #expect(list.status != 0)
        #expect(list.stderr.contains("cannot open \(data)/control.sqlite: \(data) is on a read-only file system"), "\(list.stderr)")
        let doctor = try await SentinelProcess.run(["doctor", "--data-dir", data])
        #expect(doctor.status == 2)
        #expect(doctor.stdout.contains("\(data) is on a read-only file system"), "\(doctor.stdout)")
        // Its healthy files are not reported damaged (the fix said to restore them from a backup).
        #expect(!doctor.stdout.contains("restore") && doctor.stdout.contains("not checked while"), "\(doctor.stdout)")
    }

    @Test("serve and doctor name a TLS key that belongs to another certificate (was: failedToLoadPrivateKey)")
    func mismatchedTLSKey() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let (certificatePEM, _) = try SelfSignedCertificate.make(hostname: "sentinel.example.com")
        let (_, otherKeyPEM) = try SelfSignedCertificate.make(hostname: "other.example.com")
        let certificate = dir.url.appendingPathComponent("sentinel.crt").path
        let key = dir.url.appendingPathComponent("sentinel.key").path
        try Data(certificatePEM.utf8).write(to: URL(fileURLWithPath: certificate))
        try Data(otherKeyPEM.utf8).write(to: URL(fileURLWithPath: key))
        let environment = ["SENTINEL_SERVER_TLS_CERT_FILE": certificate, "SENTINEL_SERVER_TLS_KEY_FILE": key]
        let data = dir.url.appendingPathComponent("data").path
        let serve = try await SentinelProcess.run(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0"], environment: environment)
        #expect(serve.status != 0)
        #expect(serve.stderr.contains("the private key in \(key) does not belong to the certificate in \(certificate)"), "\(serve.stderr)")
        let doctor = try await SentinelProcess.run(["doctor", "--data-dir", data], environment: environment)
        #expect(doctor.stdout.contains("the private key in \(key) does not belong to the certificate in \(certificate)"), "\(doctor.stdout)")
    }

    @Test("doctor with a configuration serve refuses: an error (exit 2) naming it, in the JSON too, and the other checks still run (it was exit 1, no JSON)")
    func doctorWithInvalidConfig() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        #expect(created.status == 0, "\(created.stderr)")
        let config = dir.url.appendingPathComponent("bad.yaml")
        try Data("server:\n  prot: 8443\n".utf8).write(to: config)
        let doctor = try await SentinelProcess.run(["doctor", "--data-dir", data, "--config", config.path, "--json"])
        #expect(doctor.status == 2, "\(doctor.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(doctor.stdout.utf8)) as? [String: Any], "\(doctor.stdout)")
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.first?["check"] as? String == "config" && findings.first?["severity"] as? String == "error", "\(findings.first ?? [:])")
        #expect((findings.first?["message"] as? String)?.contains("server.prot") == true, "\(findings.first ?? [:])")
        #expect(findings.contains { $0["check"] as? String == "master-key" })
    }

    @Test("migrate and serve stop on a control.sqlite newer than the binary, naming its version and what to do")
    func newerControl() async throws {
        let dir = TemporaryDirectory("sentinel-ops")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        #expect(created.status == 0, "\(created.stderr)")
        try Self.execute(dir.url.appendingPathComponent("data/control.sqlite").path,
                         "INSERT INTO grdb_migrations (identifier) VALUES ('9999_from_a_newer_sentinel')")
        let newer = DatabaseKind.control.knownVersion + 1
        let migrate = try await SentinelProcess.run(["migrate", "--data-dir", data])
        #expect(migrate.status != 0)
        #expect(migrate.stderr.contains("control.sqlite is at control schema version \(newer)"))
        #expect(migrate.stderr.contains("run that newer binary"))
        let serve = try await SentinelProcess.run(["serve", "--data-dir", data, "--no-tls", "--port", "0"])
        #expect(serve.status != 0)
        #expect(serve.stderr.contains("control schema version \(newer)"))
    }

    @Test("verify passes a clean data dir and fails, naming the problem, one with a gap in a workspace's event log")
    func verifyCommand() async throws {
        let dir = TemporaryDirectory("sentinel-verify")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data, "--json"])
        #expect(created.status == 0, "\(created.stderr)")
        let id = try #require((try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])?["id"] as? String)

        let clean = try await SentinelProcess.run(["verify", "--data-dir", data, "--json"])
        #expect(clean.status == 0, "\(clean.stdout) \(clean.stderr)")
        #expect(clean.stdout.contains("\"ok\" : true"))

        let workspaceFile = dir.url.appendingPathComponent("data/workspaces/\(id).sqlite").path
        try Self.execute(workspaceFile, "INSERT INTO events (id, type, occurred_at, data) VALUES ('evt_1', 't', '2026-01-01T00:00:00Z', '{}'), "
            + "('evt_2', 't', '2026-01-01T00:00:00Z', '{}'), ('evt_3', 't', '2026-01-01T00:00:00Z', '{}'); DROP TRIGGER events_no_delete; DELETE FROM events WHERE id = 'evt_2'")
        let gap = try await SentinelProcess.run(["verify", "--data-dir", data])
        #expect(gap.status != 0)
        #expect(gap.stdout.contains("workspaces/\(id).sqlite: events: the event log has a gap"))
        #expect(gap.stderr.contains("verify found 1 problem(s)"))
    }

    @Test("doctor exits 0 on a healthy data dir, 1 with a warning (unused setup token), 2 with an error (master key readable by others), each line naming its fix")
    func doctorExitCodes() async throws {
        let dir = TemporaryDirectory("sentinel-doctor")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data")
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data.path])
        #expect(created.status == 0, "\(created.stderr)")
        let healthy = try await SentinelProcess.run(["doctor", "--data-dir", data.path])
        #expect(healthy.status == 0, "\(healthy.stdout)")
        try Data("token".utf8).write(to: data.appendingPathComponent("secrets/setup-token"))
        let warning = try await SentinelProcess.run(["doctor", "--data-dir", data.path])
        #expect(warning.status == 1, "\(warning.stdout)")
        #expect(warning.stdout.contains("WARN  setup-token"))
        #expect(warning.stdout.contains("fix: create the first admin"))
        chmod(data.appendingPathComponent("secrets/master.key").path, 0o644)
        let error = try await SentinelProcess.run(["doctor", "--data-dir", data.path, "--json"])
        #expect(error.status == 2, "\(error.stdout)")
        #expect(error.stdout.contains("\"fix\" : \"chmod 600 "))
    }

    @Test("doctor --online checks each GitHub integration and AI provider against its API: ok with valid credentials, exit 2 when the APIs are gone")
    func doctorOnline() async throws {
        let dir = TemporaryDirectory("sentinel-doctor-online")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let github = try await FakeGitHub.start()
        await github.state.addInstallation(7, account: "acme-org")
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let pem = dir.url.appendingPathComponent("app.pem")
        try github.privateKeyPEM.write(to: pem, atomically: true, encoding: .utf8)
        let secret = dir.url.appendingPathComponent("secret")
        try "doctor-secret\n".write(to: secret, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", "acme", "--app-id", String(github.appID),
                                                   "--private-key-file", pem.path, "--webhook-secret-file", secret.path, "--api-url", github.baseURL.absoluteString])
        #expect(added.status == 0, "\(added.stderr)")
        let llm = try await FakeLLMServer.start()
        let keyFile = dir.url.appendingPathComponent("anthropic.key")
        try (FakeLLMServer.defaultKeys[.anthropic]! + "\n").write(to: keyFile, atomically: true, encoding: .utf8)
        let provider = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "anthropic",
                                                      "--api-key-file", keyFile.path, "--base-url", llm.baseURL.absoluteString])
        #expect(provider.status == 0, "\(provider.stderr)")
        let online = try await SentinelProcess.run(["doctor", "--online", "--data-dir", data, "--json"])
        let providerChecks = ((try? JSONSerialization.jsonObject(with: Data(online.stdout.utf8)) as? [String: Any])?["findings"] as? [[String: Any]] ?? [])
            .filter { $0["check"] as? String == "ai-provider" }
        #expect(providerChecks.count == 1 && providerChecks.first?["severity"] as? String == "ok", "\(providerChecks)")
        #expect(await llm.state.requests(.anthropic).map(\.path) == ["/v1/models"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(online.stdout.utf8)) as? [String: Any], "\(online.stderr)")
        let checks = try #require(report["findings"] as? [[String: Any]]).filter { $0["check"] as? String == "github" }
        #expect(checks.count == 3 && checks.allSatisfy { $0["severity"] as? String == "ok" }, "\(checks)")
        #expect(await github.state.requests.contains("GET installations"))
        let offline = try await SentinelProcess.run(["doctor", "--data-dir", data, "--json"])
        #expect(!offline.stdout.contains("\"github\""), "without --online nothing is called")
        // One integration or provider at a time, as the console's Test buttons do.
        let integrationID = try #require(added.stdout.firstMatch(of: /int_[a-z0-9]{16}/).map { String($0.output) }, "\(added.stdout)")
        let providerID = try #require(provider.stdout.firstMatch(of: /prv_[a-z0-9]+/).map { String($0.output) }, "\(provider.stdout)")
        let tested = try await SentinelProcess.run(["integration", "test", integrationID, "--data-dir", data, "--workspace", "acme"])
        #expect(tested.status == 0, "\(tested.stdout)\(tested.stderr)")
        #expect(tested.stdout.contains("ok    github: integration \(integrationID) (workspace acme") && tested.stdout.contains("accepts the App's credentials"),
                "\(tested.stdout)")
        let testedProvider = try await SentinelProcess.run(["provider", "test", providerID, "--data-dir", data, "--workspace", "acme", "--json"])
        #expect(testedProvider.status == 0, "\(testedProvider.stdout)\(testedProvider.stderr)")
        let providerReport = try JSONSerialization.jsonObject(with: Data(testedProvider.stdout.utf8)) as? [String: Any]
        #expect(providerReport?["ok"] as? Bool == true && (providerReport?["checks"] as? [[String: Any]])?.count == 1, "\(testedProvider.stdout)")
        let unknown = try await SentinelProcess.run(["integration", "test", "int_0000000000000000", "--data-dir", data, "--workspace", "acme"])
        #expect(unknown.status != 0 && unknown.stderr.contains("does not exist in this workspace"), "\(unknown.stderr)")
        // The APIs go away; their ports stay bound (refusing connections), or a fake another test
        // starts meanwhile could be given one of them and answer in their place.
        await llm.stop()
        let llmGone = try HeldPort(llm.port)
        await github.stop()
        let githubGone = try HeldPort(github.port)
        let gone = try await SentinelProcess.run(["doctor", "--online", "--data-dir", data])
        withExtendedLifetime((llmGone, githubGone)) {}
        #expect(gone.status == 2, "\(gone.stdout)")
        #expect(gone.stdout.contains("ERROR github: integration int_") && gone.stdout.contains("cannot be reached"), "\(gone.stdout)")
        #expect(gone.stdout.contains("ERROR ai-provider: provider prv_") && gone.stdout.contains("(anthropic, workspace acme): cannot be reached"), "\(gone.stdout)")
        let failed = try await SentinelProcess.run(["integration", "test", integrationID, "--data-dir", data, "--workspace", "acme"])
        withExtendedLifetime((llmGone, githubGone)) {}
        #expect(failed.status == 1 && failed.stdout.contains("cannot be reached") && failed.stdout.contains("fix: "), "\(failed.stdout)")
    }

    @Test("doctor --online: an integration whose stored CA bundle no longer loads is an error of its own, with its fix, and the others are still checked")
    func doctorOnlineDamagedCABundle() async throws {
        let dir = TemporaryDirectory("sentinel-doctor-online-ca")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let github = try await FakeGitHub.start()
        await github.state.addInstallation(7, account: "acme-org")
        let pem = dir.url.appendingPathComponent("app.pem")
        try github.privateKeyPEM.write(to: pem, atomically: true, encoding: .utf8)
        let secret = dir.url.appendingPathComponent("secret")
        try "doctor-secret\n".write(to: secret, atomically: true, encoding: .utf8)
        var ids: [String: String] = [:]
        for name in ["acme", "beta"] {
            let created = try await SentinelProcess.run(["workspace", "create", name, "--data-dir", data, "--json"])
            ids[name] = try #require((try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])?["id"] as? String, "\(created.stderr)")
            let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", name, "--app-id", String(github.appID),
                                                       "--private-key-file", pem.path, "--webhook-secret-file", secret.path, "--api-url", github.baseURL.absoluteString])
            #expect(added.status == 0, "\(added.stderr)")
        }
        // Checked when it was added; damaged since (a hand-edited restore, a bad disk sector).
        try Self.execute(dir.url.appendingPathComponent("data/workspaces/\(ids["beta"]!).sqlite").path,
                         "UPDATE integrations SET ca_bundle = '-----BEGIN CERTIFICATE-----\nZGFtYWdlZA==\n-----END CERTIFICATE-----\n'")
        let online = try await SentinelProcess.run(["doctor", "--online", "--data-dir", data, "--json"])
        #expect(online.status == 2, "\(online.stdout)\(online.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(online.stdout.utf8)) as? [String: Any], "\(online.stderr)")
        let checks = try #require(report["findings"] as? [[String: Any]]).filter { $0["check"] as? String == "github" }
        let acme = checks.filter { ($0["message"] as? String)?.contains("(workspace acme") == true }
        #expect(acme.count == 3 && acme.allSatisfy { $0["severity"] as? String == "ok" }, "\(checks)")
        let beta = checks.filter { ($0["message"] as? String)?.contains("(workspace beta") == true }
        #expect(beta.count == 1 && beta.first?["severity"] as? String == "error", "\(checks)")
        #expect((beta.first?["message"] as? String)?.contains("CA bundle cannot be used") == true, "\(beta)")
        #expect(beta.first?["fix"] as? String == "rotate the integration's CA bundle", "\(beta)")
    }
}
