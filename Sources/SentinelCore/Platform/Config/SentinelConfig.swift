import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Yams

/// The appliance's configuration. Every key has a built-in default so `sentinel serve` runs with no
/// file at all; a YAML file (`--config`) and `SENTINEL_…` environment variables override it, in that
/// order. One loader (`ConfigLoader`) is the only way configuration enters the process.
public struct SentinelConfig: Sendable, Equatable {
    public var server = Server()
    public var storage = Storage()
    public var workspaces = Workspaces()
    public var jobs = Jobs()
    public var shutdown = Shutdown()
    public var log = Log()
    public var observability = Observability()
    public var github = GitHub()
    public var gitlab = GitLab()
    public var ai = AI()
    public var export = Export()
    public var billing = Billing()
    public var review = Review()
    public var security = Security()
    public var retention = Retention()

    /// How long what the appliance no longer needs is kept (the `retention` job, once a day per workspace).
    public struct Retention: Sendable, Equatable {
        /// Webhook delivery bodies of processed deliveries are pruned after this many days (the row
        /// and its outcome stay).
        public var deliveriesDays = 30.0
        /// Succeeded and cancelled jobs are deleted after this many days (dead jobs are kept).
        public var jobsDays = 14.0
    }

    public var reconcile = Reconcile()

    /// Catch-up after downtime: the sweep that finds open pull requests without a run and asks
    /// the platform to resend failed webhook deliveries.
    public struct Reconcile: Sendable, Equatable {
        /// Sweep at start and every `intervalSeconds` (±10% jitter) while serving.
        public var enabled = true
        public var intervalSeconds = 600.0
        /// Reviews one sweep requests per integration at most; the rest wait for the next sweep.
        public var maxReviewsPerSweep = 50
        /// Stop an integration's sweep when the share of its API rate limit left falls below this.
        public var minRateRemaining = 0.2
        /// Ask GitHub to resend failed deliveries of the App's webhook (within GitHub's 3 days).
        public var redeliver = true
    }

    public var litestream = Litestream()

    public struct Review: Sendable, Equatable {
        /// GitHub `author_association` values whose `@sentinel review` comments start a run.
        public var commandAssociations = "OWNER,MEMBER,COLLABORATOR"
        /// Tokens (input + output) one run may spend on model calls; checked before each call.
        public var maxTokensPerRun = 1_000_000
        /// Check conclusion of a run that failed (`failure` blocks a required check; `neutral` does not).
        public var failedRunConclusion: FailedRunConclusion = .failure

