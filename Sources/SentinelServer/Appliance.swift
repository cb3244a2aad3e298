import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore
import Prometheus
import SentinelCore
import ServiceLifecycle
import Tracing

/// The running appliance: one data directory, its control store, the supervisor with its workspace
/// actors, the job scheduler and the HTTP(S) application, assembled with their dependencies passed
/// in (no globals). `sentinel serve` builds one; end-to-end tests build one on a temp directory.
public final class Appliance: Sendable {
    public let dataDirectory: DataDirectory
    public let config: SentinelConfig
    public let control: ControlStore
    public let supervisor: Supervisor
    /// Deliveries for workspaces whose file is not open, acknowledged with one shared commit and applied in the background.
    public let journal: IntakeJournal
    public let scheduler: JobScheduler
    public let workspaces: WorkspaceService
    public let prometheus: PrometheusCollectorRegistry
    public let metrics: SentinelMetrics
    public let logger: Logger
    public let integrations: IntegrationService
    public let connector: GitHubConnector
    public let gitLabConnector: GitLabConnector
    /// The AI providers' HTTP client (system trust roots), shared by every run.
    let aiHTTP: AsyncOutboundHTTPClient
    /// Decrypted GitHub integrations, shared by webhook intake and review runs.
    let gitHubIntegrations: GitHubIntegrationCache
    /// Decrypted GitLab integrations, shared by webhook intake and review runs.
    let gitLabIntegrations: GitLabIntegrationCache
    /// Deliveries refused for their signature or token, written down for `sentinel doctor`.
    let authFailures: DeliveryAuthFailures
    /// Users, sessions, API tokens and memberships (control.sqlite).
    public let identity: IdentityService
    /// Catch-up after downtime: the sweep `serve` runs periodically (`reconcile.*`); tests and
    /// operators can run one with `reconcile.sweepAll()`.
    public let reconcile: ReconcileService
    let api: APIDependencies
    /// The committed OpenAPI document the API is generated from.
    let document: APIDocument
    private let serveLock: FileLock
    /// Spans of every request, job and outbound call (`Telemetry`), scoped to the services of the
    /// group, and the service exporting them (OTLP when `observability.otlp.endpoint` is set).
    let tracer: any Tracer
    let tracing: any Service
    /// Closed when graceful shutdown begins: later requests are refused, not carried out unanswered.
    let shutdownGate = ShutdownGate()

