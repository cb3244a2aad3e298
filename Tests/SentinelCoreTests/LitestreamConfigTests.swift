import Foundation
@testable import SentinelCore
import SentinelTestSupport
import Testing
import Yams

@Suite("sentinel litestream config")
struct LitestreamConfigTests {
    static let data = DataDirectory(path: "/var/lib/sentinel")

    static func ids(_ count: Int) -> [WorkspaceID] {
        (0..<count).map { WorkspaceID("ws_" + String(format: "%016d", $0))! }
    }

    /// The `dbs` of a generated file as Litestream reads it: (path, replica url) pairs.
    static func parsed(_ file: LitestreamConfig.File) throws -> [(String, String)] {
        let root = try #require(try Yams.load(yaml: file.yaml) as? [String: Any])
        let dbs = try #require(root["dbs"] as? [[String: Any]])
        return try dbs.map { db in
            let replica = try #require(db["replica"] as? [String: Any])
            return (try #require(db["path"] as? String), try #require(replica["url"] as? String))
        }
    }

    @Test("control.sqlite, the intake journal and every workspace file each get one replica under the base URL, in creation order")
    func coversEveryDatabase() throws {
        let created = [WorkspaceID("ws_zzzzzzzzzzzzzzzz")!, WorkspaceID("ws_aaaaaaaaaaaaaaaa")!]
        let dbs = try LitestreamConfig.databases(dataDirectory: Self.data, workspaces: created + [created[0]], replica: "file:///mnt/replica/")
        #expect(dbs.map(\.path) == ["/var/lib/sentinel/control.sqlite", "/var/lib/sentinel/intake-journal.sqlite",
                                    "/var/lib/sentinel/workspaces/ws_zzzzzzzzzzzzzzzz.sqlite", "/var/lib/sentinel/workspaces/ws_aaaaaaaaaaaaaaaa.sqlite"])
        #expect(dbs.map(\.replicaURL) == ["file:///mnt/replica/control", "file:///mnt/replica/intake-journal",
                                          "file:///mnt/replica/workspaces/ws_zzzzzzzzzzzzzzzz", "file:///mnt/replica/workspaces/ws_aaaaaaaaaaaaaaaa"])
        let files = try LitestreamConfig.files(dbs, maxPerProcess: 1_000)
        #expect(files.count == 1)
        let entries = try Self.parsed(files[0])
        #expect(entries.map(\.0) == dbs.map(\.path))
        #expect(entries.map(\.1) == dbs.map(\.replicaURL))
    }

    @Test("more databases than the per-process maximum are split across files, each database in exactly one")
    func splitsAcrossProcesses() throws {
        let dbs = try LitestreamConfig.databases(dataDirectory: Self.data, workspaces: Self.ids(2_500), replica: "s3://bucket/sentinel")
        let files = try LitestreamConfig.files(dbs, maxPerProcess: 1_000, metricsPort: 9_400)
        #expect(files.map(\.databases.count) == [1_000, 1_000, 502])
        #expect(files.map(\.name) == ["litestream-0.yml", "litestream-1.yml", "litestream-2.yml"])
        #expect(files.map(\.metricsAddress) == ["127.0.0.1:9400", "127.0.0.1:9401", "127.0.0.1:9402"])
        let all = try files.flatMap { try Self.parsed($0).map(\.0) }
        #expect(all == dbs.map(\.path))
        #expect(Set(all).count == 2_502)
        #expect(all.prefix(2) == ["/var/lib/sentinel/control.sqlite", "/var/lib/sentinel/intake-journal.sqlite"])
        // A new workspace only lands in the last file: the other processes keep their databases.
        let more = try LitestreamConfig.files(
            LitestreamConfig.databases(dataDirectory: Self.data, workspaces: Self.ids(2_501), replica: "s3://bucket/sentinel"), maxPerProcess: 1_000, metricsPort: 9_400)
        #expect(more[0] == files[0] && more[1] == files[1])
        #expect(more[2].databases.count == 503)
        // Exactly at the limit: one file; an empty appliance still gets one (control.sqlite and the journal).
        #expect(try LitestreamConfig.files(Array(dbs.prefix(1_000)), maxPerProcess: 1_000).count == 1)
        #expect(try LitestreamConfig.files(Array(dbs.prefix(1)), maxPerProcess: 1_000).count == 1)
        #expect(throws: ConfigError.self) { try LitestreamConfig.files(dbs, maxPerProcess: 0) }
    }

    @Test("once written, a database never moves to another file: a deleted workspace leaves a gap that the next new one fills; a lowered limit splits afresh")
    func splitIsKeptAcrossDeletions() throws {
        let dbs = try LitestreamConfig.databases(dataDirectory: Self.data, workspaces: Self.ids(6), replica: "file:///r")
        let paths = dbs.map(\.path)
        let first = try LitestreamConfig.files(dbs, maxPerProcess: 3)
        #expect(first.map { $0.databases.map(\.path) } == [Array(paths[0..<3]), Array(paths[3..<6]), Array(paths[6..<8])])
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try LitestreamConfig.write(first, to: dir.url)
        #expect(LitestreamConfig.assignment(in: dir.url) == first.map { $0.databases.map(\.path) })

        // The first workspace is deleted: every other database stays where it was (they all moved
        // one place along, so two instances replicated the same file until both restarted).
        let deleted = dbs.filter { $0.path != paths[2] }
        let after = try LitestreamConfig.files(deleted, maxPerProcess: 3, keeping: LitestreamConfig.assignment(in: dir.url))
        #expect(after.map { $0.databases.map(\.path) } == [Array(paths[0..<2]), Array(paths[3..<6]), Array(paths[6..<8])])
        #expect(try LitestreamConfig.write(after, to: dir.url).written == ["litestream-0.yml"])
        // A new workspace fills the gap.
        let added = try LitestreamConfig.databases(dataDirectory: Self.data, workspaces: Array(Self.ids(6).dropFirst()) + Self.ids(7).suffix(1), replica: "file:///r")
        let refilled = try LitestreamConfig.files(added, maxPerProcess: 3, keeping: LitestreamConfig.assignment(in: dir.url))
        #expect(refilled.map { $0.databases.map(\.path) } == [Array(paths[0..<2]) + [added.last!.path], Array(paths[3..<6]), Array(paths[6..<8])])
        // A file whose databases are all gone is kept, listing none (its instance keeps its
        // number), unless it is the last.
        let middleGone = dbs.filter { !paths[3..<6].contains($0.path) }
        let gap = try LitestreamConfig.files(middleGone, maxPerProcess: 3, keeping: first.map { $0.databases.map(\.path) })
        #expect(gap.map(\.databases.count) == [3, 0, 2])
        #expect(gap[1].yaml.contains("dbs: []"))
        let lastGone = dbs.filter { !paths[6..<8].contains($0.path) }
        #expect(try LitestreamConfig.files(lastGone, maxPerProcess: 3, keeping: first.map { $0.databases.map(\.path) }).count == 2)
        // A file missing or unreadable in between lists nothing: the files after it keep theirs.
        try LitestreamConfig.write(first, to: dir.url)
        try Data([0xFF, 0xFE, 0x00]).write(to: dir.url.appendingPathComponent("litestream-1.yml"))
        #expect(LitestreamConfig.assignment(in: dir.url).map(\.count) == [3, 0, 2])
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("litestream-1.yml"))
        let hole = try LitestreamConfig.files(dbs, maxPerProcess: 3, keeping: LitestreamConfig.assignment(in: dir.url))
        #expect(hole[2].databases.map(\.path) == Array(paths[6..<8]), "\(hole.map { $0.databases.map(\.path) })")
        // Files not named as ours (a leading zero, a sign) are neither read nor removed.
        try LitestreamConfig.write(first, to: dir.url)
        for name in ["litestream-07.yml", "litestream-+5.yml"] { try Data("mine".utf8).write(to: dir.url.appendingPathComponent(name)) }
        #expect(try LitestreamConfig.write(Array(first.prefix(1)), to: dir.url).removed == ["litestream-1.yml", "litestream-2.yml"])
        #expect(FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("litestream-07.yml").path))
        #expect(FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("litestream-+5.yml").path))
        // The same data directory named through a symbolic link keeps the split.
        let real = dir.url.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: real.appendingPathComponent("workspaces"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: dir.url.appendingPathComponent("link"), withDestinationURL: real)
        let viaReal = try LitestreamConfig.databases(dataDirectory: DataDirectory(path: real.path), workspaces: Self.ids(4), replica: "file:///r")
        let viaLink = try LitestreamConfig.databases(dataDirectory: DataDirectory(path: dir.url.appendingPathComponent("link").path), workspaces: Array(Self.ids(4).dropFirst()), replica: "file:///r")
        let realSplit = try LitestreamConfig.files(viaReal, maxPerProcess: 3).map { $0.databases.map(\.path) }
        let linkSplit = try LitestreamConfig.files(viaLink, maxPerProcess: 3, keeping: realSplit)
        #expect(linkSplit.map(\.databases.count) == [2, 3], "\(linkSplit.map { $0.databases.map(\.path) })")
        // A lower limit than a file holds: split afresh.
        #expect(try LitestreamConfig.files(dbs, maxPerProcess: 2, keeping: first.map { $0.databases.map(\.path) }).map(\.databases.count) == [2, 2, 2, 2])
    }

    @Test("replica URLs keep their query; relative, hostless and unknown-scheme URLs are refused")
    func replicaURLs() throws {
        #expect(try LitestreamConfig.replicaURL("s3://bucket/a/b?endpoint=http://127.0.0.1:9000&region=x", appending: "workspaces/ws_1")
            == "s3://bucket/a/b/workspaces/ws_1?endpoint=http://127.0.0.1:9000&region=x")
        #expect(try LitestreamConfig.replicaURL("sftp://backup@host:22/srv/replica", appending: "control") == "sftp://backup@host:22/srv/replica/control")
        #expect(try LitestreamConfig.replicaURL("s3://bucket", appending: "control") == "s3://bucket/control")
        // As written: Litestream does not decode the path, so `rep dir` re-encoded as `rep%20dir`
        // replicated into a directory of that name.
        #expect(try LitestreamConfig.replicaURL("file:///srv/rep dir/x/", appending: "control") == "file:///srv/rep dir/x/control")
        // An unsupported replica is a configuration error when the file is loaded (it was a 500
        // on every workspace created through the API).
        #expect(throws: ConfigError.self) { try ConfigLoader.validate(testConfig { $0.litestream.replicaURL = "ftp://host/x" }) }
        for bad in ["relative/path", "file://relative", "http://example.com/x", "s3:///no-bucket", "", "not a url at all"] {
            #expect(throws: ConfigError.self, "\(bad)") { try LitestreamConfig.replicaURL(bad, appending: "control") }
        }
    }

    @Test("paths and URLs with quotes, backslashes, spaces and dollar signs come back from the YAML verbatim")
    func quoting() throws {
        let odd = DataDirectory(path: "/srv/sentinel data/\"q\" \\ $HOME: #x")
        let dbs = try LitestreamConfig.databases(dataDirectory: odd, workspaces: Self.ids(1), replica: "file:///mnt/re%20plica")
        let entries = try Self.parsed(try LitestreamConfig.files(dbs, maxPerProcess: 10)[0])
        #expect(entries.map(\.0) == dbs.map(\.path))
        #expect(entries.map(\.1) == ["file:///mnt/re%20plica/control", "file:///mnt/re%20plica/intake-journal",
                                     "file:///mnt/re%20plica/workspaces/ws_0000000000000000"])
    }

    @Test("writing replaces changed files only and removes files left from a larger split")
    func writesAndPrunes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let out = dir.url.appendingPathComponent("litestream")
        let dbs = try LitestreamConfig.databases(dataDirectory: Self.data, workspaces: Self.ids(4), replica: "file:///r")
        var result = try LitestreamConfig.write(try LitestreamConfig.files(dbs, maxPerProcess: 2), to: out)
        #expect(result.written == ["litestream-0.yml", "litestream-1.yml", "litestream-2.yml"])
        try "keep me".write(to: out.appendingPathComponent("notes.yml"), atomically: true, encoding: .utf8)
        result = try LitestreamConfig.write(try LitestreamConfig.files(dbs, maxPerProcess: 2), to: out)
        #expect(result.written.isEmpty && result.removed.isEmpty)
        result = try LitestreamConfig.write(try LitestreamConfig.files(dbs, maxPerProcess: 4), to: out)
        #expect(result.written == ["litestream-0.yml", "litestream-1.yml"])
        #expect(result.removed == ["litestream-2.yml"])
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(names == ["litestream-0.yml", "litestream-1.yml", "notes.yml"])
    }

    @Test("litestream.max_databases_per_process defaults to 1000, must be at least 1; litestream.replica_url is read")
    func configKeys() throws {
        #expect(SentinelConfig().litestream.maxDatabasesPerProcess == 1_000)
        let config = try ConfigLoader.load(file: nil, environment: ["SENTINEL_LITESTREAM_MAX_DATABASES_PER_PROCESS": "250",
                                                                     "SENTINEL_LITESTREAM_REPLICA_URL": "s3://b/p"])
        #expect(config.litestream.maxDatabasesPerProcess == 250)
        #expect(config.litestream.replicaURL == "s3://b/p")
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_LITESTREAM_MAX_DATABASES_PER_PROCESS": "0"]) }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_LITESTREAM_METRICS_PORT": "70000"]) }
        #expect(try ConfigLoader.load(file: nil, environment: ["SENTINEL_LITESTREAM_METRICS_PORT": "9400"]).litestream.metricsPort == 9_400)
    }

    @Test("a configuration file of nested aliases is refused before it is expanded (a 650-byte file held every command for minutes)")
    func aliasBombRefused() throws {
        let dir = TemporaryDirectory("sentinel-alias")
        defer { dir.cleanup() }
        var yaml = "l0: &l0 {a: 1, b: 1}\n"
        for n in 1...24 { yaml += "l\(n): &l\(n) {a: *l\(n - 1), b: *l\(n - 1)}\n" }
        let file = dir.url.appendingPathComponent("bomb.yaml")
        try Data(yaml.utf8).write(to: file)
        #expect {
            try ConfigLoader.load(file: file.path, environment: [:])
        } throws: { error in
            "\(error)".contains("too many aliases")
        }
        // A quoted empty value is a value, as in the environment; null and a bare key keep the default.
        try Data("review:\n  command_associations: \"\"\nserver:\n  public_url:\nlog:\n  level: ~\n".utf8).write(to: file)
        let empty = try ConfigLoader.load(file: file.path, environment: [:])
        #expect(empty.review.commandAssociations == "" && empty.log.level == SentinelConfig().log.level && empty.server.publicURL == nil)
        #expect(empty.review.commandAssociations == (try ConfigLoader.load(file: nil, environment: ["SENTINEL_REVIEW_COMMAND_ASSOCIATIONS": ""])).review.commandAssociations)
        // A few aliases, as an admin may use them, still load (and name an unknown key as before).
        try Data("server: &s {port: 9443}\n".utf8).write(to: file)
        #expect(try ConfigLoader.load(file: file.path, environment: [:]).server.port == 9_443)
    }

    /// The database paths and the metrics address of a file as Litestream reads it.
    static func onDisk(_ url: URL) throws -> (paths: [String], addr: String?) {
        let root = try #require(try Yams.load(yaml: String(contentsOf: url, encoding: .utf8)) as? [String: Any])
        let dbs = try #require(root["dbs"] as? [[String: Any]])
        return (try dbs.map { try #require($0["path"] as? String) }, root["addr"] as? String)
    }

    @Test("once set up, creating and deleting a workspace rewrite the Litestream files (with litestream.metrics_port); before that, or without a replica URL, nothing is written")
    func refreshedWhenWorkspacesChange() throws {
        let h = try TestHarness(config: testConfig {
            $0.litestream.replicaURL = "file:///mnt/replica"
            $0.litestream.metricsPort = 9_400
        })
        defer { h.directory.cleanup() }
        let directory = LitestreamConfig.directory(in: h.dataDirectory)
        let file = directory.appendingPathComponent("litestream-0.yml")
        let a = try h.createWorkspace("a")
        #expect(!FileManager.default.fileExists(atPath: directory.path), "Litestream not set up yet: nothing written")
        // What `sentinel litestream config` does once.
        try LitestreamConfig.refresh(dataDirectory: h.dataDirectory, workspaces: [a], settings: h.config.litestream)
        #expect(!FileManager.default.fileExists(atPath: file.path), "the directory is what sets it up")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try LitestreamConfig.refresh(dataDirectory: h.dataDirectory, workspaces: [a], settings: h.config.litestream)
        let control = [h.dataDirectory.controlFile.path, h.dataDirectory.intakeJournalFile.path]
        #expect(try Self.onDisk(file).paths == control + [h.dataDirectory.workspaceFile(a).path])

        let b = try h.createWorkspace("b")
        let afterCreate = try Self.onDisk(file)
        #expect(afterCreate.paths == control + [h.dataDirectory.workspaceFile(a).path, h.dataDirectory.workspaceFile(b).path])
        #expect(afterCreate.addr == "127.0.0.1:9400")
        // Litestream's shadow directory of b's file (what `litestream replicate` keeps beside it)
        // goes with the file.
        let shadow = h.dataDirectory.workspacesDirectory.appendingPathComponent(".\(b.rawValue).sqlite-litestream/generations/0", isDirectory: true)
        try FileManager.default.createDirectory(at: shadow, withIntermediateDirectories: true)
        try Data("wal".utf8).write(to: shadow.appendingPathComponent("00000000.wal"))
        _ = try h.workspaces.delete(b, by: "test")
        #expect(try Self.onDisk(file).paths == control + [h.dataDirectory.workspaceFile(a).path])
        #expect(!FileManager.default.fileExists(atPath: shadow.deletingLastPathComponent().deletingLastPathComponent().path))

        // A file written by an older version (no intake journal listed) is brought up to date as
        // `serve` starts; a second start changes nothing.
        let older = LitestreamConfig.File(index: 0, databases: [
            .init(path: h.dataDirectory.controlFile.path, replicaURL: "file:///mnt/replica/control"),
            .init(path: h.dataDirectory.workspaceFile(a).path, replicaURL: "file:///mnt/replica/workspaces/\(a.rawValue)"),
        ], metricsAddress: "127.0.0.1:9400")
        try LitestreamConfig.write([older], to: directory)
        #expect(try h.workspaces.refreshReplication()?.written == ["litestream-0.yml"])
        #expect(try Self.onDisk(file).paths == [control[0], h.dataDirectory.workspaceFile(a).path, control[1]],
                "the journal joins the first file with room; nothing listed moves")
        #expect(try h.workspaces.refreshReplication()?.written == [])

        // An appliance without a replica URL leaves the files alone.
        let plain = try TestHarness(config: testConfig(), reusing: h)
        let before = try Data(contentsOf: file)
        _ = try plain.createWorkspace("c")
        #expect(try Data(contentsOf: file) == before)

        // Files that cannot be written (here: a replica URL Litestream has no type for): no workspace.
        let broken = try TestHarness(config: testConfig { $0.litestream.replicaURL = "ftp://host/path" }, reusing: h)
        let files = try FileManager.default.contentsOfDirectory(atPath: h.dataDirectory.workspacesDirectory.path).sorted()
        #expect(throws: ConfigError.self) { try broken.createWorkspace("d") }
        #expect(try h.control.workspace(named: "d") == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: h.dataDirectory.workspacesDirectory.path).sorted() == files)
        #expect(try Data(contentsOf: file) == before)
    }
}