        /// `commandAssociations` as a set of upper-cased values.
        public var commandAssociationSet: Set<String> {
            Set(commandAssociations.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).uppercased() }.filter { !$0.isEmpty })
        }
    }

    public enum FailedRunConclusion: String, Sendable, Equatable, CaseIterable {
        case failure, neutral
    }

    public struct Security: Sendable, Equatable {
        /// Let outbound calls (AI providers, GitHub Enterprise Server) reach private, link-local and
        /// metadata addresses. Off: only public addresses and loopback.
        public var allowPrivateDestinations = false
        /// Comma-separated CIDRs that are allowed even when `allowPrivateDestinations` is off.
        public var allowedDestinationCIDRs = ""
        /// Comma-separated host names and CIDRs an AI provider's base URL may reach over plain
        /// http (a model server on the internal network: Ollama and vLLM serve http by default).
        public var plainHTTPHosts = ""
    }

    public struct Billing: Sendable, Equatable {
        /// YAML file defining plans (see `PlanCatalog`); unset = the built-in plans.
        public var plansFile: String? = nil
        /// A signed license raising the appliance's entitlements; unset = none.
        public var licenseFile: String? = nil
    }

    public struct Export: Sendable, Equatable {
        /// Write the nightly analytics dump while serving.
        public var enabled = true
        /// `HH:MM`, UTC.
        public var time = "02:00"
        /// The workspace (id) whose notification channels subscribed to `export.failed` are told
        /// when the nightly export fails; unset = nobody is notified (the failure is logged).
        public var notifyWorkspace: String? = nil

        /// Hour and minute of `time` (validated at load).
        public var clock: (hour: Int, minute: Int)? {
            let parts = time.split(separator: ":")
            guard parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
            return (h, m)
        }
    }

    public struct AI: Sendable, Equatable {
        /// YAML file of price overrides (see `PriceTable.load`); unset = built-in prices.
        public var priceTableFile: String? = nil
    }

    public init() {}

    public struct GitHub: Sendable, Equatable {
        public var requestTimeoutSeconds = 30.0
    }

    public struct GitLab: Sendable, Equatable {
        public var requestTimeoutSeconds = 30.0
    }

    public struct Server: Sendable, Equatable {
        public var host = "0.0.0.0"
        public var port = 8443
        public var tlsEnabled = true
        public var tlsCertFile: String? = nil
        public var tlsKeyFile: String? = nil
        /// How often the certificate and key files are looked at for a renewal (SIGHUP: at once).
        public var tlsReloadCheckSeconds = 60.0
        /// `Strict-Transport-Security: max-age=…` on every answer while serving HTTPS (0: not sent).
        public var hstsMaxAgeSeconds = 31_536_000
        /// How GitHub reaches this appliance (`https://sentinel.example.com`), for webhook URLs.
        public var publicURL: String? = nil
        /// True when browsers reach the appliance over HTTPS: TLS on the listener, or a
        /// `public_url` of `https` in front of a plain-HTTP listener (TLS ended at a proxy). The
        /// console's cookies are then `Secure`, so a browser never sends a session over plain HTTP.
        public var browsersUseHTTPS: Bool {
            tlsEnabled || publicURL.flatMap { URL(string: $0)?.scheme?.lowercased() } == "https"
        }
        /// A connection that sends nothing (no request part) for this long is closed.
        public var idleTimeoutSeconds = 60.0
        /// A request must arrive whole (head and body) within this long of the connection opening
        /// or of the previous response; past it the connection is closed (a body dripping a byte at
        /// a time never trips the idle timeout).
        public var requestTimeoutSeconds = 60.0
        /// Connections open at once; past it, new connections wait in the listen backlog.
        public var maxConnections = 1_024
        /// Largest request head (all header lines together) accepted; a larger one is answered 431 and closed.
        public var maxHeaderBytes = 32 * 1_024
        /// Webhook bodies held in memory at once (a body is read whole before its signature can be
        /// checked); a delivery that would go past it is answered 503 with `Retry-After` before its
        /// body is read. Deliveries up to 1 MiB, and one delivery alone, are always read.
        public var maxWebhookBytesInFlight = 256 * 1_024 * 1_024
        /// Threads of the event-loop group that reads and writes every connection (the listener's
        /// and the outbound clients'); 0: one per core serving HTTPS, half the cores (at least one)
        /// serving plain HTTP (`EventLoopThreads`).
        public var eventLoopThreads = 0
    }

    public var auth = Auth()

    public struct Auth: Sendable, Equatable {
        /// bcrypt work factor of stored passwords.
        public var bcryptCost = 12
        public var sessionHours = 12.0
        public var loginFailuresPerAccount = 5
        public var loginFailuresPerAddress = 20
        public var loginWindowSeconds = 900.0
    }

    public struct Storage: Sendable, Equatable {
        /// `full` makes every acknowledging commit survive a power cut; `normal` only a process crash.
        public var synchronous: SynchronousMode = .full
        public var busyTimeoutMilliseconds = 5_000
        /// Copy every file into `data/backups/pre-upgrade-FROM-TO/` before migrating it.
        public var preUpgradeSnapshot = true
        /// A WAL larger than this after a checkpoint is truncated (SQLite `journal_size_limit`, and
        /// a TRUNCATE checkpoint of idle files once a minute); `sentinel doctor` warns above it.
        public var walMaxBytes = 64 << 20
    }

    public enum SynchronousMode: String, Sendable, Equatable, CaseIterable {
        case full, normal
        /// Internal: files not yet visible to anyone (a workspace being created), fsynced explicitly.
        case off
    }

    public struct Litestream: Sendable, Equatable {
        /// Where `sentinel litestream config` points the replicas (file://, s3://, sftp://, …); `--replica` overrides it.
        public var replicaURL: String? = nil
        /// Databases one Litestream process replicates; more are split across several processes.
        public var maxDatabasesPerProcess = 1_000
        /// File N of the generated configuration serves Litestream's Prometheus metrics on
        /// 127.0.0.1:metricsPort+N; 0: off.
        public var metricsPort = 0
    }

    public struct Workspaces: Sendable, Equatable {
        public var maxOpen = 256
        public var idleCloseSeconds = 300.0
        public var offlineRetrySeconds = 30.0
        /// The least time between rounds of the intake journal's applier that hold only deliveries
        /// settled at intake (0: back to back); a delivery with a job is applied at once.
        public var journalRoundPauseMilliseconds = 2_500
    }

    public struct Jobs: Sendable, Equatable {
        public var globalConcurrency = 16
        public var workspaceConcurrency = 4
        public var maxAttempts = 8
        public var backoffBaseSeconds = 2.0
        public var backoffMaxSeconds = 600.0
        public var leaseSeconds = 60.0
        public var pollIntervalMilliseconds = 250
        public var rateLimitPerSecond = 50.0
        public var rateLimitBurst = 100.0
        /// Across workspaces a higher priority starts first; due work that waited this long counts
        /// one priority higher (per period), so lower priorities never starve.
        public var priorityAgingSeconds = 30.0
    }

    public struct Shutdown: Sendable, Equatable {
        public var drainSeconds = 20.0
    }

    public struct Log: Sendable, Equatable {
        public var level = "info"
    }

    /// Tracing export. Trace ids exist always (logs carry `trace_id`, outbound calls a
    /// `traceparent`); spans are recorded, and leave the process, only when an OTLP endpoint is set.
    public struct Observability: Sendable, Equatable {
        /// OTLP/HTTP (protobuf) collector base URL, e.g. `http://collector:4318`; nil = no export.
        public var otlpEndpoint: String?
        /// `service.name` of the exported spans.
        public var otlpServiceName = "sentinel"
        /// Comma-separated address blocks `/metrics` answers; others get 403. The default is the
        /// loopback and private networks, where a Prometheus server scrapes from, not the internet
        /// the webhooks come in from.
        public var metricsAllowedCIDRs = "127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7"

        public func metricsAllowedRanges() throws -> [IPRange] {
            try IPRange.list(metricsAllowedCIDRs, key: "observability.metrics_allowed_cidrs")
        }
    }
}