    /// Prepares the data directory (creating it, the master key and migrating control.sqlite) and
    /// takes the serve lock: two servers never share a data directory.
    public init(dataDirectory: DataDirectory, config: SentinelConfig, registry extraJobs: JobRegistry = JobRegistry(),
                models: (any ReviewModelResolver)? = nil, billing: (any BillingProvider)? = nil, logger: Logger) throws {
        try dataDirectory.prepare()
        guard let lock = try FileLock.tryAcquire(dataDirectory.serveLockFile) else {
            throw StorageError.conflict("another sentinel serve is already running on \(dataDirectory.root.path)")
        }
        self.serveLock = lock
        self.dataDirectory = dataDirectory
        self.config = config
        self.logger = logger
        self.prometheus = PrometheusCollectorRegistry()
        self.metrics = SentinelMetrics(factory: PrometheusMetricsFactory(registry: prometheus))
        (self.tracer, self.tracing) = try Telemetry.makeTracer(config.observability, logger: logger)
        let opener = DatabaseOpener(config: config)
        self.control = try ControlStore(dataDirectory: dataDirectory, opener: opener)
        self.workspaces = WorkspaceService(dataDirectory: dataDirectory, control: control, opener: opener, litestream: config.litestream)
        do {
            // After an upgrade the files may list fewer databases than this version replicates.
            if let changed = try workspaces.refreshReplication(), !(changed.written.isEmpty && changed.removed.isEmpty) {
                logger.notice("litestream configuration updated; sentinel-litestream-reload@N.path restarts the instances",
                              metadata: ["written": "\(changed.written.joined(separator: ","))", "removed": "\(changed.removed.joined(separator: ","))"])
            }
        } catch {
            // Replication keeps running on the files as they were; intake does not wait for it.
            logger.error("cannot update the litestream configuration", metadata: ["error": "\(error)"])
        }
        self.integrations = IntegrationService(control: control, masterKey: try MasterKey.load(at: dataDirectory.masterKeyFile))
        let destinations: DestinationPolicy
        do { destinations = try DestinationPolicy(config.security) } catch let error as ConfigError {
            throw StorageError.invalid(error.description)
        }
        self.gitHubIntegrations = GitHubIntegrationCache(service: integrations)
        self.connector = GitHubConnector(integrations: gitHubIntegrations, requestTimeout: .seconds(config.github.requestTimeoutSeconds),
                                         destinations: destinations)
        self.gitLabIntegrations = GitLabIntegrationCache(service: integrations)
        self.gitLabConnector = GitLabConnector(integrations: gitLabIntegrations, requestTimeout: .seconds(config.gitlab.requestTimeoutSeconds),
                                               destinations: destinations, publicURL: config.server.publicURL)
        var registry = extraJobs
        let catalog: PlanCatalog
        do {
            catalog = try PlanCatalog.load(plansFile: config.billing.plansFile, licenseFile: config.billing.licenseFile)
        } catch let error as ConfigError {
            throw StorageError.invalid(error.description)
        }
        logger.info("plans loaded", metadata: ["plans": "\(catalog.plans.keys.sorted().joined(separator: ","))", "license": "\(catalog.licenseStatus)"])
        let billing = billing ?? BuiltinBillingProvider(control: control, catalog: catalog)
        let processor = GitHubDeliveryProcessor(billing: billing, commandAssociations: config.review.commandAssociationSet, metrics: metrics)
        processor.register(in: &registry)
        GitLabDeliveryProcessor(connector: gitLabConnector, billing: billing, metrics: metrics).register(in: &registry)
        self.aiHTTP = try AsyncOutboundHTTPClient(destinations: destinations)
        let signals = OperationalSignals(control: control)
        let resolver = try models ?? WorkspaceModelResolver(store: ProviderStore(masterKey: integrations.masterKey, destinations: destinations), http: aiHTTP,
                                                            breakers: CircuitBreakerRegistry(journal: CircuitMetricsJournal(forwardingTo: signals, metrics: metrics)),
                                                            prices: PriceTable.load(overridesFile: config.ai.priceTableFile), metrics: metrics)
        let platforms = SourceControlPlatforms(["github": connector, "gitlab": gitLabConnector])
        let runner = ReviewRunner(connector: platforms, models: resolver, billing: billing, failedRunConclusion: config.review.failedRunConclusion,
                                  maxTokensPerRun: config.review.maxTokensPerRun, metrics: metrics)
        runner.register(in: &registry)
        Rollups.register(in: &registry)
        Retention.register(in: &registry, config: config)
        let notifications = Notifications(store: NotificationStore(masterKey: integrations.masterKey), http: aiHTTP,
                                          mail: NIOSMTPClient(destinations: destinations))
        notifications.register(in: &registry)
        self.supervisor = Supervisor(dataDirectory: dataDirectory, control: control, config: config, registry: registry,
                                     logger: logger, metrics: metrics)
        self.journal = try IntakeJournal(dataDirectory: dataDirectory, opener: opener, supervisor: supervisor,
                                         logger: logger.with(["component": "intake-journal"]), metrics: metrics,
                                         roundPause: .milliseconds(config.workspaces.journalRoundPauseMilliseconds))
        self.scheduler = JobScheduler(supervisor: supervisor, logger: logger, metrics: metrics)
        let opened = self.supervisor
        self.authFailures = DeliveryAuthFailures(signals: signals) { id, workspaceID, failures in
            // Best effort: the refusal is answered whether or not the workspace can be written.
            (try? await opened.withWorkspace(workspaceID) { try await Notifications.integrationAuthFailing(id, failures: failures, in: $0) }) ?? false
        }
        self.reconcile = ReconcileService(
            reconciler: Reconciler(connectors: ["github": connector, "gitlab": gitLabConnector], options: ReconcileOptions(config.reconcile), metrics: metrics),
            supervisor: supervisor, control: control, interval: config.reconcile.intervalSeconds, logger: logger.with(["component": "reconcile"]))
        self.identity = IdentityService(control: control, bcryptCost: config.auth.bcryptCost, sessionHours: config.auth.sessionHours)
        self.document = try APIDocument.load()
        let providers = ProviderStore(masterKey: integrations.masterKey, destinations: destinations)
        self.api = APIDependencies(
            dataDirectory: dataDirectory, identity: identity, workspaces: workspaces, integrations: integrations,
            providers: providers, billing: billing, catalog: catalog, control: control,
            loginThrottle: LoginThrottle(window: config.auth.loginWindowSeconds, perAccount: config.auth.loginFailuresPerAccount,
                                         perAddress: config.auth.loginFailuresPerAddress),
            publicScheme: config.server.tlsEnabled ? "https" : "http", publicURL: config.server.publicURL, destinations: destinations,
            supervisor: supervisor, journal: journal, gitHubIntegrations: gitHubIntegrations, gitLabIntegrations: gitLabIntegrations,
            notifications: notifications,
            connections: ConnectionTester(gitHub: connector, gitLab: gitLabConnector, providers: providers, aiHTTP: aiHTTP),
            reviews: runner, logger: logger)
        if try identity.ensureSetupToken(in: dataDirectory) {
            logger.notice("no appliance admin yet: create the first admin with the one-time token in \(dataDirectory.setupTokenFile.path) (the console's setup page, or POST /api/v1/setup) or `sentinel user create --admin`")
        }
        metrics.openWorkspaces(0)
        metrics.offlineWorkspaces(0)
        metrics.registerSeries()
    }

