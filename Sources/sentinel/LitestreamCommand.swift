import ArgumentParser
import Foundation
import SentinelCore

struct LitestreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "litestream", abstract: "Continuous replication with Litestream (a sidecar process).",
                                                    subcommands: [Config.self])

    struct Config: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "config",
            abstract: "Write litestream-N.yml files covering control.sqlite, the intake journal and every workspace file.",
            discussion: """
                At most litestream.max_databases_per_process databases per file; each file is run by one \
                sentinel-litestream@N.service. Once it has run, Sentinel rewrites the files in DATA_DIR/litestream \
                itself when a workspace is created or deleted (with litestream.replica_url set); \
                sentinel-litestream-reload@N.path restarts the instance. Files whose content is unchanged are \
                left alone. Prints one line per file.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Replica base URL: file:///path, s3://bucket/path, sftp://host/path, … (default: litestream.replica_url).") var replica: String?
        @Option(help: "Directory to write the files into (default: DATA_DIR/litestream).") var out: String?
        @Option(help: "Databases per Litestream process (default: litestream.max_databases_per_process).") var maxPerProcess: Int?
        @Option(help: "Serve Litestream's Prometheus metrics: file N on 127.0.0.1:PORT+N (default: litestream.metrics_port; 0: off).") var metricsPort: Int?
        @Flag(help: "Print JSON.") var json = false

        struct Output: Encodable {
            var directory: String
            var files: [FileOutput]
            var removed: [String]
        }

        struct FileOutput: Encodable {
            var file: String
            var instance: String
            var databases: Int
            var changed: Bool
        }

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                guard let replica = replica ?? config.litestream.replicaURL else {
                    throw CLIError("no replica: pass --replica URL or set litestream.replica_url")
                }
                let data = global.dataDirectory
                guard FileManager.default.fileExists(atPath: data.controlFile.path) else {
                    throw CLIError("no control.sqlite in \(data.root.path): start sentinel serve once (or pass --data-dir)")
                }
                let (control, opener) = try global.openControl(config)
                // Not while a workspace is being created or deleted (serve rewrites the files then too).
                let lock = try WorkspaceService(dataDirectory: data, control: control, opener: opener).workspacesLock()
                defer { _ = lock }
                let workspaces = try control.workspaces().compactMap(\.workspaceID)  // in creation order
                try control.close()
                let databases = try LitestreamConfig.databases(dataDirectory: data, workspaces: workspaces, replica: replica)
                let port = metricsPort ?? config.litestream.metricsPort
                let directory = out.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? LitestreamConfig.directory(in: data)
                // The split of the files already there is kept: a database moved to another file
                // would be replicated by two instances until both had restarted.
                let files = try LitestreamConfig.files(databases, maxPerProcess: maxPerProcess ?? config.litestream.maxDatabasesPerProcess,
                                                       keeping: LitestreamConfig.assignment(in: directory), metricsPort: port > 0 ? port : nil)
                // Said in words (Foundation's was a dump of NSCocoaErrorDomain Code=516).
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    throw CLIError("\(directory.path) is a file; --out names the directory the configuration files go into")
                }
                let result = try LitestreamConfig.write(files, to: directory)
                let output = Output(directory: directory.path, files: files.map {
                    FileOutput(file: directory.appendingPathComponent($0.name).path, instance: "sentinel-litestream@\($0.index).service",
                               databases: $0.databases.count, changed: result.written.contains($0.name))
                }, removed: result.removed)
                if json { try printJSON(output); return }
                for file in output.files {
                    print("\(file.changed ? "written  " : "unchanged") \(file.file): \(file.databases) database(s), \(file.instance)")
                }
                for name in result.removed { print("removed   \(directory.appendingPathComponent(name).path): stop its instance") }
            }
        }
    }
}