/// A configuration key as documented in `appliance/sentinel.example.yaml`.
public struct ConfigKey: Sendable {
    public let path: String
    public let summary: String
    /// The values the key accepts, as documented (`1...86400`); nil for strings, booleans and choices.
    public let range: String?
    let apply: @Sendable (inout SentinelConfig, String) throws -> Void
    let current: @Sendable (SentinelConfig) -> String
    /// Throws when the key's value is outside its range (`validate` runs it for every key).
    let check: @Sendable (SentinelConfig) throws -> Void

    /// `server.tls.enabled` → `SENTINEL_SERVER_TLS_ENABLED`.
    public var environmentName: String {
        "SENTINEL_" + path.uppercased().replacingOccurrences(of: ".", with: "_")
    }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// A YAML file libyaml could not parse, in one line: its message is followed by the source line
    /// and a caret under it, which made a command's one-line error (and serve's log line) several.
    static func invalidYAML(_ file: String, _ error: any Error) -> ConfigError {
        var lines = "\(error)".split(whereSeparator: \.isNewline).map(String.init)
        // The source line and the caret under it go; the message and its cause (the line after a
        // context, "found character that cannot start any token") stay.
        if let caret = lines.firstIndex(where: { !$0.isEmpty && $0.allSatisfy { $0 == "^" || $0 == " " || $0 == "\t" } }) {
            lines.removeSubrange(max(0, caret - 1)...caret)
        }
        return ConfigError("\(file): invalid YAML: \(lines.joined(separator: " "))")
    }
}

