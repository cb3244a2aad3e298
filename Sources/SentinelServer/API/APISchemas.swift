import SentinelCore

/// Every named schema of the API (`#/components/schemas/…`).
enum APISchemas {
    static let id = Schema.string(minLength: 1, maxLength: 64)
    static let time = Schema.string(format: "date-time")
    static let role = Schema.string(values: WorkspaceRole.allCases.map(\.rawValue))
    static let scope = Schema.string(values: TokenScope.allCases.map(\.rawValue))
    static let email = Schema.string(minLength: 3, maxLength: 254)

    static func page(_ item: String) -> Schema {
        .object([Property("items", .array(.ref(item))), Property("next_cursor", .nullable(.string()), "pass as ?cursor= for the next page")])
    }

    static let components: [String: Schema] = [
        "Problem": .object([
            Property("type", .string()), Property("title", .string()), Property("status", .integer()),
            Property("detail", .string(), required: false), Property("instance", .string(), required: false),
        ]),
        "User": .object([Property("id", id), Property("email", .string()), Property("is_admin", .boolean), Property("created_at", time)]),
        "Session": .object([Property("token", .string(), "bearer secret, shown once"), Property("expires_at", time), Property("user", .ref("User"))]),
        "Me": .object([
            Property("user", .ref("User")),
            Property("workspaces", .array(.object([Property("id", id), Property("name", .string()), Property("plan", .string()), Property("role", role)]))),
            Property("scopes", .array(scope)),
        ]),
        "Token": .object([
            Property("id", id), Property("name", .string()), Property("prefix", .string(), "first characters of the secret, to recognise it"),
            Property("scopes", .array(scope)), Property("created_at", time),
            Property("expires_at", .nullable(time), required: false), Property("last_used_at", .nullable(time), required: false),
            Property("revoked_at", .nullable(time), required: false),
        ]),
        "TokenCreated": .object([Property("token", .string(), "the secret (snt_…), shown only in this response"), Property("details", .ref("Token"))]),
        "Workspace": .object([Property("id", id), Property("name", .string()), Property("plan", .string()), Property("created_at", time),
                              Property("role", role, "the caller's role here")]),
        "Membership": .object([Property("workspace_id", id), Property("user_id", id), Property("email", .string()), Property("role", role)]),
        "Team": .object([Property("id", .integer()), Property("name", .string()), Property("created_at", time), Property("members", .array(id))]),
        "IntegrationSummary": .object([
            Property("id", id), Property("workspace_id", id), Property("kind", .string()), Property("app_id", .nullable(.integer()), required: false),
            Property("api_url", .string()), Property("has_ca_bundle", .boolean), Property("webhook_path", .string()), Property("created_at", time),
        ]),
        "Integration": .object([
            Property("integration", .ref("IntegrationSummary")),
            Property("webhook_url", .string(), "where GitHub must send this integration's webhooks"),
        ]),
        "Provider": .object([
            Property("id", id), Property("kind", .string()), Property("model", .string()),
            Property("base_url", .nullable(.string()), required: false), Property("api_version", .nullable(.string()), required: false),
            Property("deployment", .nullable(.string()), required: false),
            Property("key_suffix", .nullable(.string()), required: false, "last 4 characters of the key; the key itself is write-only"),
            Property("enabled", .boolean), Property("priority", .integer()), Property("created_at", time), Property("updated_at", time),
        ]),
        "Repository": .object([
            Property("id", .integer()), Property("full_name", .string()), Property("integration_id", id), Property("enabled", .boolean),
            Property("removed", .boolean), Property("registered_at", time),
        ]),
        "Settings": .object([
            Property("scope", .string()), Property("version_id", .nullable(.integer())), Property("values", .map(.any)),
            Property("locks", .array(.string())), Property("created_by", .nullable(.string())), Property("created_at", .nullable(time)),
        ]),
        "Explain": .object([
            Property("entries", .array(.any)), Property("violations", .array(.any)), Property("rejected", .array(.any)),
            Property("versions", .map(.string())), Property("sha256", .string()),
        ]),
        "Run": .object([
            Property("id", .integer()), Property("repository_id", .integer()), Property("repository", .string()), Property("pr_number", .integer()),
            Property("head_sha", .string()), Property("trigger", .string()), Property("state", .string(values: RunState.allCases.map(\.rawValue))),
            Property("reason", .nullable(.string()), required: false), Property("conclusion", .nullable(.string()), required: false),
            Property("created_at", time), Property("started_at", .nullable(time), required: false),
            Property("finished_at", .nullable(time), required: false), Property("files_reviewed", .nullable(.integer()), required: false),
            Property("files_total", .nullable(.integer()), required: false),
        ]),
        "Finding": .object([
            Property("id", .integer()), Property("path", .string()), Property("line", .nullable(.integer()), required: false),
            Property("start_line", .nullable(.integer()), required: false), Property("side", .nullable(.string()), required: false),
            Property("severity", .string()), Property("category", .string()), Property("title", .string()), Property("body", .string()),
            Property("suggestion", .nullable(.string()), required: false), Property("source", .string()),
        ]),
        "RunDetail": .object([
            Property("run", .ref("Run")), Property("summary", .nullable(.string()), required: false), Property("findings", .array(.ref("Finding"))),
            Property("policy_sha256", .nullable(.string()), required: false), Property("policy_versions", .nullable(.map(.string())), required: false),
            Property("policy_snapshot", .any, required: false, "the effective configuration the run used"),
        ]),
        "RunAccepted": .object([Property("run_id", .integer()), Property("created", .boolean, "false when the same request already made this run")]),
        "Usage": .object([
            Property("workspace_id", id), Property("period", .string()), Property("runs", .map(.integer())),
            Property("models", .array(.object([
                Property("provider", .string()), Property("model", .string()), Property("calls", .integer()),
                Property("input_tokens", .integer()), Property("output_tokens", .integer()), Property("cost_usd", .number),
            ]))),
            Property("input_tokens", .integer()), Property("output_tokens", .integer()), Property("cost_usd", .number),
            Property("plan", .nullable(.string()), required: false),
            Property("limits", .nullable(.array(.object([
                Property("limit", .string()), Property("used", .integer()), Property("allowed", .integer()), Property("soft_limit_reached", .boolean),
            ]))), required: false),
        ]),
        "DailyRollup": .object([
            Property("day", .string()), Property("repository", .string()), Property("runs", .integer()), Property("runs_by_outcome", .map(.integer())),
            Property("findings", .integer()), Property("findings_by_severity", .map(.integer())), Property("findings_by_category", .map(.integer())),
            Property("ai_calls", .integer()), Property("input_tokens", .integer()), Property("output_tokens", .integer()),
            Property("cost_usd", .number), Property("duration_p50_ms", .nullable(.integer()), required: false),
            Property("duration_p95_ms", .nullable(.integer()), required: false),
        ]),
        "AuditEvent": .object([
            Property("seq", .integer()), Property("id", .string()), Property("type", .string()), Property("occurred_at", .string()),
            Property("subject", .nullable(.string()), required: false), Property("data", .any),
        ]),
        "TokenPage": page("Token"), "UserPage": page("User"), "WorkspacePage": page("Workspace"), "MembershipPage": page("Membership"),
        "TeamPage": page("Team"), "IntegrationPage": page("IntegrationSummary"),
        "ProviderPage": page("Provider"), "RepositoryPage": page("Repository"), "RunPage": page("Run"), "RollupPage": page("DailyRollup"),
        "AuditPage": page("AuditEvent"),
    ]

    static var registry: SchemaRegistry { SchemaRegistry(components: components) }
}