    public func makeRouter() throws -> Router<SentinelRequestContext> {
        // HEAD is answered wherever GET is (RFC 9110 §9.1), with GET's status and headers and no
        // body: load balancers and uptime checks probe `/healthz` that way.
        let router = Router(context: SentinelRequestContext.self, options: .autoGenerateHeadEndpoints)
        if config.server.tlsEnabled, config.server.hstsMaxAgeSeconds > 0 {
            router.add(middleware: StrictTransportSecurityMiddleware(maxAgeSeconds: config.server.hstsMaxAgeSeconds))
        }
        router.add(middleware: ObservabilityMiddleware(metrics: metrics))
        router.add(middleware: ShutdownGateMiddleware(gate: shutdownGate))
        OperationsRoutes(control: control, scheduler: scheduler, registry: prometheus, supervisor: supervisor, metrics: metrics,
                         dataDirectory: dataDirectory, metricsAllowed: try config.observability.metricsAllowedRanges()).add(to: router)
        WebhookRoutes(gitHub: gitHubIntegrations, gitLab: gitLabIntegrations, supervisor: supervisor, journal: journal, metrics: metrics,
                      authFailures: authFailures, bodies: WebhookBodyBudget(limit: config.server.maxWebhookBytesInFlight, metrics: metrics)).add(to: router)
        try SentinelAPI.register(on: router, document: document, dependencies: api, supervisor: supervisor)
        let certificate = config.server.tlsEnabled
            ? config.server.tlsCertFile.map(URL.init(fileURLWithPath:)) ?? dataDirectory.tlsDirectory.appendingPathComponent("sentinel.crt") : nil
        let console = try Console(dependencies: api, scheduler: scheduler, outbound: aiHTTP, document: document, secureCookies: config.server.browsersUseHTTPS,
                                  health: .init(certificateFile: certificate, exportEnabled: config.export.enabled, exportTime: config.export.time))
        router.add(middleware: ConsoleNotFoundMiddleware(console: console))
        console.add(to: router)
        // Last, after every route: it wraps only what no route matched.
        router.add(middleware: MethodNotAllowedMiddleware(router: router))
        return router
    }

    /// The listener's certificate (nil without TLS). With no certificate configured, a self-signed
    /// one is created in `data/tls/` on first use.
    public func makeServerCertificate() throws -> ServerCertificate? {
        guard config.server.tlsEnabled else { return nil }
        if let cert = config.server.tlsCertFile, let key = config.server.tlsKeyFile {
            return try ServerCertificate(certificateFile: cert, keyFile: key)
        }
        let files = try SelfSignedCertificate.ensure(in: dataDirectory.tlsDirectory)
        return try ServerCertificate(certificateFile: files.certificate.path, keyFile: files.privateKey.path)
    }