public enum ConfigLoader {
    /// Every key the appliance reads. Adding a key here is the only way to add configuration.
    public static let keys: [ConfigKey] = [
        key("server.host", "address to listen on", \.server.host),
        key("server.port", "port to listen on", \.server.port, in: 0...65_535),
        key("server.tls.enabled", "serve HTTPS (false only behind a TLS-terminating proxy)", \.server.tlsEnabled),
        key("server.tls.cert_file", "PEM certificate chain; a self-signed one is made in data/tls/ when unset", \.server.tlsCertFile),
        key("server.tls.key_file", "PEM private key for server.tls.cert_file", \.server.tlsKeyFile),
        key("server.tls.reload_check_seconds", "how often the certificate and key files are checked for a renewal, served from the next connection on (SIGHUP checks at once)", \.server.tlsReloadCheckSeconds, in: 1...86_400),
        key("server.tls.hsts_max_age_seconds", "Strict-Transport-Security max-age sent on every HTTPS answer: browsers that trust the certificate come back only over HTTPS for this long (0: not sent)", \.server.hstsMaxAgeSeconds, in: 0...63_072_000),
        key("server.public_url", "base URL GitHub uses to reach Sentinel (for webhook URLs in API responses); default: the request's Host", \.server.publicURL),
        key("server.idle_timeout_seconds", "close a connection whose next request head has not arrived whole this long after it opened or after the previous response", \.server.idleTimeoutSeconds, in: 0.1...86_400),
        key("server.request_timeout_seconds", "a request must arrive whole (head and body) within this long of the connection opening or the previous response", \.server.requestTimeoutSeconds, in: 1...3_600),
        key("server.max_connections", "connections served at once; more wait in the listen backlog", \.server.maxConnections, in: 1...1_000_000),
        key("server.max_header_bytes", "largest request head accepted (all header lines together)", \.server.maxHeaderBytes, in: 1_024...1_048_576),
        key("server.event_loop_threads", "threads reading and writing connections (the listener's and the outbound clients'); 0 = one per core serving HTTPS, half the cores (at least one) serving plain HTTP", \.server.eventLoopThreads, in: 0...1_024),
        key("server.max_webhook_bytes_in_flight", "webhook bodies held in memory at once; past it a delivery gets 503 with Retry-After", \.server.maxWebhookBytesInFlight, in: 1_048_576...68_719_476_736),
        key("auth.bcrypt_cost", "bcrypt work factor of stored passwords (4...31)", \.auth.bcryptCost, in: 4...31),
        key("auth.session_hours", "lifetime of a sign-in session", \.auth.sessionHours, in: 0.01...8_760),
        key("auth.login_failures_per_account", "failed sign-ins per account within the window before 429", \.auth.loginFailuresPerAccount, in: 1...1_000_000),
        key("auth.login_failures_per_address", "failed sign-ins per source address within the window before 429", \.auth.loginFailuresPerAddress, in: 1...1_000_000),
        key("auth.login_window_seconds", "the sign-in throttling window", \.auth.loginWindowSeconds, in: 1...86_400),
        key("storage.synchronous", "full | normal: durability of acknowledging commits", \.storage.synchronous),
        key("storage.busy_timeout_ms", "how long SQLite waits on a locked file", \.storage.busyTimeoutMilliseconds, in: 0...600_000),
        key("storage.wal_max_bytes", "a WAL larger than this is truncated after checkpoints; doctor warns above it", \.storage.walMaxBytes, in: 1_048_576...1_099_511_627_776),
        key("retention.deliveries_days", "processed webhook delivery bodies are pruned after this many days (row and outcome stay)", \.retention.deliveriesDays, in: 1...36_500),
        key("retention.jobs_days", "succeeded and cancelled jobs are deleted after this many days", \.retention.jobsDays, in: 1...36_500),
        key("storage.pre_upgrade_snapshot", "snapshot each file into data/backups/pre-upgrade-FROM-TO/ before migrating it", \.storage.preUpgradeSnapshot),
        key("workspaces.max_open", "workspace files kept open at once (LRU)", \.workspaces.maxOpen, in: 1...100_000),
        key("workspaces.idle_close_seconds", "close a workspace file idle this long", \.workspaces.idleCloseSeconds, in: 1...604_800),
        key("workspaces.offline_retry_seconds", "retry opening an offline workspace after this long", \.workspaces.offlineRetrySeconds, in: 1...86_400),
        key("workspaces.journal_round_pause_ms", "least time between rounds applying settled webhook deliveries from the intake journal to closed workspace files (0 = back to back); deliveries with a job are applied at once", \.workspaces.journalRoundPauseMilliseconds, in: 0...60_000),
        key("jobs.global_concurrency", "jobs running at once across all workspaces", \.jobs.globalConcurrency, in: 1...10_000),
        key("jobs.workspace_concurrency", "jobs running at once in one workspace", \.jobs.workspaceConcurrency, in: 1...10_000),
        key("jobs.max_attempts", "attempts before a job is dead", \.jobs.maxAttempts, in: 1...1_000),
        key("jobs.backoff_base_seconds", "first retry delay; doubles each attempt", \.jobs.backoffBaseSeconds, in: 0.01...86_400),
        key("jobs.backoff_max_seconds", "largest retry delay", \.jobs.backoffMaxSeconds, in: 0.01...604_800),
        key("jobs.lease_seconds", "a running job's lease; heartbeats renew it", \.jobs.leaseSeconds, in: 1...86_400),
        key("jobs.poll_interval_ms", "how often the scheduler looks for work enqueued by other processes", \.jobs.pollIntervalMilliseconds, in: 10...600_000),
        key("jobs.rate_limit_per_second", "per-workspace job starts per second while another workspace has work due (token bucket rate)", \.jobs.rateLimitPerSecond, in: 0.001...1_000_000),
        key("jobs.rate_limit_burst", "per-workspace token bucket size", \.jobs.rateLimitBurst, in: 1...1_000_000),
        key("jobs.priority_aging_seconds", "due work waiting this long counts one priority higher across workspaces", \.jobs.priorityAgingSeconds, in: 0.001...86_400),
        key("shutdown.drain_seconds", "on SIGTERM, how long running jobs may finish", \.shutdown.drainSeconds, in: 0...3_600),
        key("github.request_timeout_seconds", "timeout of one GitHub API request; a timed-out call is retried with backoff", \.github.requestTimeoutSeconds, in: 1...3_600),
        key("gitlab.request_timeout_seconds", "timeout of one GitLab API request; a timed-out call is retried with backoff", \.gitlab.requestTimeoutSeconds, in: 1...3_600),
        key("ai.price_table_file", "YAML file overriding the built-in AI price table (USD per million tokens)", \.ai.priceTableFile),
        key("export.enabled", "write the nightly PostgreSQL analytics dump to data/exports/ while serving", \.export.enabled),
        key("export.time", "when the nightly export runs, HH:MM in UTC", \.export.time),
        key("export.notify_workspace", "workspace id whose notification channels subscribed to export.failed hear of a failed nightly export", \.export.notifyWorkspace),
        key("billing.plans_file", "YAML file defining plans and their monthly limits (adds to / redefines free, team, enterprise)", \.billing.plansFile),
        key("billing.license_file", "signed Sentinel license file raising plan limits; an invalid or expired license stops start-up", \.billing.licenseFile),
        key("review.command_associations", "comma-separated GitHub author associations whose @sentinel review comments start a run", \.review.commandAssociations),
        key("review.max_tokens_per_run", "tokens one review run may spend on model calls (checked before each call)", \.review.maxTokensPerRun, in: 1...1_000_000_000),
        key("review.failed_run_conclusion", "failure | neutral: check conclusion of a run that failed, or whose AI review failed", \.review.failedRunConclusion),
        key("reconcile.enabled", "sweep for missed work (open pull requests without a run, failed webhook deliveries) at start and periodically", \.reconcile.enabled),
        key("reconcile.interval_seconds", "time between catch-up sweeps (±10% jitter)", \.reconcile.intervalSeconds, in: 1...604_800),
        key("reconcile.max_reviews_per_sweep", "reviews one sweep requests per integration at most", \.reconcile.maxReviewsPerSweep, in: 0...10_000),
        key("reconcile.min_rate_remaining", "stop an integration's sweep when this share (0...1) of its API rate limit or less is left", \.reconcile.minRateRemaining, in: 0...1),
        key("reconcile.redeliver", "ask GitHub to resend failed deliveries of the App's webhook", \.reconcile.redeliver),
        key("security.allow_private_destinations", "let outbound calls reach private, link-local and metadata addresses", \.security.allowPrivateDestinations),
        key("security.allowed_destination_cidrs", "comma-separated CIDRs outbound calls may reach even when private destinations are refused", \.security.allowedDestinationCIDRs),
        key("security.plain_http_hosts", "comma-separated host names and CIDRs an AI provider's base URL may reach over plain http", \.security.plainHTTPHosts),
        key("litestream.replica_url", "replica base URL for `sentinel litestream config` (file:///path, s3://bucket/path, sftp://host/path)", \.litestream.replicaURL),
        key("litestream.max_databases_per_process", "databases one Litestream process replicates; more are split across processes", \.litestream.maxDatabasesPerProcess, in: 1...100_000),
        key("litestream.metrics_port", "file N of the Litestream configuration serves Prometheus metrics on 127.0.0.1:PORT+N (0: off)", \.litestream.metricsPort, in: 0...65_535),
        key("log.level", "trace | debug | info | notice | warning | error | critical", \.log.level),
        key("observability.otlp.endpoint", "OTLP/HTTP collector base URL (http/protobuf; spans go to <url>/v1/traces); unset = no export", \.observability.otlpEndpoint),
        key("observability.otlp.service_name", "service.name of exported spans", \.observability.otlpServiceName),
        key("observability.metrics_allowed_cidrs", "comma-separated address blocks /metrics answers (others get 403); default the loopback and private networks", \.observability.metricsAllowedCIDRs),
    ]

