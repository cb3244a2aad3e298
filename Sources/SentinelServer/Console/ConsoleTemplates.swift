import Mustache

/// The console's mustache templates, compiled into the binary (no template directory to install).
/// `{{x}}` escapes HTML; `{{{x}}}` is used only for markup the console renders itself (the page
/// body, SVG charts).
enum ConsoleTemplates {
    static let all: [String: String] = [
        "layout": layout, "csrf": csrf, "message": message, "setup": setup, "signin": signin, "account": account, "workspaces": workspaces,
        "overview": overview, "runs": runs, "run": run, "providers": providers, "integrations": integrations,
        "repositories": repositories, "members": members, "settings": settings, "audit": audit, "adminAudit": adminAudit, "runtable": runTable,
        "admin": admin, "manifest": manifest, "adminUsers": adminUsers, "adminWorkspaces": adminWorkspaces, "adminJobs": adminJobs,
        "repository": repository, "integration": integration, "policyTable": policyTable, "settingsForm": settingsForm,
        "connectionChecks": connectionChecks,
    ]

    /// The templates parsed, once per process.
    static func library() throws -> MustacheLibrary {
        try parsed.get()
    }

    private static let parsed = Result { () throws -> MustacheLibrary in
        var library = MustacheLibrary()
        for (name, text) in all { try library.register(text, named: name) }
        return library
    }

    static let csrf = #"<input type="hidden" name="csrf" value="{{csrf}}">"#

