import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("sentinel doctor")
struct DoctorTests {
    /// `closed`: the data directory's mode as `sentinel` makes it (umask 0077), where this test
    /// process's umask (022) left it open to every user (a test that sets another mode keeps it).
    static func doctor(_ h: TestHarness, config: SentinelConfig = testConfig(), now: Date = Date(), environment: [String: String] = [:],
                       closed: Bool = true) -> DoctorReport {
        var info = stat()
        if closed, stat(h.dataDirectory.root.path, &info) == 0, info.st_mode & 0o777 == 0o755 { chmod(h.dataDirectory.root.path, 0o750) }
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: config, now: now, freeSpace: { _ in 1 << 40 })
        doctor.environment = environment
        return doctor.run()
    }

    @Test("database files every user of the machine can read (a data directory made from a shell with umask 022) are a warning")
    func filesReadableByOthers() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("open")
        await h.supervisor.shutdown()
        chmod(h.dataDirectory.root.path, 0o755)
        chmod(h.dataDirectory.controlFile.path, 0o644)
        let report = Self.doctor(h, closed: false)
        #expect(report.findings.contains { $0.severity == .warning && $0.check == "data-dir" && $0.message.contains("readable by every user") },
                "\(report.findings.filter { $0.severity != .ok })")
        chmod(h.dataDirectory.root.path, 0o750)
        #expect(!Self.doctor(h).findings.contains { $0.message.contains("readable by every user") }, "the directory closed: nothing reaches them")
    }

    @Test("a SENTINEL_ environment variable that names no setting is a warning (a misspelling changed nothing without a word); the known ones are not")
    func misspeltEnvironment() throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let report = Self.doctor(h, environment: ["SENTINEL_LOG_LEVL": "debug", "SENTINEL_SERVER_PORT": "8443", "SENTINEL_DATA_DIR": "/x",
                                                  "SENTINEL_TEST_PYTHON": "/usr/bin/python3", "HOME": "/root"])
        let config = report.findings.filter { $0.check == "config" }
        #expect(config.count == 1 && config[0].severity == .warning && config[0].message.contains("SENTINEL_LOG_LEVL"), "\(config)")
        #expect(!config[0].message.contains("SENTINEL_SERVER_PORT") && !config[0].message.contains("SENTINEL_DATA_DIR"))
    }

    @Test("a data directory on a read-only file system is an error (it looked healthy: the mode bits allow writing)",
          .enabled(if: geteuid() == 0, "mounting a read-only file system needs root"))
    func readOnlyFileSystem() async throws {
        let dir = TemporaryDirectory("sentinel-doctor-ro")
        defer { dir.cleanup() }
        let mount = try ChildProcess(executable: "/usr/bin/mount", arguments: ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", dir.path], environment: [:])
        // Some containers refuse mounts even to root: nothing to observe there.
        guard mount.waitUntilExitBlocking() == 0 else { return }
        defer { _ = try? ChildProcess(executable: "/usr/bin/umount", arguments: [dir.path], environment: [:]).waitUntilExitBlocking() }
        let report = Doctor(dataDirectory: DataDirectory(path: dir.path), config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 }).run()
        let finding = report.findings.first { $0.check == "data-dir" && $0.severity == .error }
        #expect(finding?.message == "\(dir.path) is on a read-only file system: no delivery, job or run can be stored", "\(report.findings)")
        #expect(report.exitCode == 2)
    }

    /// `sentinel ARGUMENTS` run as the user nobody (needs root and setpriv).
    static func asNobody(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(executable: "/usr/bin/setpriv",
                         arguments: ["--reuid=65534", "--regid=65534", "--clear-groups", SentinelProcess.executable.path] + arguments,
                         environment: ["PATH": "/usr/bin:/bin", "HOME": "/tmp"])
    }

    @Test("doctor run by a user who may not write the data directory says so, not \"restore it from a backup\" of healthy files",
          .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "changing user needs root and setpriv"))
    func otherUserNotToldToRestore() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("fine")
        await h.supervisor.shutdown()
        chmod(h.directory.path, 0o755)
        chmod(h.dataDirectory.root.path, 0o755)
        let child = try Self.asNobody(["doctor", "--data-dir", h.dataDirectory.root.path])
        let status = child.waitUntilExitBlocking()
        // Where the binary's path is closed to that user, there is nothing to observe.
        guard !child.stderr.contains("Permission denied") || child.stdout.contains("schema") else { return }
        #expect(child.stdout.contains("this user may not write"), "\(status): \(child.stdout) \(child.stderr)")
        #expect(!child.stdout.contains("restore it from a backup"), "\(child.stdout)")
    }

    @Test("a command run by a user who may not enter the data directory says so, not \"no Sentinel data directory\" (whose advice made a new one)",
          .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "changing user needs root and setpriv"))
    func closedDataDirectoryNamed() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("fine")
        await h.supervisor.shutdown()
        chmod(h.directory.path, 0o755)
        chmod(h.dataDirectory.root.path, 0o700)
        let child = try Self.asNobody(["workspace", "list", "--data-dir", h.dataDirectory.root.path])
        let status = child.waitUntilExitBlocking()
        // Where the binary's path is closed to that user, there is nothing to observe.
        guard !child.stderr.contains("Permission denied") || child.stderr.contains("data directory") else { return }
        #expect(status != 0 && child.stderr.contains("cannot enter the data directory") && child.stderr.contains("permission denied"), "\(child.stderr)")
        #expect(!child.stderr.contains("no Sentinel data directory"), "\(child.stderr)")
        // verify said control.sqlite was missing.
        let verify = try Self.asNobody(["verify", "--data-dir", h.dataDirectory.root.path])
        #expect(verify.waitUntilExitBlocking() != 0 && verify.stderr.contains("cannot enter the data directory"), "\(verify.stdout) \(verify.stderr)")
    }

    @Test("a healthy data directory: exit 0, every line ok")
    func healthy() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("fine")
        await h.supervisor.shutdown()
        // As `sentinel` makes it (umask 0077; this test process's is 022): not open to other users.
        chmod(h.dataDirectory.root.path, 0o750)
        let report = Self.doctor(h)
        #expect(report.findings.filter { $0.severity != .ok } == [])
        #expect(report.exitCode == 0)
        #expect(Set(report.findings.map(\.check)).isSuperset(of: ["data-dir", "master-key", "tls", "schema", "disk", "workspace", "dead-jobs", "stuck-runs"]))
    }

    @Test("plans and license as serve loads them: a file serve refuses is an error, a workspace on a plan not in force a warning (it said all good)")
    func billingChecked() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        try h.control.write { db in try db.execute(sql: "UPDATE workspaces SET plan = 'mega' WHERE id = ?", arguments: [ws.rawValue]) }
        await h.supervisor.shutdown()
        let report = Self.doctor(h)
        let missing = report.findings.first { $0.check == "billing" && $0.severity == .warning }
        #expect(missing?.message.contains("workspace acme (\(ws.rawValue)) is on plan 'mega', which is not in force") == true, "\(report.findings)")
        #expect(report.exitCode == 1)
        let plans = h.directory.url.appendingPathComponent("plans.yaml")
        try "plans:\n  mega: {seats: -1}\n".write(to: plans, atomically: true, encoding: .utf8)
        var config = testConfig()
        config.billing.plansFile = plans.path
        let refused = Self.doctor(h, config: config)
        #expect(refused.findings.contains { $0.check == "billing" && $0.severity == .error && $0.message.contains("plans.mega.seats") }, "\(refused.findings)")
        #expect(refused.exitCode == 2)
        config.billing.plansFile = nil
        config.billing.licenseFile = h.directory.url.appendingPathComponent("missing.license").path
        #expect(Self.doctor(h, config: config).findings.contains { $0.check == "billing" && $0.severity == .error })
        try "plans:\n  mega: {reviews_per_month: 10, tokens_per_month: 10, repositories: 1, seats: 1}\n".write(to: plans, atomically: true, encoding: .utf8)
        config.billing.licenseFile = nil
        config.billing.plansFile = plans.path
        #expect(Self.doctor(h, config: config).findings.filter { $0.check == "billing" }.allSatisfy { $0.severity == .ok })
        // A price table serve refuses is named too (doctor said nothing, and serve did not start).
        let prices = h.directory.url.appendingPathComponent("prices.yaml")
        try "\"gemini/gemini-3-pro*\": {input_per_million: 2, output_per_million: -1}\n".write(to: prices, atomically: true, encoding: .utf8)
        config.ai.priceTableFile = prices.path
        let priced = Self.doctor(h, config: config).findings.first { $0.check == "ai-prices" && $0.severity == .error }
        #expect(priced?.message.contains("output_per_million") == true && priced?.fix?.contains(prices.path) == true, "\(String(describing: priced))")
    }

    @Test("control.sqlite unreadable or emptied beside workspace files, a workspace file emptied or another's: errors naming the fix (it said all good, exit 0)")
    func damagedFilesAreErrors() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let a = try h.createWorkspace("a")
        let b = try h.createWorkspace("b")
        await h.supervisor.shutdown()
        // A workspace file emptied, another replaced by a's.
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(b))
        try FileManager.default.copyItem(at: h.dataDirectory.workspaceFile(a), to: h.dataDirectory.workspaceFile(b))
        let swapped = Self.doctor(h)
        #expect(swapped.findings.contains { $0.severity == .error && $0.message.contains("workspace \(b.rawValue) is offline") && $0.message.contains("is the file of workspace \(a.rawValue)") },
                "\(swapped.findings)")
        #expect(swapped.exitCode == 2)
        try Data().write(to: h.dataDirectory.workspaceFile(b))
        #expect(Self.doctor(h).findings.contains { $0.severity == .error && $0.message.contains("holds no Sentinel schema") })

        // A workspace file control.sqlite does not register (a restore of an older control.sqlite left it).
        let orphan = WorkspaceID.generate()
        try FileManager.default.copyItem(at: h.dataDirectory.workspaceFile(a), to: h.dataDirectory.workspaceFile(orphan))
        #expect(Self.doctor(h).findings.contains { $0.severity == .warning && $0.message.contains("1 workspace file(s)") && $0.message.contains(orphan.rawValue) })
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(orphan))

        // control.sqlite overwritten with noise, then emptied.
        try h.control.close()
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: h.dataDirectory.controlFile.path + suffix) }
        try Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: h.dataDirectory.controlFile)
        let noise = Self.doctor(h)
        #expect(noise.findings.contains { $0.severity == .error && $0.check == "schema" && $0.message.hasPrefix("control.sqlite:") }, "\(noise.findings)")
        #expect(noise.exitCode == 2)
        try Data().write(to: h.dataDirectory.controlFile)
        let emptied = Self.doctor(h)
        #expect(emptied.findings.contains { $0.severity == .error && $0.message.contains("workspaces/ holds 2 workspace file(s)") }, "\(emptied.findings)")
        #expect(emptied.exitCode == 2)
    }

    @Test("a damaged page in control.sqlite or a workspace file (the file opens) is an error: doctor said all good and sign-ins answered 500")
    func damagedPagesAreErrors() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let a = try h.createWorkspace("a")
        for _ in 0..<200 { try await h.enqueue(JobRequest(kind: "x", payload: Data(repeating: 0x61, count: 500)), in: a) }
        await h.supervisor.shutdown()
        try h.control.close()
        #expect(Self.doctor(h).exitCode == 0)
        try damageRootPage(of: "jobs", in: h.dataDirectory.workspaceFile(a))
        let workspace = Self.doctor(h)
        #expect(workspace.findings.contains { $0.severity == .error && $0.message.hasPrefix("workspace \(a.rawValue) is damaged (") }, "\(workspace.findings)")
        #expect(workspace.exitCode == 2)
        try damageRootPage(of: "users", in: h.dataDirectory.controlFile)
        let control = Self.doctor(h)
        #expect(control.findings.contains { $0.severity == .error && $0.message.hasPrefix("control.sqlite is damaged (") }, "\(control.findings)")
    }

    @Test("a data directory on a network file system (NFS, SMB, sshfs, …) is an error, on another FUSE one a warning; /proc/mounts says which")
    func networkFileSystem() async throws {
        let mounts = """
            /dev/sda1 / ext4 rw,relatime 0 0
            tmpfs /tmp tmpfs rw 0 0
            nas:/export /var/lib/sentinel nfs4 rw,vers=4.2 0 0
            user@host:/srv /mnt/remote\\040disk fuse.sshfs rw 0 0
            /dev/sdb1 /var/lib/sentinel/local ext4 rw 0 0
            """
        #expect(DataDirectoryFileSystem.mountType(of: "/var/lib/sentinel/workspaces", in: mounts) == "nfs4")
        #expect(DataDirectoryFileSystem.mountType(of: "/var/lib/sentinel-other", in: mounts) == "ext4", "a prefix that is not a parent")
        #expect(DataDirectoryFileSystem.mountType(of: "/var/lib/sentinel/local/x", in: mounts) == "ext4", "the longest mount point wins")
        #expect(DataDirectoryFileSystem.mountType(of: "/mnt/remote disk/data", in: mounts) == "fuse.sshfs")
        // The mount table is read whole, not its first page only (a machine with many mounts had
        // the data directory's listed after it). This process's memory map is far longer than a page.
        let maps = try #require(FileSystem.readPseudoFile("/proc/self/maps"))
        #expect(maps.utf8.count > 3 * 4096 && maps.hasSuffix("\n"), "\(maps.utf8.count) bytes")
        #expect(DataDirectoryFileSystem.remote(type: "nfs4") == DataDirectoryFileSystem(name: "nfs4", isNetwork: true))
        #expect(DataDirectoryFileSystem.remote(type: "cifs")?.isNetwork == true)
        #expect(DataDirectoryFileSystem.remote(type: "fuse.sshfs")?.isNetwork == true)
        #expect(DataDirectoryFileSystem.remote(type: "fuseblk") == DataDirectoryFileSystem(name: "fuseblk", isNetwork: false))
        #expect(DataDirectoryFileSystem.remote(type: "ext4") == nil && DataDirectoryFileSystem.remote(type: "tmpfs") == nil)
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("fine")
        await h.supervisor.shutdown()
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.remoteFileSystem = { _ in DataDirectoryFileSystem(name: "nfs4", isNetwork: true) }
        let nfs = doctor.run()
        #expect(nfs.exitCode == 2)
        #expect(nfs.findings.contains { $0.severity == .error && $0.check == "data-dir" && $0.message.contains("network file system (nfs4)") })
        doctor.remoteFileSystem = { _ in DataDirectoryFileSystem(name: "fuseblk", isNetwork: false) }
        #expect(doctor.run().findings.contains { $0.severity == .warning && $0.message.contains("on a fuseblk file system") })
        // This machine's temporary directory is local: nothing said.
        #expect(DataDirectoryFileSystem.remote(at: h.dataDirectory.root.path) == nil)
    }

    @Test("deliveries waiting in the intake journal for more than five minutes are a warning naming their workspace; recent ones are ok")
    func journalWaiting() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("waiting")
        let journal = try IntakeJournalTests.journal(h)
        #expect(Self.doctor(h).findings.first { $0.check == "intake-journal" }?.message == "the intake journal is empty")
        let received = Date(timeIntervalSince1970: 1_800_000_000)
        _ = try await journal.append(IntakeJournalTests.delivery("d-waiting", at: received.timeIntervalSince1970), for: ws)
        await h.supervisor.shutdown()
        let recent = Self.doctor(h, now: received.addingTimeInterval(60)).findings.first { $0.check == "intake-journal" }
        #expect(recent?.severity == .ok, "\(String(describing: recent))")
        let late = Self.doctor(h, now: received.addingTimeInterval(600))
        let finding = late.findings.first { $0.check == "intake-journal" }
        #expect(finding?.severity == .warning)
        #expect(finding?.message.contains("1 acknowledged deliveries") == true && finding?.message.contains(ws.rawValue) == true, "\(String(describing: finding))")
        #expect(late.exitCode == 1)
    }

    @Test("a WAL grown past storage.wal_max_bytes is a warning naming the key; under it, no warning")
    func walOverLimit() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("busy")
        await h.supervisor.shutdown()
        // A writer that never checkpoints, kept open so its WAL stays.
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = 0") }
        let writer = try DatabaseQueue(path: h.dataDirectory.workspaceFile(ws).path, configuration: configuration)
        try await writer.write { db in try db.execute(sql: "CREATE TABLE ballast (b BLOB); INSERT INTO ballast VALUES (randomblob(3000000))") }
        let config = testConfig { $0.storage.walMaxBytes = 2 << 20 }
        let report = Self.doctor(h, config: config)
        let wal = report.findings.filter { $0.check == "wal" }
        #expect(wal.count == 1 && wal.first?.severity == .warning, "\(report.findings)")
        #expect(wal.first?.message.contains("storage.wal_max_bytes") == true)
        #expect(wal.first?.message.contains("\(ws).sqlite-wal") == true)
        #expect(Self.doctor(h, config: testConfig { $0.storage.walMaxBytes = 64 << 20 }).findings.filter { $0.check == "wal" }.isEmpty)
        try await writer.close()
    }

    @Test("warnings exit 1: unused setup token, dead jobs, pending migrations, a certificate expiring within 30 days, little disk")
    func warnings() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("warn")
        let old = try h.createWorkspace("old")
        let actor = try await h.supervisor.pin(ws)
        try await actor.write { tx in
            try tx.db.execute(sql: """
                INSERT INTO jobs (kind, payload, priority, state, attempts, max_attempts, run_at, created_at)
                VALUES ('x', X'7B7D', 0, 'dead', 5, 5, 0, 0)
                """)
        }
        await h.supervisor.unpin(ws)
        await h.supervisor.shutdown()
        try UpgradeTests.makeOldWorkspaceFile(h.dataDirectory.workspaceFile(old))
        try Data("token".utf8).write(to: h.dataDirectory.setupTokenFile)
        let (pem, _) = try SelfSignedCertificate.make(hostname: "localhost", now: Date().addingTimeInterval(-(10 * 365 - 10) * 86400))
        try FileManager.default.createDirectory(at: h.dataDirectory.tlsDirectory, withIntermediateDirectories: true)
        try Data(pem.utf8).write(to: h.dataDirectory.tlsDirectory.appendingPathComponent("sentinel.crt"))
        let report = Self.doctor(h)
        let warned = Set(report.findings.filter { $0.severity == .warning }.map(\.check))
        #expect(warned == ["setup-token", "dead-jobs", "tls", "schema"])
        #expect(report.findings.first { $0.check == "schema" }?.fix?.contains("sentinel migrate") == true)
        #expect(report.exitCode == 1)
        #expect(report.findings.first { $0.check == "dead-jobs" }?.fix?.contains("sentinel jobs list --workspace \(ws.rawValue)") == true)
        #expect(report.findings.filter { $0.severity != .ok }.allSatisfy { $0.fix != nil })
        let tight = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), freeSpace: { _ in 10 }).run()
        #expect(tight.findings.contains { $0.check == "disk" && $0.severity == .error })
    }

    @Test("errors exit 2: master key readable by others, an expired certificate, a workspace file newer than the binary, a missing workspace file")
    func errors() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let newer = try h.createWorkspace("newer")
        let missing = try h.createWorkspace("missing")
        await h.supervisor.shutdown()
        try UpgradeTests.migrateOneStepFurther(h.dataDirectory.workspaceFile(newer))
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(missing))
        chmod(h.dataDirectory.masterKeyFile.path, 0o644)
        let (pem, _) = try SelfSignedCertificate.make(hostname: "localhost", now: Date().addingTimeInterval(-11 * 365 * 86400))
        try FileManager.default.createDirectory(at: h.dataDirectory.tlsDirectory, withIntermediateDirectories: true)
        try Data(pem.utf8).write(to: h.dataDirectory.tlsDirectory.appendingPathComponent("sentinel.crt"))
        let report = Self.doctor(h)
        let errors = report.findings.filter { $0.severity == .error }
        #expect(report.exitCode == 2)
        #expect(errors.contains { $0.check == "master-key" && $0.fix == "chmod 600 \(h.dataDirectory.masterKeyFile.path)" })
        #expect(errors.contains { $0.check == "tls" && $0.message.contains("expired") })
        #expect(errors.contains { $0.check == "schema" && $0.message.contains(newer.rawValue) })
        // A missing file's fix is a restore (it said to chown the file and not to restore it).
        let offline = try #require(errors.first { $0.check == "workspace" && $0.message.contains("workspace \(missing) is offline") })
        #expect(offline.fix == "restore it: `sentinel restore --from BACKUP_DIR --workspace \(missing)` (then `sentinel verify`)", "\(offline)")
    }

    @Test("a database file this user cannot write (made by a command run as root) is an error (doctor said all good; the next write failed)")
    func unwritableDatabaseFile() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let file = h.dataDirectory.workspaceFile(ws)
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.canWrite = { $0.path != file.path }
        let report = doctor.run()
        let found = report.findings.filter { $0.check == "data-dir" && $0.severity == .error }
        #expect(found.count == 1 && found.first?.message.contains("1 database file(s) are not writable") == true
                && found.first?.message.contains(file.path) == true, "\(found)")
        #expect(report.exitCode == 2)
    }

    @Test("a workspace file this user cannot read is offline with a chown fix, not 'restore it' (which would lose what was written since the backup)")
    func unreadableWorkspaceFileIsNotRestored() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let file = h.dataDirectory.workspaceFile(ws)
        // As root every file opens: a file that does not open stands in for one owned by another user.
        try Data(repeating: 0x5a, count: 8192).write(to: file)
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.canRead = { $0.path != file.path }
        let offline = try #require(doctor.run().findings.first { $0.check == "workspace" && $0.severity == .error })
        #expect(offline.fix?.contains("chown sentinel:sentinel \(file.path)") == true && offline.fix?.contains("do not restore") == true,
                "\(offline)")
        // A file this user may read and write that does not open is damaged: restore it.
        doctor.canRead = { _ in true }
        let damaged = try #require(doctor.run().findings.first { $0.check == "workspace" && $0.severity == .error })
        #expect(damaged.fix?.hasPrefix("restore it: `sentinel restore --from BACKUP_DIR --workspace \(ws.rawValue)`") == true, "\(damaged)")
    }

    @Test("a workspace whose -wal this user may not write is offline with a chown fix naming the -wal, not 'restore it' (which deletes the -wal and what it holds)")
    func unwritableWalIsNotRestored() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let file = h.dataDirectory.workspaceFile(ws)
        // As root every file opens: a damaged file, beside a -wal "owned by another user", stands in for one that does not open.
        try Data(repeating: 0x5a, count: 8192).write(to: file)
        let wal = URL(fileURLWithPath: file.path + "-wal")
        try Data().write(to: wal)
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.canRead = { $0.path != wal.path }
        let offline = try #require(doctor.run().findings.first { $0.check == "workspace" && $0.severity == .error })
        #expect(offline.fix?.contains("chown sentinel:sentinel \(wal.path)") == true && offline.fix?.contains("do not restore") == true, "\(offline)")
        #expect(offline.fix?.contains("\(ws.rawValue).sqlite-wal") == true, "\(offline)")
        // Its directory this user may not write (left root's by a restore run as root): the directory is named.
        doctor.canRead = { _ in true }
        let directory = h.dataDirectory.workspacesDirectory.path
        doctor.canWrite = { $0.path != directory && $0.path != directory + "/" }
        let blocked = try #require(doctor.run().findings.first { $0.check == "workspace" && $0.severity == .error })
        #expect(blocked.fix?.contains("chown sentinel:sentinel \(h.dataDirectory.workspacesDirectory.path)") == true, "\(blocked)")
        #expect(blocked.fix?.contains("do not restore") == true)
    }

    @Test("an exports directory this user may not write is an error (every export failed, said only after two days without one)")
    func unwritableExportsDirectory() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        await h.supervisor.shutdown()
        let exports = h.dataDirectory.exportsDirectory
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        #expect(!doctor.run().findings.contains { $0.check == "export" && $0.severity == .error })
        doctor.canWrite = { $0.path != exports.path }
        let found = try #require(doctor.run().findings.first { $0.check == "export" && $0.severity == .error })
        #expect(found.message.contains(exports.path) && found.fix?.contains("chown -R sentinel:sentinel \(exports.path)") == true, "\(found)")
        // Its lock file, left by an export run as root.
        try Data().write(to: h.dataDirectory.exportLockFile)
        doctor.canWrite = { $0.path != h.dataDirectory.exportLockFile.path }
        let lock = try #require(doctor.run().findings.first { $0.check == "export" && $0.severity == .error })
        #expect(lock.message.contains(".export.lock"), "\(lock)")
    }

    @Test("a certificate not valid yet is an error (doctor said it was valid until its expiry; every client refuses it)")
    func certificateNotValidYet() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        await h.supervisor.shutdown()
        let (pem, _) = try SelfSignedCertificate.make(hostname: "localhost", now: Date().addingTimeInterval(2 * 86400))
        try FileManager.default.createDirectory(at: h.dataDirectory.tlsDirectory, withIntermediateDirectories: true)
        try Data(pem.utf8).write(to: h.dataDirectory.tlsDirectory.appendingPathComponent("sentinel.crt"))
        let tls = Self.doctor(h).findings.filter { $0.check == "tls" }
        #expect(tls.count == 1 && tls.first?.severity == .error && tls.first?.message.contains("is not valid before") == true, "\(tls)")
    }

    @Test("a full disk (what /readyz calls full) is an error, not a warning about backup headroom")
    func fullDiskIsAnError() async throws {
        let h = try TestHarness()
        _ = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let report = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 4096 }).run()
        let disk = report.findings.filter { $0.check == "disk" }
        #expect(disk.count == 1 && disk.first?.severity == .error && disk.first?.message.contains("is nearly full (4096 bytes free)") == true, "\(disk)")
        #expect(report.exitCode == 2)
    }

    @Test("a master key of the wrong length is an error (doctor said present, mode 600, while serve would not start)")
    func masterKeyOfWrongLength() async throws {
        let h = try TestHarness()
        _ = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        for length in [0, 31] {
            try Data(repeating: 7, count: length).write(to: h.dataDirectory.masterKeyFile)
            chmod(h.dataDirectory.masterKeyFile.path, 0o600)
            let report = Self.doctor(h)
            let key = report.findings.filter { $0.check == "master-key" }
            #expect(key.count == 1 && key.first?.severity == .error && key.first?.message.contains("is not 32 bytes") == true, "\(key)")
            #expect(report.exitCode == 2)
        }
    }

    @Test("a notification channel's sealed destination counts among the credentials the master key must open")
    func notificationSecretsChecked() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("only-notify")
        let store = NotificationStore(masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        _ = try await h.supervisor.withWorkspace(ws) { actor in
            try await store.add(kind: "slack", name: "alerts", url: "https://hooks.example.com/T/SECRET", secret: nil, topics: ["run.failed"],
                                minSeverity: nil, by: "test", in: actor)
        }
        await h.supervisor.shutdown()
        #expect(Self.doctor(h).findings.filter { $0.check == "secrets" && $0.severity == .error }.isEmpty)
        var other = Data(count: 32)
        for i in 0..<32 { other[i] = UInt8.random(in: 0...255) }
        try other.write(to: h.dataDirectory.masterKeyFile)
        chmod(h.dataDirectory.masterKeyFile.path, 0o600)
        let report = Self.doctor(h)
        let secrets = report.findings.filter { $0.check == "secrets" && $0.severity == .error }
        #expect(secrets.count == 1 && secrets.first?.message.contains("1 of 1 stored credential") == true, "\(report.findings)")
        #expect(report.exitCode == 2)
    }

    @Test("a master key that cannot be looked at is said to be unreadable, with why, not missing")
    func masterKeyUnreadable() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        // Tests run as root, whom permissions do not stop: a path through a file fails the same way (ENOTDIR).
        let secrets = h.dataDirectory.secretsDirectory
        try FileManager.default.removeItem(at: secrets)
        try Data("not a directory".utf8).write(to: secrets)
        let key = Self.doctor(h).findings.filter { $0.check == "master-key" }
        #expect(key.count == 1 && key.first?.severity == .error && key.first?.message.contains("cannot be read (Not a directory)") == true, "\(key)")
        #expect(key.first?.message.contains("missing") == false)
    }

    @Test("events not exported for more than two days are a warning once the analytics export is in use")
    func exportLag() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("slow")
        let actor = try await h.supervisor.pin(ws)
        try await actor.write { tx in try tx.append(DomainEvent(type: "test.event")) }
        await h.supervisor.unpin(ws)
        await h.supervisor.shutdown()
        try h.control.write { db in
            try db.execute(sql: "INSERT INTO export_watermarks (workspace_id, last_seq, export_id, updated_at) VALUES (?, 0, 'exp_1', 0)", arguments: [ws.rawValue])
        }
        let later = Date().addingTimeInterval(3 * 86400)
        let report = Self.doctor(h, now: later)
        #expect(report.findings.contains { $0.check == "export" && $0.severity == .warning && $0.message.contains(ws.rawValue) })
        #expect(report.exitCode == 1)
        #expect(Self.doctor(h).findings.contains { $0.check == "export" && $0.severity == .ok })
    }
}