    /// Keys that were renamed: reading the old one fails with the new name.
    static let renamed = ["jobs.retention_hours": "retention.jobs_days (in days; default 14)"]

    /// Defaults, then the YAML file (if any), then the environment.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SentinelConfig {
        var config = SentinelConfig()
        if let file {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
                // Why, in words: a file the service's user may not read (installed 0600 root) and a
                // missing one said the same.
                var info = stat()
                let reason = stat(file, &info) != 0 ? String(cString: strerror(errno))
                    : access(file, R_OK) != 0 ? "\(String(cString: strerror(errno))) (owner uid \(info.st_uid), mode \(String(Int(info.st_mode) & 0o777, radix: 8)); "
                        + "the service's user must be able to read it: root:sentinel, mode 640)"
                    : FileSystem.reason(error)
                throw ConfigError("cannot read config file \(file): \(reason)")
            }
            // Said apart from "cannot read": the file is there and readable, and its text is what to fix.
            guard let text = String(data: data, encoding: .utf8) else {
                throw ConfigError("config file \(file) is not valid UTF-8 text; save it as UTF-8")
            }
            let flat = try flatten(yaml: text, file: file)
            let known = Dictionary(uniqueKeysWithValues: keys.map { ($0.path, $0) })
            for (path, value) in flat.sorted(by: { $0.key < $1.key }) {
                if let new = renamed[path] { throw ConfigError("\(file): '\(path)' was replaced by \(new)") }
                guard let key = known[path] else { throw ConfigError("\(file): unknown key '\(path)'") }
                do { try key.apply(&config, value) } catch let error as ConfigError {
                    throw ConfigError("\(file): \(path): \(error.description)")
                }
            }
        }
        for key in keys {
            if let value = environment[key.environmentName] {
                do { try key.apply(&config, value) } catch let error as ConfigError {
                    throw ConfigError("\(key.environmentName): \(error.description)")
                }
            }
        }
        try validate(config)
        return config
    }

    /// `SENTINEL_…` variables of `environment` that name no setting (a misspelling such as
    /// `SENTINEL_LOG_LEVL`, which changed nothing without a word). `SENTINEL_DATA_DIR` and the test
    /// suite's `SENTINEL_TEST_…` are known.
    public static func unknownEnvironmentNames(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        let known = Set(keys.map(\.environmentName)).union(["SENTINEL_DATA_DIR"])
        return environment.keys.filter { $0.hasPrefix("SENTINEL_") && !$0.hasPrefix("SENTINEL_TEST_") && !known.contains($0) }.sorted()
    }

    /// The effective value of every key, for `sentinel config show` style diagnostics.
    public static func describe(_ config: SentinelConfig) -> [(String, String)] {
        keys.map { ($0.path, $0.current(config)) }
    }

    /// The checks `load` makes, for a configuration changed after loading (`serve --port`).
    public static func validate(_ config: SentinelConfig) throws {
        for key in keys { try key.check(config) }
        if let endpoint = config.observability.otlpEndpoint {
            guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false else {
                throw ConfigError("observability.otlp.endpoint must be an http(s) URL, got '\(endpoint)'")
            }
        }
        guard Logger.Level(rawValue: config.log.level) != nil else {
            throw ConfigError("log.level must be one of trace, debug, info, notice, warning, error, critical")
        }
        if let url = config.server.publicURL, URL(string: url)?.scheme == nil || url.hasSuffix("/") {
            throw ConfigError("server.public_url must be an absolute URL without a trailing slash, like https://sentinel.example.com")
        }
        if let replica = config.litestream.replicaURL {
            // Checked here, not first when a workspace is created (a 500 on every create).
            do { _ = try LitestreamConfig.replicaURL(replica, appending: "control") } catch let error as ConfigError {
                throw ConfigError("litestream.replica_url: \(error.description)")
            }
        }
        _ = try DestinationPolicy(config.security)  // the entries of security.allowed_destination_cidrs and plain_http_hosts
        _ = try config.observability.metricsAllowedRanges()
        guard config.export.clock != nil else { throw ConfigError("export.time must be HH:MM (UTC), got '\(config.export.time)'") }
        if let id = config.export.notifyWorkspace, WorkspaceID(id) == nil {
            throw ConfigError("export.notify_workspace must be a workspace id (ws_ and 16 lowercase letters or digits), got '\(id)'")
        }
        guard (config.server.tlsCertFile == nil) == (config.server.tlsKeyFile == nil) else {
            throw ConfigError("server.tls.cert_file and server.tls.key_file must be set together")
        }
    }

    static func flatten(yaml: String, file: String) throws -> [String: String] {
        let node: Node?
        try AliasScanner.check(yaml, file: file)
        do { node = try Yams.compose(yaml: yaml) } catch {
            throw ConfigError.invalidYAML(file, error)
        }
        var out: [String: String] = [:]
        var given: Set<String> = []
        func walk(_ node: Node, _ prefix: String) throws {
            switch node {
            case .mapping(let mapping):
                for (k, v) in mapping {
                    guard let name = k.string else { throw ConfigError("\(file): non-string key under '\(prefix)'") }
                    try walk(v, prefix.isEmpty ? name : prefix + "." + name)
                }
            case .scalar(let scalar):
                // Written nested and again with dots (`server: {port: 1}` and `server.port: 2`): the
                // later one won, silently; YAML's own duplicate check sees two different keys.
                guard given.insert(prefix).inserted else {
                    throw ConfigError("\(file): '\(prefix)' is given twice (nested and as a dotted key); give it once")
                }
                // Null (`key:`, `null`, `~`) keeps the default; a quoted `""` is an empty value, as
                // `SENTINEL_KEY=""` is (it kept the default: `review.command_associations: ""`,
                // written to turn comment commands off, left them on).
                if scalar.tag.description == "tag:yaml.org,2002:null" || (scalar.style == .plain && ["null", "~", ""].contains(scalar.string)) {
                    return
                }
                out[prefix] = scalar.string
            case .sequence, .alias:
                throw ConfigError("\(file): '\(prefix)' must be a single value")
            }
        }
        if let node { try walk(node, "") }
        return out
    }

    private static func key<V: ConfigValue>(_ path: String, _ summary: String, _ kp: WritableKeyPath<SentinelConfig, V> & Sendable) -> ConfigKey {
        ConfigKey(path: path, summary: summary, range: nil,
                  apply: { config, raw in config[keyPath: kp] = try V.parse(raw) },
                  current: { $0[keyPath: kp].rendered },
                  check: { _ in })
    }

    /// A numeric key. Every one has bounds: a value far outside them (a timeout of 1e300 seconds)
    /// would otherwise be accepted and trap where it becomes a `Duration` or a C integer.
    private static func key<V: ConfigValue & Comparable>(_ path: String, _ summary: String, _ kp: WritableKeyPath<SentinelConfig, V> & Sendable,
                                                         in range: ClosedRange<V>) -> ConfigKey {
        func plain(_ value: V) -> String {                  // 86400, not 86400.0
            let text = value.rendered
            return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
        }
        let bounds = "\(plain(range.lowerBound))...\(plain(range.upperBound))"
        return ConfigKey(path: path, summary: summary, range: bounds,
                         apply: { config, raw in config[keyPath: kp] = try V.parse(raw) },
                         current: { $0[keyPath: kp].rendered },
                         check: { config in
                             let value = config[keyPath: kp]
                             guard range.contains(value) else { throw ConfigError("\(path) must be \(bounds), got \(value.rendered)") }
                         })
    }
}