    /// The findings of a connection test (`tested`: `ok`, `what`, `checks` of `severity`, `message`, `fix`).
    static let connectionChecks = #"""
    {{#tested}}<section aria-labelledby="tested-heading">
    <h2 id="tested-heading">Connection test of {{what}}</h2>
    {{#ok}}<p class="notice" role="status">Passed: the connection works.</p>{{/ok}}{{^ok}}<p class="error" role="alert">Failed: see what to do below.</p>{{/ok}}
    <ul>{{#checks}}<li><strong>{{severity}}</strong>: {{message}}{{#fix}}. To do: {{fix}}{{/fix}}</li>{{/checks}}</ul>
    </section>{{/tested}}
    """#

    static let layout = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{{title}} · Sentinel</title>
    <link rel="stylesheet" href="/console.css">
    </head>
    <body>
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="/">Sentinel</a>
      {{#user}}
      <nav aria-label="Account" class="account">
        <a href="/workspaces">Workspaces</a>
        {{#isAdmin}}<a href="/admin">Admin</a>{{/isAdmin}}
        <a href="/account">Account</a>
        <span class="who">{{email}}{{#isAdmin}} (appliance admin){{/isAdmin}}</span>
        <form method="post" action="/sign-out" class="inline">{{> csrf}}<button type="submit">Sign out</button></form>
      </nav>
      {{/user}}
    </header>
    {{#workspace}}
    <nav aria-label="Workspace" class="wsnav">
      <span class="wsname">{{name}}</span>
      <a href="/workspaces/{{id}}">Overview</a>
      <a href="/workspaces/{{id}}/runs">Runs</a>
      <a href="/workspaces/{{id}}/repositories">Repositories</a>
      <a href="/workspaces/{{id}}/integrations">Integrations</a>
      <a href="/workspaces/{{id}}/providers">AI providers</a>
      <a href="/workspaces/{{id}}/members">Members</a>
      <a href="/workspaces/{{id}}/settings">Settings</a>
      {{#canAudit}}<a href="/workspaces/{{id}}/audit">Audit log</a>{{/canAudit}}
      <span class="role">Your role: {{role}}</span>
    </nav>
    {{/workspace}}
    <main id="main" tabindex="-1">
    {{{body}}}
    </main>
    </body>
    </html>
    """#

    static let message = #"""
    <h1>{{heading}}</h1>
    <p class="{{kind}}" role="{{aria}}">{{text}}</p>
    {{#back}}<p><a href="{{back}}">Back</a></p>{{/back}}
    <p><a href="/">Go to the start page</a></p>
    """#

    static let setup = #"""
    <h1>Set up Sentinel</h1>
    <p>No administrator exists yet. Create the first appliance admin with the one-time setup token
    Sentinel wrote to <code>{{tokenPath}}</code> (<code>secrets/setup-token</code> in its data directory).</p>
    {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
    <form method="post" action="/setup" class="stack">
      {{> csrf}}
      <label for="setup_token">Setup token</label>
      <input id="setup_token" name="setup_token" required autocomplete="off">
      <label for="email">Admin email</label>
      <input id="email" name="email" type="email" required autocomplete="username" value="{{email}}">
      <label for="password">Password</label>
      <input id="password" name="password" type="password" required autocomplete="new-password">
      <button type="submit">Create the admin</button>
    </form>
    """#

    static let signin = #"""
    <h1>Sign in</h1>
    {{#noAdmin}}<p>This appliance has no administrator yet: <a href="/setup">create the first one</a> with the setup token.</p>{{/noAdmin}}
    {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
    <form method="post" action="/sign-in" class="stack">
      {{> csrf}}
      <label for="email">Email</label>
      <input id="email" name="email" type="email" required autocomplete="username" value="{{email}}">
      <label for="password">Password</label>
      <input id="password" name="password" type="password" required autocomplete="current-password">
      <button type="submit">Sign in</button>
    </form>
    """#

    static let account = #"""
    <h1>Your account</h1>
    <p>Signed in as {{email}}.</p>
    {{#done}}<p class="notice" role="status">Your password is changed; your other sessions have ended.</p>{{/done}}
    <h2>Change your password</h2>
    {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
    <form method="post" action="/account/password" class="stack">
      {{> csrf}}
      <label for="current_password">Current password</label>
      <input id="current_password" name="current_password" type="password" required autocomplete="current-password">
      <label for="new_password">New password (at least 12 characters)</label>
      <input id="new_password" name="new_password" type="password" required minlength="12" maxlength="72" autocomplete="new-password">
      <button type="submit">Change password</button>
    </form>
    <h2>API tokens</h2>
    <p>For scripts and CI: send one as <code>Authorization: Bearer …</code> to <code>/api/v1</code>. Changing your password leaves them working.</p>
    {{#created}}<p class="notice" role="status">Token {{created.name}} is made. Copy it now; it is not shown again: <code>{{created.token}}</code></p>{{/created}}
    {{#tokenError}}<p class="error" role="alert">{{tokenError}}</p>{{/tokenError}}
    {{#empty(tokens)}}<p>You have no API tokens.</p>{{/empty(tokens)}}
    {{^empty(tokens)}}
    <table><caption>Your API tokens</caption>
    <thead><tr><th scope="col">Name</th><th scope="col">Starts with</th><th scope="col">Scopes</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col">Actions</th></tr></thead>
    <tbody>{{#tokens}}<tr><td>{{name}}</td><td><code>{{prefix}}…</code></td><td>{{scopes}}</td><td>{{created}}</td><td>{{expires}}</td><td>{{lastUsed}}</td><td>{{state}}</td><td class="actions">
      {{#active}}<form method="post" action="/account/tokens/{{id}}/revoke" class="inline">{{> csrf}}<button type="submit">Revoke {{name}}</button></form>{{/active}}</td></tr>{{/tokens}}</tbody>
    </table>
    {{/empty(tokens)}}
    <h3>Create a token</h3>
    <form method="post" action="/account/tokens" class="stack">
      {{> csrf}}
      <label for="token_name">Name</label>
      <input id="token_name" name="name" required maxlength="100" autocomplete="off" value="{{tokenName}}">
      <fieldset><legend>Scopes</legend>
        <label><input type="checkbox" name="scope_read" value="1"{{#scopeRead}} checked{{/scopeRead}}> read</label>
        <label><input type="checkbox" name="scope_write" value="1"{{#scopeWrite}} checked{{/scopeWrite}}> write</label>
        {{#isAdmin}}<label><input type="checkbox" name="scope_admin" value="1"{{#scopeAdmin}} checked{{/scopeAdmin}}> admin</label>{{/isAdmin}}
      </fieldset>
      <label for="expires_in_days">Expires after this many days (empty: never)</label>
      <input id="expires_in_days" name="expires_in_days" type="number" min="1" max="3650" value="{{tokenDays}}">
      <button type="submit">Create token</button>
    </form>
    """#

    static let workspaces = #"""
    <h1>Workspaces</h1>
    {{#empty(items)}}<p>You are not a member of any workspace yet.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table>
      <caption>Workspaces you belong to</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Plan</th><th scope="col">Your role</th></tr></thead>
      <tbody>
      {{#items}}<tr><td><a href="/workspaces/{{id}}">{{name}}</a></td><td>{{plan}}</td><td>{{role}}</td></tr>{{/items}}
      </tbody>
    </table>
    {{/empty(items)}}
    {{^empty(others)}}
    <h2>Other workspaces on this appliance</h2>
    <ul>{{#others}}<li>{{name}} <span class="muted">({{plan}}; you are not a member)</span></li>{{/others}}</ul>
    {{/empty(others)}}
    {{#canCreate}}
    <h2>Create a workspace</h2>
    <form method="post" action="/workspaces" class="stack">
      {{> csrf}}
      <label for="name">Name</label>
      <input id="name" name="name" required maxlength="100">
      <label for="owner_email">Owner's email (optional; you by default)</label>
      <input id="owner_email" name="owner_email" type="email">
      <button type="submit">Create workspace</button>
    </form>
    {{/canCreate}}
    """#

    static let overview = #"""
    <h1>{{workspace.name}}: overview</h1>
    <section aria-labelledby="month">
      <h2 id="month">This month ({{period}}, plan {{plan}})</h2>
      <dl class="figures">
        <div><dt>Reviews started</dt><dd>{{reviews}}</dd></div>
        <div><dt>Findings</dt><dd>{{findings}}</dd></div>
        <div><dt>Tokens</dt><dd>{{tokens}}</dd></div>
        <div><dt>Estimated AI cost</dt><dd>{{cost}}</dd></div>
      </dl>
      {{^empty(limits)}}
      <table>
        <caption>Plan limits</caption>
        <thead><tr><th scope="col">Limit</th><th scope="col">Used</th><th scope="col">Allowed</th></tr></thead>
        <tbody>{{#limits}}<tr><td>{{limit}}</td><td>{{used}}</td><td>{{allowed}}{{#full}} <strong class="warn">(limit reached)</strong>{{/full}}{{^full}}{{#soft}} <strong class="warn">(soft limit reached)</strong>{{/soft}}{{/full}}</td></tr>{{/limits}}</tbody>
      </table>
      {{/empty(limits)}}
    </section>
    <section aria-labelledby="attention">
      <h2 id="attention">Needs attention</h2>
      {{#empty(attention)}}<p>Nothing needs attention.</p>{{/empty(attention)}}
      <ul class="attention">{{#attention}}<li>{{#href}}<a href="{{href}}">{{text}}</a>{{/href}}{{^href}}{{text}}{{/href}}</li>{{/attention}}</ul>
    </section>
    <section aria-labelledby="charts">
      <h2 id="charts">Last 30 days</h2>
      <div class="charts">{{{runsChart}}}{{{findingsChart}}}{{{costChart}}}</div>
    </section>
    <section aria-labelledby="latest">
      <h2 id="latest">Latest runs</h2>
      {{> runtable}}
      <p><a href="/workspaces/{{workspace.id}}/runs">All runs</a></p>
    </section>
    """#

    static let runTable = #"""
    {{#empty(runs)}}{{#filtered}}<p>No runs match this filter.</p>{{/filtered}}{{^filtered}}<p>No runs yet.</p>{{/filtered}}{{/empty(runs)}}
    {{^empty(runs)}}
    <table>
      <caption>Review runs</caption>
      <thead><tr><th scope="col">Run</th><th scope="col">Repository</th><th scope="col">PR</th><th scope="col">State</th><th scope="col">Created</th></tr></thead>
      <tbody>
      {{#runs}}<tr><td><a href="/workspaces/{{workspace.id}}/runs/{{id}}">#{{id}}</a></td><td>{{repository}}</td><td>{{pr}}</td><td><span class="state {{state}}">{{state}}</span></td><td>{{created}}</td></tr>{{/runs}}
      </tbody>
    </table>
    {{/empty(runs)}}
    """#

    static let runs = #"""
    <h1>Runs</h1>
    <form method="get" action="/workspaces/{{workspace.id}}/runs" class="filters">
      <label for="repository">Repository</label>
      <select id="repository" name="repository"><option value="">All</option>{{#repositories}}<option value="{{id}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/repositories}}</select>
      <label for="state">State</label>
      <select id="state" name="state"><option value="">All</option>{{#states}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/states}}</select>
      <label for="pr">PR</label>
      <input id="pr" name="pr" inputmode="numeric" pattern="[0-9]*" size="6" value="{{pr}}">
      <button type="submit">Filter</button>
    </form>
    {{> runtable}}
    {{#next}}<p><a href="{{next}}" rel="next">Older runs</a></p>{{/next}}
    """#

    static let run = #"""
    <h1>Run #{{run.id}}: {{run.repository}} {{run.change}}</h1>
    <dl class="facts">
      <dt>State</dt><dd><span class="state {{run.state}}">{{run.state}}</span>{{#run.reason}} ({{run.reason}}){{/run.reason}}</dd>
      {{#run.conclusion}}<dt>Conclusion</dt><dd>{{run.conclusion}}</dd>{{/run.conclusion}}
      <dt>Trigger</dt><dd>{{run.trigger}}</dd>
      <dt>Head commit</dt><dd><code>{{run.head}}</code></dd>
      <dt>Created</dt><dd>{{run.created}}</dd>
      {{#run.started}}<dt>Started</dt><dd>{{run.started}}</dd>{{/run.started}}
      {{#run.finished}}<dt>Finished</dt><dd>{{run.finished}}</dd>{{/run.finished}}
      {{#coverage}}<dt>Coverage</dt><dd>{{coverage}}</dd>{{/coverage}}
      {{#prURL}}<dt>{{changeKind}}</dt><dd><a href="{{prURL}}">{{prURL}}</a></dd>{{/prURL}}
    </dl>
    {{#canRequest}}
    <div class="actions">
      <form method="post" action="/workspaces/{{workspace.id}}/runs/{{run.id}}/rerun" class="inline">{{> csrf}}<button type="submit">Re-run</button></form>
      {{#cancellable}}<form method="post" action="/workspaces/{{workspace.id}}/runs/{{run.id}}/cancel" class="inline">{{> csrf}}<button type="submit">Cancel</button></form>{{/cancellable}}
    </div>
    {{/canRequest}}
    <h2>History</h2>
    {{#empty(history)}}<p>No state changes were recorded for this run.</p>{{/empty(history)}}
    {{^empty(history)}}
    <table class="history"><caption>Each change of the run's state, oldest first</caption>
    <thead><tr><th scope="col">Time</th><th scope="col">State</th><th scope="col">What happened</th><th scope="col">By</th><th scope="col">Reason</th></tr></thead>
    <tbody>{{#history}}<tr><td>{{at}}</td><td><span class="state {{state}}">{{state}}</span></td><td>{{what}}</td><td>{{by}}</td><td>{{reason}}</td></tr>{{/history}}</tbody></table>
    {{/empty(history)}}
    {{#summary}}<h2>Summary</h2><p class="pre">{{summary}}</p>{{/summary}}
    <h2>Findings ({{count(findings)}})</h2>
    {{#empty(findings)}}<p>No findings.</p>{{/empty(findings)}}
    <ol class="findings">
    {{#findings}}<li><p><span class="sev {{severity}}">{{severity}}</span> <code>{{location}}</code> <strong>{{title}}</strong> <span class="muted">{{category}}, {{source}}, {{#posted}}posted on the PR{{/posted}}{{^posted}}not posted{{/posted}}</span></p><p class="pre">{{body}}</p>{{#suggestion}}<pre>{{suggestion}}</pre>{{/suggestion}}</li>{{/findings}}
    </ol>
    <h2>AI usage</h2>
    {{#empty(calls)}}<p>No AI calls were recorded for this run.</p>{{/empty(calls)}}
    {{^empty(calls)}}
    <table><caption>Each AI call of this run</caption>
    <thead><tr><th scope="col">Provider</th><th scope="col">Model</th><th scope="col">Input tokens</th><th scope="col">Output tokens</th><th scope="col">Estimated cost</th><th scope="col">Duration</th></tr></thead>
    <tbody>{{#calls}}<tr><td>{{provider}}</td><td>{{model}}</td><td>{{input}}</td><td>{{output}}</td><td>{{cost}}</td><td>{{duration}}</td></tr>{{/calls}}</tbody></table>
    {{/empty(calls)}}
    <h2>Policy snapshot</h2>
    {{#policySHA}}<p>SHA-256 <code>{{policySHA}}</code></p>{{/policySHA}}
    {{#policy}}<pre>{{policy}}</pre>{{/policy}}{{^policy}}<p>No snapshot was recorded.</p>{{/policy}}
    """#

    static let providers = #"""
    <h1>AI providers</h1>
    {{#empty(items)}}<p>No AI provider yet: reviews run only when one is enabled.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table>
      <caption>Providers, in the order they are tried</caption>
      <thead><tr><th scope="col">Kind</th><th scope="col">Model</th><th scope="col">Key</th><th scope="col">Priority</th><th scope="col">State</th>{{#canManage}}<th scope="col">Actions</th>{{/canManage}}</tr></thead>
      <tbody>
      {{#items}}<tr><td>{{kind}}</td><td>{{model}}</td><td>{{#suffix}}…{{suffix}}{{/suffix}}{{^suffix}}none{{/suffix}}</td><td>{{priority}}</td><td>{{#enabled}}enabled{{/enabled}}{{^enabled}}disabled{{/enabled}}</td>
      {{#canManage}}<td class="actions">
        <form method="post" action="/workspaces/{{workspace.id}}/providers/{{id}}/{{#enabled}}disable{{/enabled}}{{^enabled}}enable{{/enabled}}" class="inline">{{> csrf}}<button type="submit">{{#enabled}}Disable{{/enabled}}{{^enabled}}Enable{{/enabled}}</button></form>
        <form method="post" action="/workspaces/{{workspace.id}}/providers/{{id}}/priority" class="inline">{{> csrf}}<label for="priority-{{id}}">Priority</label> <input id="priority-{{id}}" name="priority" inputmode="numeric" pattern="[0-9]*" size="5" value="{{priority}}" required> <button type="submit">Set priority</button></form>
        <form method="post" action="/workspaces/{{workspace.id}}/providers/{{id}}/rotate" class="inline">{{> csrf}}<label for="key-{{id}}">New key</label> <input id="key-{{id}}" name="api_key" type="password" autocomplete="off" required> <button type="submit">Rotate key</button></form>
        <form method="post" action="/workspaces/{{workspace.id}}/providers/{{id}}/test" class="inline">{{> csrf}}<button type="submit">Test<span class="visually-hidden"> provider {{id}}</span></button></form>
        <form method="post" action="/workspaces/{{workspace.id}}/providers/{{id}}/delete" class="inline">{{> csrf}}<button type="submit">Delete</button></form>
      </td>{{/canManage}}</tr>{{/items}}
      </tbody>
    </table>
    {{/empty(items)}}
    {{> connectionChecks}}
    <p>Monthly AI budget: {{budget}}; spent this month: {{spent}}.</p>
    {{#canManage}}
    <h2>Add a provider</h2>
    <form method="post" action="/workspaces/{{workspace.id}}/providers" class="stack">
      {{> csrf}}
      <label for="kind">Kind</label>
      <select id="kind" name="kind">{{#kinds}}<option>{{.}}</option>{{/kinds}}</select>
      <label for="model">Model (optional)</label><input id="model" name="model">
      <label for="api_key">API key (write-only: only its last 4 characters are ever shown)</label>
      <input id="api_key" name="api_key" type="password" autocomplete="off">
      <label for="base_url">Base URL (openai-compatible, azure-openai)</label><input id="base_url" name="base_url" type="url">
      <label for="api_version">API version (azure-openai)</label><input id="api_version" name="api_version">
      <label for="deployment">Deployment (azure-openai)</label><input id="deployment" name="deployment">
      <label for="priority">Priority (lower is tried first)</label><input id="priority" name="priority" inputmode="numeric" value="100">
      <button type="submit">Add provider</button>
    </form>
    <h2>Monthly AI budget</h2>
    <form method="post" action="/workspaces/{{workspace.id}}/providers/budget" class="stack">
      {{> csrf}}
      <label for="usd">Budget in USD per calendar month (empty: no limit)</label>
      <input id="usd" name="usd" inputmode="decimal" value="{{budgetValue}}">
      <button type="submit">Save budget</button>
    </form>
    {{/canManage}}
    """#

    static let integrations = #"""
    <h1>Integrations</h1>
    {{#empty(items)}}<p>No source-control integration yet.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table>
      <caption>Source-control integrations</caption>
      <thead><tr><th scope="col">Kind</th><th scope="col">App</th><th scope="col">API</th><th scope="col">Webhook URL</th><th scope="col">Last delivery</th><th scope="col">Added</th></tr></thead>
      <tbody>{{#items}}<tr><td><a href="/workspaces/{{workspace.id}}/integrations/{{id}}">{{kind}}<span class="visually-hidden"> integration {{id}}</span></a></td><td>{{appID}}</td><td>{{apiURL}}</td><td><code>{{webhookURL}}</code></td><td>{{#delivery}}{{event}}{{#action}}.{{action}}{{/action}} at {{at}}: {{outcome}}{{/delivery}}{{^delivery}}none yet{{/delivery}}</td><td>{{created}}</td></tr>{{/items}}</tbody>
    </table>
    {{/empty(items)}}
    {{#canManage}}
    <h2>Create a GitHub App on GitHub</h2>
    <p>Sentinel sends GitHub a manifest with the permissions, events and webhook URL it needs; GitHub
    creates the App and sends you back here, and Sentinel stores its id, private key and webhook secret sealed.</p>
    <form method="post" action="/workspaces/{{workspace.id}}/integrations/manifest" class="stack">
      {{> csrf}}
      <label for="m_api_url">GitHub Enterprise Server API URL (empty for github.com)</label><input id="m_api_url" name="api_url" type="url">
      <label for="m_organization">Organization that will own the App (empty: your account)</label><input id="m_organization" name="organization">
      <label for="m_name">App name</label><input id="m_name" name="name" value="Sentinel {{workspace.name}}" maxlength="34">
      <button type="submit">Continue to GitHub</button>
    </form>
    <h2>Add a GitHub App</h2>
    <p>Create a GitHub App (permissions: pull requests and checks read &amp; write, contents and issues read; events: pull request,
    issue comment, installation), set its webhook URL to the one shown here after saving, and paste its private key.</p>
    <form method="post" action="/workspaces/{{workspace.id}}/integrations" class="stack">
      {{> csrf}}
      <label for="app_id">App ID</label><input id="app_id" name="app_id" inputmode="numeric" required>
      <label for="private_key">Private key (PEM)</label><textarea id="private_key" name="private_key" rows="6" required autocomplete="off"></textarea>
      <label for="webhook_secret">Webhook secret</label><input id="webhook_secret" name="webhook_secret" type="password" required autocomplete="off">
      <label for="api_url">API URL (GitHub Enterprise Server; empty for github.com)</label><input id="api_url" name="api_url" type="url">
      <label for="ca_bundle">CA bundle (PEM, optional)</label><textarea id="ca_bundle" name="ca_bundle" rows="3"></textarea>
      <label for="bot_login">Bot login (optional)</label><input id="bot_login" name="bot_login">
      <button type="submit">Add GitHub App</button>
    </form>
    {{/canManage}}
    {{#canAddGitLab}}
    <h2>Connect GitLab</h2>
    <p>gitlab.com or a self-managed instance, with an access token that has the <code>api</code> scope (a personal, project or
    group token). Sentinel checks the token against the instance before it stores anything; the token and the webhook secret
    are write-only.</p>
    <form method="post" action="/workspaces/{{workspace.id}}/integrations/gitlab" class="stack">
      {{> csrf}}
      <label for="g_base_url">GitLab URL (the instance root, e.g. https://gitlab.example.com)</label><input id="g_base_url" name="base_url" type="url" required>
      <label for="g_token">Access token (api scope)</label><input id="g_token" name="token" type="password" required autocomplete="off">
      <label for="g_webhook_secret">Webhook secret (at least 8 characters; you set the same on GitLab's webhook)</label>
      <input id="g_webhook_secret" name="webhook_secret" type="password" required minlength="8" autocomplete="off">
      <label for="g_ca_bundle">CA certificates (PEM, optional: an instance behind an internal CA)</label><textarea id="g_ca_bundle" name="ca_bundle" rows="3"></textarea>
      <label for="g_bot_username">The token's user name (optional: asked from GitLab)</label><input id="g_bot_username" name="bot_username">
      <button type="submit">Connect GitLab</button>
    </form>
    {{/canAddGitLab}}
    """#

    static let repositories = #"""
    <h1>Repositories</h1>
    {{#empty(items)}}<p>No repositories yet: they appear when a GitHub App installation gives access to them.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table>
      <caption>Repositories</caption>
      <thead><tr><th scope="col">Repository</th><th scope="col">State</th>{{#canManage}}<th scope="col">Action</th>{{/canManage}}</tr></thead>
      <tbody>{{#items}}<tr><td>{{#removed}}{{name}}{{/removed}}{{^removed}}<a href="/workspaces/{{workspace.id}}/repositories/{{id}}">{{name}}</a>{{/removed}} <a class="muted" href="/workspaces/{{workspace.id}}/runs?repository={{id}}">runs<span class="visually-hidden"> of {{name}}</span></a></td><td>{{#removed}}removed{{/removed}}{{^removed}}{{#enabled}}enabled{{/enabled}}{{^enabled}}disabled{{/enabled}}{{/removed}}</td>
      {{#canManage}}<td>{{^removed}}<form method="post" action="/workspaces/{{workspace.id}}/repositories/{{id}}/{{#enabled}}disable{{/enabled}}{{^enabled}}enable{{/enabled}}" class="inline">{{> csrf}}<button type="submit">{{#enabled}}Disable{{/enabled}}{{^enabled}}Enable{{/enabled}} {{name}}</button></form>{{/removed}}</td>{{/canManage}}</tr>{{/items}}</tbody>
    </table>
    {{/empty(items)}}
    {{#next}}<p><a href="{{next}}" rel="next">More repositories</a></p>{{/next}}
    """#

    static let members = #"""
    <h1>Members</h1>
    <table>
      <caption>Members of this workspace</caption>
      <thead><tr><th scope="col">Email</th><th scope="col">Role</th>{{#canManage}}<th scope="col">Actions</th>{{/canManage}}</tr></thead>
      <tbody>{{#items}}<tr><td>{{email}}</td><td>{{role}}</td>
      {{#canManage}}<td>{{#editable}}
        <form method="post" action="/workspaces/{{workspace.id}}/members/{{userID}}/role" class="inline">{{> csrf}}<label for="role-{{userID}}">Role for {{email}}</label>
        <select id="role-{{userID}}" name="role">{{#roles}}<option{{#selected}} selected{{/selected}}>{{name}}</option>{{/roles}}</select> <button type="submit">Change role</button></form>
        <form method="post" action="/workspaces/{{workspace.id}}/members/{{userID}}/remove" class="inline">{{> csrf}}<button type="submit">Remove {{email}}</button></form>
      {{/editable}}</td>{{/canManage}}</tr>{{/items}}</tbody>
    </table>
    {{#canManage}}
    <h2>Add a member</h2>
    <form method="post" action="/workspaces/{{workspace.id}}/members" class="stack">
      {{> csrf}}
      <label for="email">Email of an existing user</label><input id="email" name="email" type="email" required>
      <label for="role">Role</label><select id="role" name="role">{{#grantable}}<option>{{.}}</option>{{/grantable}}</select>
      <button type="submit">Add member</button>
    </form>
    {{/canManage}}
    <h2>Teams</h2>
    {{#empty(teams)}}<p>No teams.</p>{{/empty(teams)}}
    {{#teams}}
    <section aria-labelledby="team-{{id}}" class="team">
      <h3 id="team-{{id}}">{{name}} <span class="muted">({{size}} members)</span></h3>
      {{#empty(members)}}<p>No members in this team.</p>{{/empty(members)}}
      <ul>{{#members}}<li>{{email}}{{#canManageTeams}} <form method="post" action="/workspaces/{{workspace.id}}/teams/{{teamID}}/members/{{userID}}/remove" class="inline">{{> csrf}}<button type="submit">Take {{email}} out of {{name}}</button></form>{{/canManageTeams}}</li>{{/members}}</ul>
      {{#canManageTeams}}{{^empty(candidates)}}
      <form method="post" action="/workspaces/{{workspace.id}}/teams/{{id}}/members" class="inline">{{> csrf}}
        <label for="add-{{id}}">Add to {{name}}</label>
        <select id="add-{{id}}" name="user_id">{{#candidates}}<option value="{{userID}}">{{email}}</option>{{/candidates}}</select>
        <button type="submit">Add to team</button></form>
      {{/empty(candidates)}}{{/canManageTeams}}
      {{#canManage}}<form method="post" action="/workspaces/{{workspace.id}}/teams/{{id}}/delete" class="inline">{{> csrf}}<button type="submit">Delete team {{name}}</button></form>{{/canManage}}
    </section>
    {{/teams}}
    {{#canManage}}
    <form method="post" action="/workspaces/{{workspace.id}}/teams" class="stack">
      {{> csrf}}
      <label for="team">New team's name</label><input id="team" name="name" required maxlength="100">
      <button type="submit">Create team</button>
    </form>
    {{/canManage}}
    """#

    static let settings = #"""
    <h1>Settings</h1>
    <h2>Effective configuration</h2>
    <form method="get" action="/workspaces/{{workspace.id}}/settings" class="filters">
      <label for="repository">Explain for</label>
      <select id="repository" name="repository"><option value="">the workspace</option>{{#repositories}}<option value="{{id}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/repositories}}</select>
      <button type="submit">Show</button>
    </form>
    {{> policyTable}}
    <h2>Workspace settings</h2>
    {{#version}}<p>Version {{version.id}}, saved by {{version.by}} at {{version.at}}.</p>{{/version}}
    {{^version}}<p>No workspace settings saved yet: the built-in defaults apply.</p>{{/version}}
    {{> settingsForm}}
    """#

    static let audit = #"""
    <h1>Audit log</h1>
    {{#empty(items)}}<p>No events.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table>
      <caption>Audit events, oldest first</caption>
      <thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Event</th><th scope="col">Subject</th><th scope="col">By</th><th scope="col">Details</th></tr></thead>
      <tbody>{{#items}}<tr><td>{{seq}}</td><td>{{at}}</td><td>{{type}}</td><td>{{subject}}</td><td>{{by}}</td><td><code>{{data}}</code></td></tr>{{/items}}</tbody>
    </table>
    {{/empty(items)}}
    {{#next}}<p><a href="{{next}}" rel="next">Later events</a></p>{{/next}}
    """#

    static let adminNav = #"""
    <nav aria-label="Administration" class="wsnav"><a href="/admin">Health</a> <a href="/admin/users">Users</a>
    <a href="/admin/workspaces">Workspaces and plans</a> <a href="/admin/jobs">Dead jobs</a> <a href="/admin/audit">Audit log</a></nav>
    """#

    static let adminAudit = adminNav + #"""
    <h1>Appliance audit log</h1>
    <p>Users and workspaces created, changed and deleted, and who did it (cli: the command line). Changes inside a workspace are in its own audit log.</p>
    {{#empty(items)}}<p>No events.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table>
      <caption>Appliance audit events, oldest first</caption>
      <thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Event</th><th scope="col">Subject</th><th scope="col">By</th><th scope="col">Details</th></tr></thead>
      <tbody>{{#items}}<tr><td>{{seq}}</td><td>{{at}}</td><td>{{type}}</td><td>{{subject}}</td><td>{{actor}}</td><td><code>{{data}}</code></td></tr>{{/items}}</tbody>
    </table>
    {{/empty(items)}}
    {{#next}}<p><a href="{{next}}" rel="next">Later events</a></p>{{/next}}
    """#

    static let admin = adminNav + #"""
    <h1>Appliance health</h1>
    <dl class="facts">
      <dt>Readiness</dt><dd{{#notReady}} class="error"{{/notReady}}>{{readiness}}</dd>
      <dt>Storage</dt><dd>{{storage}}</dd>
      <dt>Job workers</dt><dd>{{workers}}</dd>
      <dt>Workspaces</dt><dd>{{workspaces}}</dd>
      <dt>Open workspace files</dt><dd>{{open}}</dd>
      <dt>Disk free</dt><dd>{{disk}}</dd>
      <dt>TLS certificate expires</dt><dd>{{tls}}</dd>
      <dt>Last analytics export</dt><dd>{{export}}</dd>
      <dt>License</dt><dd>{{license}}</dd>
      <dt>Version</dt><dd>{{version}}</dd>
    </dl>
    <h2>Job queue</h2>
    <table><caption>Jobs waiting to run, by priority (highest first)</caption>
    <thead><tr><th scope="col">Priority</th><th scope="col">Queued</th></tr></thead>
    <tbody>{{#queues}}<tr><td>{{priority}}</td><td>{{queued}}</td></tr>{{/queues}}</tbody></table>
    <h2>Offline workspaces</h2>
    {{#empty(offline)}}<p>None.</p>{{/empty(offline)}}
    <ul>{{#offline}}<li>{{name}}: {{reason}}</li>{{/offline}}</ul>
    """#

    static let adminUsers = adminNav + #"""
    <h1>Users</h1>
    <table><caption>Users of this appliance</caption>
    <thead><tr><th scope="col">Email</th><th scope="col">Appliance admin</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
    <tbody>{{#items}}<tr><td>{{email}}</td><td>{{#isAdmin}}yes{{/isAdmin}}{{^isAdmin}}no{{/isAdmin}}</td><td>{{#disabled}}disabled{{/disabled}}{{^disabled}}active{{/disabled}}</td><td>{{created}}</td><td class="actions">
      {{^isSelf}}<form method="post" action="/admin/users/{{id}}/{{#disabled}}enable{{/disabled}}{{^disabled}}disable{{/disabled}}" class="inline">{{> csrf}}<button type="submit">{{#disabled}}Enable{{/disabled}}{{^disabled}}Disable{{/disabled}} {{email}}</button></form>{{/isSelf}}
      {{^isSelf}}<form method="post" action="/admin/users/{{id}}/password" class="inline">{{> csrf}}<label for="pw-{{id}}">New password for {{email}}</label>
      <input id="pw-{{id}}" name="password" type="password" required minlength="12" maxlength="72" autocomplete="new-password"> <button type="submit">Reset password</button></form>{{/isSelf}}
      {{#isSelf}}<a href="/account">Change your password</a>{{/isSelf}}
    </td></tr>{{/items}}</tbody></table>
    <p>Disabling a user ends their sessions and API tokens at once; a new password ends their sessions. The last active admin cannot be disabled.</p>
    {{#next}}<p><a href="{{next}}" rel="next">More users</a></p>{{/next}}
    <h2>Create a user</h2>
    <form method="post" action="/admin/users" class="stack">
      {{> csrf}}
      <label for="email">Email</label><input id="email" name="email" type="email" required autocomplete="off">
      <label for="password">Password (at least 12 characters)</label><input id="password" name="password" type="password" required minlength="12" autocomplete="new-password">
      <label><input type="checkbox" name="is_admin" value="1"> Appliance admin</label>
      <button type="submit">Create user</button>
    </form>
    """#

    static let adminWorkspaces = adminNav + #"""
    <h1>Workspaces and plans</h1>
    <p>License: {{license}}</p>
    <table><caption>Every workspace on this appliance</caption>
    <thead><tr><th scope="col">Workspace</th><th scope="col">Plan</th></tr></thead>
    <tbody>{{#items}}<tr><td>{{name}} <span class="muted">{{id}}</span></td><td>
      <form method="post" action="/admin/workspaces/{{id}}/plan" class="inline">{{> csrf}}<label for="plan-{{id}}">Plan of {{name}}</label>
      <select id="plan-{{id}}" name="plan">{{#unknownPlan}}<option selected disabled value="">{{unknownPlan}} (not in force)</option>{{/unknownPlan}}{{#plans}}<option{{#selected}} selected{{/selected}}>{{name}}</option>{{/plans}}</select> <button type="submit">Set plan</button></form>
      {{#unknownPlan}}<p class="error">Plan {{unknownPlan}} is not defined in this appliance's plans: the workspace is held to the limits of {{fallback}}.</p>{{/unknownPlan}}
    </td></tr>{{/items}}</tbody></table>
    """#

    static let adminJobs = adminNav + #"""
    <h1>Dead jobs</h1>
    <p>Jobs that used up their attempts or failed for good. Retry puts one back in the queue with a fresh attempt budget; discard gives up on it.</p>
    {{#unread}}<p role="alert">Not read: {{unread}} — offline; see <a href="/admin">Health</a>. Their dead jobs are not listed here.</p>{{/unread}}
    {{#empty(items)}}<p>No dead jobs{{#unread}} in the workspaces read{{/unread}}.</p>{{/empty(items)}}
    {{^empty(items)}}
    <table><caption>Dead jobs by workspace</caption>
    <thead><tr><th scope="col">Workspace</th><th scope="col">Job</th><th scope="col">Kind</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col">Actions</th></tr></thead>
    <tbody>{{#items}}<tr><td>{{workspace}}</td><td>#{{id}}</td><td>{{kind}}</td><td>{{attempts}}</td><td>{{error}}</td><td class="actions">
      <form method="post" action="/admin/jobs/{{workspaceID}}/{{id}}/retry" class="inline">{{> csrf}}<button type="submit">Retry job {{id}}</button></form>
      <form method="post" action="/admin/jobs/{{workspaceID}}/{{id}}/discard" class="inline">{{> csrf}}<button type="submit">Discard job {{id}}</button></form>
    </td></tr>{{/items}}</tbody></table>
    {{/empty(items)}}
    """#

    static let manifest = #"""
    <h1>Create the GitHub App</h1>
    <p>GitHub will show the App with these settings; create it there and GitHub sends you back to this console.</p>
    <form method="post" action="{{target}}" class="stack">
      <input type="hidden" name="manifest" value="{{manifest}}">
      <p>Webhook URL: <code>{{webhookURL}}</code></p>
      <p>Permissions: {{permissions}}. Events: {{events}}.</p>
      <button type="submit">Create the App on {{host}}</button>
    </form>
    <p><a href="/workspaces/{{workspace.id}}/integrations">Back to the integrations</a></p>
    """#

    static let policyTable = #"""
    <table>
      <caption>Each value and where it comes from</caption>
      <thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col">Source</th><th scope="col">Locked</th></tr></thead>
      <tbody>{{#entries}}<tr><td><code>{{key}}</code></td><td>{{value}}</td><td>{{source}}</td><td>{{#locked}}by {{lockedBy}}{{/locked}}</td></tr>{{/entries}}</tbody>
    </table>
    """#

    static let settingsForm = #"""
    {{#canManage}}
    {{#formError}}<p class="error" role="alert">{{formError}}</p>{{/formError}}
    <form method="post" action="{{action}}" class="stack">
      {{> csrf}}
      <label for="values">Values (a JSON object, e.g. {"review.instructions": "…"})</label>
      <textarea id="values" name="values" rows="8">{{values}}</textarea>
      <label for="locks">Locked keys (comma-separated: the layers that come after this one cannot override them; the order is workspace defaults, repository settings, .sentinel.yml)</label>
      <input id="locks" name="locks" value="{{locks}}">
      <button type="submit">Save a new version</button>
    </form>
    {{/canManage}}
    {{^canManage}}<pre>{{values}}</pre>{{#locks}}<p>Locked: {{locks}}</p>{{/locks}}{{/canManage}}
    <h2>Version history</h2>
    {{#empty(history)}}<p>No versions yet.</p>{{/empty(history)}}
    {{^empty(history)}}
    <table><caption>Saved versions, newest first</caption>
    <thead><tr><th scope="col">Version</th><th scope="col">Saved by</th><th scope="col">At</th><th scope="col">Values</th><th scope="col">Locks</th></tr></thead>
    <tbody>{{#history}}<tr><td>{{id}}</td><td>{{by}}</td><td>{{at}}</td><td><code>{{values}}</code></td><td>{{locks}}</td></tr>{{/history}}</tbody></table>
    {{/empty(history)}}
    """#

    static let repository = #"""
    <h1>{{repository.name}}</h1>
    <p>Reviews are {{#repository.enabled}}enabled{{/repository.enabled}}{{^repository.enabled}}disabled{{/repository.enabled}}.
    <a href="/workspaces/{{workspace.id}}/runs?repository={{repository.id}}">Runs of this repository</a> ·
    <a href="/workspaces/{{workspace.id}}/repositories">All repositories</a></p>
    {{^preview}}
    <h2>Effective configuration</h2>
    <p>Built-in defaults, then the workspace's settings, then this repository's; the repository's <code>.sentinel.yml</code> (read
    from git at each review) can override what is not locked.</p>
    {{/preview}}
    {{#preview}}
    <h2>Effective configuration with the file below</h2>
    <p>What a pull request carrying this <code>.sentinel.yml</code> would get (its keys show source <code>file</code>; nothing was saved).</p>
    {{#empty(diagnostics)}}<p>The file has no problems.</p>{{/empty(diagnostics)}}
    {{^empty(diagnostics)}}<ul>{{#diagnostics}}<li><code>{{text}}</code></li>{{/diagnostics}}</ul>{{/empty(diagnostics)}}
    {{^empty(fileViolations)}}<p role="status">Not applied (a lock keeps the locked value in effect):</p>
    <ul>{{#fileViolations}}<li>{{text}}</li>{{/fileViolations}}</ul>{{/empty(fileViolations)}}
    {{/preview}}
    {{> policyTable}}
    <h2>Try a .sentinel.yml</h2>
    <form method="post" action="/workspaces/{{workspace.id}}/repositories/{{repository.id}}/preview" class="stack">
      {{> csrf}}
      <label for="file">A <code>.sentinel.yml</code> to explain on top of the settings (nothing is saved)</label>
      <textarea id="file" name="file" rows="8" spellcheck="false">{{#preview}}{{file}}{{/preview}}</textarea>
      <button type="submit">Explain</button>
    </form>
    <h2>Repository settings</h2>
    {{#version}}<p>Version {{version.id}}, saved by {{version.by}} at {{version.at}}.</p>{{/version}}
    {{^version}}<p>No repository settings saved yet: the workspace's apply.</p>{{/version}}
    {{^empty(notApplied)}}<p role="status">Saved but not applied (a workspace lock keeps the locked value in effect):</p>
    <ul>{{#notApplied}}<li>{{text}}</li>{{/notApplied}}</ul>{{/empty(notApplied)}}
    {{> settingsForm}}
    """#

    static let integration = #"""
    <h1>{{#integration.gitlab}}GitLab{{/integration.gitlab}}{{^integration.gitlab}}GitHub App{{/integration.gitlab}} integration</h1>
    <dl class="facts">
      <dt>Id</dt><dd>{{integration.id}}</dd>
      <dt>{{#integration.gitlab}}Instance{{/integration.gitlab}}{{^integration.gitlab}}API{{/integration.gitlab}}</dt><dd>{{integration.apiURL}}</dd>
      {{^integration.gitlab}}<dt>App ID</dt><dd>{{integration.appID}}</dd>{{/integration.gitlab}}
      <dt>Webhook URL</dt><dd><code>{{integration.webhookURL}}</code></dd>
      <dt>Added</dt><dd>{{integration.created}}</dd>
      <dt>Last delivery</dt><dd>{{#delivery}}{{event}}{{#action}}.{{action}}{{/action}} at {{at}}: {{outcome}}{{/delivery}}{{^delivery}}none yet{{/delivery}}</dd>
    </dl>
    {{#integration.gitlab}}
    <h2>Hook settings for GitLab</h2>
    <p>In GitLab, open the project or group, then Settings → Webhooks → Add new webhook, and set:</p>
    <dl class="facts">
      <dt>URL</dt><dd><code>{{integration.webhookURL}}</code></dd>
      <dt>Secret token</dt><dd>the webhook secret you entered when connecting (Sentinel keeps it sealed and never shows it)</dd>
      <dt>Trigger</dt><dd>Merge request events, Comments</dd>
      <dt>SSL verification</dt><dd>on</dd>
    </dl>
    {{/integration.gitlab}}
    {{#canTest}}
    <form method="post" action="/workspaces/{{workspace.id}}/integrations/{{integration.id}}/test" class="inline">{{> csrf}}<button type="submit">Test connection</button></form>
    <p>Asks the {{#integration.gitlab}}GitLab instance{{/integration.gitlab}}{{^integration.gitlab}}GitHub API{{/integration.gitlab}} now whether it answers,
    accepts the stored credentials and agrees with this machine's clock.</p>
    {{/canTest}}
    {{> connectionChecks}}
    {{#canRotate}}
    <h2>Rotate credentials</h2>
    <p>Fill in what has to change and leave the rest empty: the webhook URL, repositories and history stay.
    {{#integration.gitlab}}A new token is checked against the instance first.{{/integration.gitlab}}
    After a new webhook secret, set the same on {{#integration.gitlab}}the GitLab webhook{{/integration.gitlab}}{{^integration.gitlab}}the GitHub App{{/integration.gitlab}}.</p>
    <form method="post" action="/workspaces/{{workspace.id}}/integrations/{{integration.id}}" class="stack">
      {{> csrf}}
      <label for="r_webhook_secret">New webhook secret (at least 8 characters)</label>
      <input id="r_webhook_secret" name="webhook_secret" type="password" minlength="8" autocomplete="off">
      {{#integration.gitlab}}<label for="r_token">New access token (api scope)</label><input id="r_token" name="token" type="password" autocomplete="off">{{/integration.gitlab}}
      {{^integration.gitlab}}<label for="r_private_key">New private key (PEM)</label><textarea id="r_private_key" name="private_key" rows="6" autocomplete="off"></textarea>{{/integration.gitlab}}
      <label for="r_ca_bundle">New CA certificates (PEM)</label><textarea id="r_ca_bundle" name="ca_bundle" rows="3"></textarea>
      <button type="submit">Rotate</button>
    </form>
    {{/canRotate}}
    <p><a href="/workspaces/{{workspace.id}}/integrations">Back to the integrations</a></p>
    """#
}
