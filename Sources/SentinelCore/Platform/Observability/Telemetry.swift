import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Tracing and correlation in one place: the correlation id and the trace travel in the task's
/// `ServiceContext`; spans come from the tracer the appliance scopes to its services
/// (`withTracer`, task-local: no process-wide bootstrap, so tests run appliances side by side).
///
/// - A request: `ObservabilityMiddleware` continues an incoming `traceparent` and opens a server span.
/// - A job: the trace context is stored with the job when it is enqueued (`jobs.trace_context`)
///   and restored when it runs (`withJob`), so a webhook's trace continues through every job it causes.
/// - An outbound call: `AsyncOutboundHTTPClient` opens a client span, sends `traceparent` and
///   `X-Request-ID`, and logs one line.
/// - A log line: `metadataProvider` adds `correlation_id` and `trace_id` from the context.
public enum Telemetry {
    /// The correlation id of the request or job this task works for.
    public static var correlationID: String? { ServiceContext.current?.correlationID }

    /// Runs `body` in a span that is a child of the task's current span (or a new trace).
    public static func withSpan<T>(_ name: String, kind: SpanKind = .internal, attributes: [String: String] = [:],
                                   isolation: isolated (any Actor)? = #isolation,
                                   _ body: (any Span) async throws -> T) async rethrows -> T {
        try await Tracing.withSpan(name, ofKind: kind, isolation: isolation) { span in
            for (key, value) in attributes { span.attributes[key] = value }
            return try await body(span)
        }
    }

    /// Runs `body` in a span whose parent is `context` (a restored or extracted trace).
    public static func withSpan<T>(_ name: String, context: ServiceContext, kind: SpanKind = .internal,
                                   isolation: isolated (any Actor)? = #isolation,
                                   _ body: (any Span) async throws -> T) async rethrows -> T {
        try await Tracing.withSpan(name, context: context, ofKind: kind, isolation: isolation) { span in try await body(span) }
    }

    /// The current trace as a W3C `traceparent` value (what is stored with an enqueued job), or nil
    /// outside any span.
    public static func currentTraceparent() -> String? {
        guard let context = ServiceContext.current else { return nil }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        return carrier["traceparent"]
    }

    /// The context a job runs in: its stored trace (so its span joins the trace that enqueued
    /// it) and its correlation id.
    public static func context(traceparent: String?, correlationID: String?) -> ServiceContext {
        var context = ServiceContext.topLevel
        if let traceparent {
            InstrumentationSystem.instrument.extract(["traceparent": traceparent], into: &context, using: DictionaryExtractor())
        }
        context.correlationID = correlationID
        return context
    }

    /// Runs a claimed job in its own span, continuing the trace stored with it.
    public static func withJob(_ job: JobRecord, workspace: WorkspaceID, _ body: () async -> Void) async {
        // A job enqueued outside any request or job (maintenance) still gets an id for its lines.
        let context = context(traceparent: job.traceContext, correlationID: job.correlationID ?? "\(workspace.rawValue):job-\(job.id)")
        await withSpan("job \(job.kind)", context: context, kind: .consumer) { span in
            span.attributes["sentinel.job.kind"] = job.kind
            span.attributes["sentinel.job.attempt"] = job.attempts
            span.attributes["sentinel.job.priority"] = job.jobPriority.description
            // The job's outbound calls log their lines with its workspace and id, as its own lines do.
            await $logger.withValue(logger.with(["workspace_id": workspace.rawValue, "job_id": String(job.id)])) {
                await $callAttempt.withValue(job.attempts) { await body() }
            }
        }
    }

    /// Headers every outbound call carries: the trace (`traceparent`, from the current span) and
    /// the correlation id (`X-Request-ID`).
    public static func outboundHeaders() -> [(String, String)] {
        var headers: [(String, String)] = []
        if let context = ServiceContext.current {
            var carrier: [String: String] = [:]
            InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
            for (name, value) in carrier.sorted(by: { $0.key < $1.key }) { headers.append((name, value)) }
            if let id = context.correlationID { headers.append(("X-Request-ID", id)) }
        }
        return headers
    }

    /// Adds `correlation_id` and `trace_id` (and `span_id`) from the task's context to every log line.
    public static let metadataProvider: Logger.MetadataProvider = {
        let trace = OTel.makeLoggingMetadataProvider()
        return Logger.MetadataProvider {
            var metadata = trace.get()
            if let id = ServiceContext.current?.correlationID { metadata["correlation_id"] = .string(id) }
            return metadata
        }
    }()

    /// One call to another system (HTTP, SMTP): a client span named `name` carrying the attempt,
    /// and one `outbound call` log line with `metadata` (method, host, …: never credentials or
    /// bodies), the attempt, the duration and `status` of what `body` returned, or the error.
    public static func outboundCall<T>(_ name: String, metadata: Logger.Metadata, status: @escaping (T) -> Int,
                                       isolation: isolated (any Actor)? = #isolation,
                                       _ body: (any Span) async throws -> T) async throws -> T {
        try await withSpan(name, kind: .client, isolation: isolation) { span in
            let attempt = callAttempt
            span.attributes["sentinel.attempt"] = attempt
            var metadata = metadata
            metadata["attempt"] = "\(attempt)"
            let start = ContinuousClock.now
            do {
                let result = try await body(span)
                metadata["status"] = "\(status(result))"
                metadata["duration_ms"] = "\((ContinuousClock.now - start).milliseconds)"
                logger.info("outbound call", metadata: metadata)
                return result
            } catch {
                span.recordError(error)
                metadata["status"] = "error"
                metadata["error"] = "\(error)"
                metadata["duration_ms"] = "\((ContinuousClock.now - start).milliseconds)"
                logger.warning("outbound call", metadata: metadata)
                throw error
            }
        }
    }