    /// The HTTP(S) application, serving `certificate` (HTTP without one).
    /// Idle connections are closed after `server.idle_timeout_seconds`, request heads are limited to
    /// `server.max_header_bytes`, at most `server.max_connections` are served at once, and HTTPS
    /// speaks TLS 1.2 and 1.3 only.
    public func makeApplication(certificate: ServerCertificate?,
                                onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let headerBytes = config.server.maxHeaderBytes
        let requestLimit = TimeAmount.nanoseconds(Int64(config.server.requestTimeoutSeconds * 1_000_000_000))
        let http1 = HTTPServerBuilder.sentinelHTTP1(configuration: .init(
            additionalChannelHandlers: [RequestDeadlineHandler(limit: requestLimit), ExpectContinueHandler()],
            idleTimeout: .nanoseconds(Int64(config.server.idleTimeoutSeconds * 1_000_000_000)),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: headerBytes, maxHeaderListSize: headerBytes, maxHeaderFieldCount: 100)))
        let server: HTTPServerBuilder
        if let certificate {
            server = try .tls(http1, tlsConfiguration: certificate.configuration)
        } else {
            server = http1
        }
        let logger = self.logger
        let tls = config.server.tlsEnabled
        return Application(
            router: try makeRouter(),
            server: server,
            configuration: .init(address: .hostname(config.server.host, port: config.server.port), serverName: "Sentinel",
                                 availableConnectionsDelegate: MaximumAvailableConnections(config.server.maxConnections,
                                                                                           logger: logger.with(["component": "http"]))),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("listening", metadata: ["port": "\(port)", "tls": "\(tls)", "event_loop_threads": "\(EventLoopThreads.current)"])
                await onServerRunning(port)
            },
            logger: logger.with(["component": "http"]))
    }

    /// Everything `sentinel serve` runs, as one `ServiceGroup`. Services start in this order and stop
    /// in reverse on graceful shutdown (SIGTERM/SIGINT by default, or `triggerGracefulShutdown()`):
    /// the listener stops accepting first; the job scheduler then lets running jobs finish up to
    /// `shutdown.drain_seconds` and releases the rest; the catch-up sweep and the nightly exporter stop; the outbound HTTP
    /// clients close their pooled connections; last, the supervisor checkpoints and closes every
    /// open file. If the listener fails (e.g. its port is taken) the group shuts down the same way
    /// and `run()` rethrows the error. End-to-end tests run this same group with `stopOnSignals: false`
    /// (signal handlers are process-wide) and trigger its graceful shutdown themselves.
    public func makeServiceGroup(stopOnSignals: Bool = true,
                                 onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> ServiceGroup {
        let certificate = try makeServerCertificate()
        let app = try makeApplication(certificate: certificate, onServerRunning: onServerRunning)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: supervisor),
            // After the supervisor, so it stops before it: what it holds at shutdown is applied first.
            .init(service: journal),
            .init(service: OutboundClients(gitHub: connector, gitLab: gitLabConnector, ai: aiHTTP)),
        ]
        if config.export.enabled {
            let exporter = AnalyticsExporter(dataDirectory: dataDirectory, control: control, opener: DatabaseOpener(config: config))
            services.append(.init(service: NightlyExportService(exporter: exporter, config: config.export,
                                                                logger: logger.with(["component": "export"]), metrics: metrics,
                                                                supervisor: supervisor)))
        }
        if config.reconcile.enabled {
            services.append(.init(service: reconcile))
        }
        services.append(.init(service: scheduler))
        if certificate != nil || stopOnSignals {
            services.append(.init(service: CertificateReloader(certificate: certificate, interval: config.server.tlsReloadCheckSeconds,
                                                               trapHangUp: stopOnSignals, logger: logger.with(["component": "tls"]),
                                                               metrics: metrics)))
        }
        services.append(.init(service: GatedService(inner: app, gate: shutdownGate), successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        // The exporter runs first, so it stops last: spans ended while the others drain are sent.
        services.insert(.init(service: tracing), at: 0)
        let (tracer, logger) = (self.tracer, self.logger)
        services = services.map { entry in
            var scoped = entry
            scoped.service = TelemetryScopedService(entry.service, tracer: tracer, logger: logger.with(["component": "outbound"]))
            return scoped
        }
        return ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [],
            cancellationSignals: [],
            logger: logger.with(["component": "lifecycle"])))
    }

    /// Serves until SIGTERM/SIGINT, then shuts the group down in reverse order and returns.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        do {
            try await makeServiceGroup(onServerRunning: onServerRunning).run()
        } catch let error as IOError {
            throw ListenError(error, host: config.server.host, port: config.server.port) ?? error
        } catch let error as SocketAddressError.UnknownHost {
            throw ListenError(error, port: config.server.port)
        }
        logger.info("stopped cleanly")
    }
}

/// The listener could not be opened: the address, and what an admin can do about it.
public struct ListenError: Error, CustomStringConvertible {
    public let description: String

    /// nil for an I/O error that is not about binding the listener.
    init?(_ error: IOError, host: String, port: Int) {
        let reason: String
        switch error.errnoCode {
        case EADDRINUSE: reason = "the address is in use (another process listens there: stop it, or choose another server.port or --port)"
        case EADDRNOTAVAIL: reason = "the address is not one of this machine's (set server.host or --host to one of them, or 0.0.0.0)"
        case EACCES: reason = "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE; the default is 8443)"
        default: return nil
        }
        description = "cannot listen on \(host):\(port): \(reason)"
    }

    /// `server.host` is neither an address nor a name this machine can resolve.
    init(_ error: SocketAddressError.UnknownHost, port: Int) {
        description = "cannot listen on \(error.host):\(port): no address is known for the host name '\(error.host)' "
            + "(\(error.errorDescription); set server.host or --host to an address of this machine, or 0.0.0.0)"
    }
}

/// Owns the outbound HTTP clients' lifetime in the group: when the group stops (after every job
/// that could use them), their pooled connections are closed; they would otherwise delay exit.
struct OutboundClients: Service {
    let gitHub: GitHubConnector
    let gitLab: GitLabConnector
    let ai: AsyncOutboundHTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        await gitHub.shutdown()
        await gitLab.shutdown()
        await ai.shutdown()
    }
}