protocol ConfigValue: Sendable {
    static func parse(_ raw: String) throws -> Self
    var rendered: String { get }
}

extension String: ConfigValue {
    static func parse(_ raw: String) throws -> String { raw }
    var rendered: String { self }
}

extension Int: ConfigValue {
    static func parse(_ raw: String) throws -> Int {
        guard let v = Int(raw.trimmingCharacters(in: .whitespaces)) else { throw ConfigError("'\(raw)' is not an integer") }
        return v
    }
    var rendered: String { String(self) }
}

extension Double: ConfigValue {
    static func parse(_ raw: String) throws -> Double {
        guard let v = Double(raw.trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0 else {
            throw ConfigError("'\(raw)' is not a non-negative number")
        }
        return v
    }
    var rendered: String { String(self) }
}

extension Bool: ConfigValue {
    static func parse(_ raw: String) throws -> Bool {
        switch raw.lowercased().trimmingCharacters(in: .whitespaces) {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigError("'\(raw)' is not a boolean")
        }
    }
    var rendered: String { String(self) }
}

extension Optional: ConfigValue where Wrapped == String {
    static func parse(_ raw: String) throws -> String? { raw.isEmpty ? nil : raw }
    var rendered: String { self ?? "" }
}

extension SentinelConfig.FailedRunConclusion: ConfigValue {
    static func parse(_ raw: String) throws -> Self {
        guard let v = Self(rawValue: raw.lowercased().trimmingCharacters(in: .whitespaces)) else {
            throw ConfigError("'\(raw)' is not one of failure, neutral")
        }
        return v
    }
    var rendered: String { rawValue }
}

extension SentinelConfig.SynchronousMode: ConfigValue {
    static func parse(_ raw: String) throws -> Self {
        guard let v = Self(rawValue: raw.lowercased()), v != .off else { throw ConfigError("'\(raw)' is not one of full, normal") }
        return v
    }
    var rendered: String { rawValue }
}