    /// Which try of the current call this is: the job's attempt, or the AI router's per-provider
    /// attempt; logged on each outbound call.
    @TaskLocal public static var callAttempt = 1

    /// The logger outbound calls write their one line to: the appliance's, scoped to its services
    /// like the tracer (a logger that drops everything elsewhere).
    @TaskLocal public static var logger = Logger(label: "sentinel.outbound", factory: { _ in SwiftLogNoOpLogHandler() })

    /// The appliance's tracer and the service that exports its spans. Trace ids always exist;
    /// with no OTLP endpoint nothing leaves the process and spans are not recorded at all.
    public static func makeTracer(_ config: SentinelConfig.Observability, logger: Logger) throws -> (tracer: any Tracer, service: any Service) {
        var configuration = OTel.Configuration.default
        configuration.serviceName = config.otlpServiceName
        let diagnostics = logger.with(["component": "otel"])
        configuration.diagnosticLogger = .custom(Logger(label: diagnostics.label) { _ in OTelDiagnosticsLogHandler(wrapped: diagnostics.handler) })
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.propagators = [.traceContext]
        if let endpoint = config.otlpEndpoint {
            configuration.traces.sampler = .parentBasedAlwaysOn
            configuration.traces.exporter = .otlp
            configuration.traces.otlpExporter.protocol = .httpProtobuf
            configuration.traces.otlpExporter.endpoint = tracesURL(endpoint)
        } else {
            // Nothing would export them: spans are dropped where they start (a recorded one went
            // to the batch processor only to be thrown away there, and under load its full queue
            // logged warnings). A dropped span still has a fresh trace id in its context, which
            // log lines and outbound `traceparent` headers carry (flag 00, "not sampled").
            configuration.traces.sampler = .parentBasedAlwaysOff
            configuration.traces.exporter = .none
        }
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return (backend.factory, backend.service)
    }

    /// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is used as is.
    static func tracesURL(_ endpoint: String) -> String {
        guard let url = URL(string: endpoint), url.path.isEmpty || url.path == "/" else { return endpoint }
        return endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
    }

    /// The path of an outbound URL with its variable parts replaced (`/repos/{owner}/{repo}/pulls/{n}`):
    /// what is logged and put on spans. Never the query (it may hold a key).
    public static func pathTemplate(_ url: URL) -> String {
        let segments = url.path(percentEncoded: true).split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var out: [String] = []
        var index = 0
        while index < segments.count {
            let segment = segments[index]
            let previous = out.last
            if previous == "repos", index + 1 < segments.count {
                out += ["{owner}", "{repo}"]
                index += 2
                continue
            }
            if previous == "contents" || previous == "files" && out.dropLast().last == "repository" {
                out.append("{path}")
                break
            }
            if previous == "projects" || previous == "installations" || previous == "hook" && segment != "deliveries" {
                out.append("{id}")
            } else if segment.allSatisfy(\.isNumber) {
                out.append("{n}")
            } else if segment.count >= 7, segment.allSatisfy(\.isHexDigit) {
                out.append("{sha}")
            } else if segment.contains("...") {
                out.append("{base}...{head}")
            } else if segment.contains("@") || segment.contains("%") {
                out.append("{id}")
            } else {
                out.append(segment)
            }
            index += 1
        }
        return "/" + out.joined(separator: "/")
    }
}

/// The correlation id travels with the trace in the task's `ServiceContext`.
private enum CorrelationIDKey: ServiceContextKey {
    typealias Value = String
    static var nameOverride: String? { "sentinel-correlation-id" }
}

extension ServiceContext {
    public var correlationID: String? {
        get { self[CorrelationIDKey.self] }
        set { self[CorrelationIDKey.self] = newValue }
    }
}

struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

/// Runs a service with the appliance's tracer and logger in scope, so every span and outbound
/// log line of its tasks (and their child tasks) uses them.
public struct TelemetryScopedService: Service {
    let inner: any Service
    let tracer: any Tracer
    let logger: Logger

    public init(_ inner: any Service, tracer: any Tracer, logger: Logger) {
        self.inner = inner
        self.tracer = tracer
        self.logger = logger
    }

    public func run() async throws {
        try await withTracer(tracer) {
            try await Telemetry.$logger.withValue(logger) { try await inner.run() }
        }
    }
}

/// swift-otel's diagnostic logger. swift-otel sets the level itself (`OTEL_LOG_LEVEL`, default
/// info), and at info it logs each `OTEL_*` variable it applies with its value:
/// `OTEL_EXPORTER_OTLP_HEADERS` holds the collector's API key. This handler passes on warnings and
/// errors only (why an export failed), whatever level it is given, without the values of the
/// metadata it names `…value` (the variable's value, in a warning that it could not be read).
struct OTelDiagnosticsLogHandler: LogHandler {
    var wrapped: any LogHandler

    var logLevel: Logger.Level {
        get { max(wrapped.logLevel, .warning) }
        set { wrapped.logLevel = max(newValue, .warning) }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= .warning else { return }
        // A variable it could not read is named in a warning with its value (a header list
        // written `key: value` instead of `key=value`): the value is dropped, the name kept.
        var event = event
        if let metadata = event.metadata {
            event.metadata = Dictionary(uniqueKeysWithValues: metadata.map { ($0.key, $0.key.hasSuffix("value") ? "[redacted]" : $0.value) })
        }
        wrapped.log(event: event)
    }
}
