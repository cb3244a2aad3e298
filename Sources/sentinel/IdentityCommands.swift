import ArgumentParser
import Foundation
import SentinelCore
import SentinelServer

extension GlobalOptions {
    func identity(_ config: SentinelConfig, create: Bool = false) throws -> IdentityService {
        let (control, _) = try openControl(config, create: create)
        return IdentityService(control: control, bcryptCost: config.auth.bcryptCost, sessionHours: config.auth.sessionHours)
    }
}

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "user", abstract: "Users of the appliance.",
                                                    subcommands: [Create.self, List.self, Disable.self, Enable.self, SetPassword.self, Delete.self])

    /// Reads a new password from `--password-file` or stdin (`--password-stdin`): never from the command line.
    struct PasswordSource: ParsableArguments {
        @Option(help: "File holding the password (at least 12 characters, at most 72 bytes; one line).") var passwordFile: String?
        @Flag(help: "Read the password from standard input (one line), for scripts: printf '%s\\n' \"$PW\" | sentinel user set-password …")
        var passwordStdin = false

        func read() throws -> String {
            let raw: String
            switch (passwordFile, passwordStdin) {
            case (let file?, false):
                raw = try readInputText(file, what: "password file")
            case (nil, true):
                // As a file is read: bytes that are not UTF-8 are refused (they were replaced, and
                // the password set was another than the one typed), and the size is capped.
                raw = try readInputText("-", what: "password from standard input")
            default:
                throw CLIError("give the password with exactly one of --password-file FILE or --password-stdin (never on the command line)")
            }
            let lines = raw.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            guard lines.count <= 1 || lines.dropFirst().allSatisfy(\.isEmpty) else { throw CLIError("the password must be one line") }
            return lines.first.map(String.init) ?? ""
        }
    }

    /// The user named by an email or a user id.
    static func find(_ emailOrID: String, in identity: IdentityService) throws -> User {
        if emailOrID.hasPrefix("usr_"), let user = try identity.user(id: emailOrID) { return user }
        guard let user = try identity.user(email: emailOrID) else { throw CLIError("no user with email \(emailOrID)") }
        return user
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a user: no sign-in; their sessions and API tokens stop working at once (also while serve runs).",
            discussion: "Tokens are kept (not revoked): `sentinel user enable` restores sign-in and the tokens. The last active appliance admin cannot be disabled.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Email (or user id).") var user: String

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                let found = try UserCommand.find(user, in: identity)
                if found.isDisabled { print("\(found.email) is already disabled"); return }
                try identity.disableUser(id: found.id, by: "cli")
                print("disabled \(found.email) (\(found.id)): sessions ended, API tokens refused until enabled")
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user again.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Email (or user id).") var user: String

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                let found = try UserCommand.find(user, in: identity)
                if !found.isDisabled { print("\(found.email) is not disabled"); return }
                try identity.enableUser(id: found.id, by: "cli")
                print("enabled \(found.email) (\(found.id))")
            }
        }
    }

    struct SetPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-password",
            abstract: "Give a user a new password (at least 12 characters, at most 72 bytes) and end their sessions; API tokens are unaffected.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Email (or user id).") var user: String
        @OptionGroup var password: PasswordSource

        func run() async throws {
            try await oneLine {
                let secret = try password.read()
                let identity = try global.identity(try global.loadConfig())
                let found = try UserCommand.find(user, in: identity)
                try identity.setPassword(userID: found.id, password: secret, by: "cli")
                print("new password set for \(found.email); their sessions ended")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a user with their memberships, team places, sessions and API tokens (audit entries keep the user's id).",
            discussion: "Refused for the last active appliance admin and for a workspace's only owner.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Email (or user id).") var user: String

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                let found = try UserCommand.find(user, in: identity)
                let deletion = try await identity.deleteUser(id: found.id, by: "cli") { id, body in
                    try await global.withWorkspace(id.rawValue) { actor, _, _ in try await body(actor) }
                }
                let deleted = deletion.user
                print("deleted \(deleted.email) (\(deleted.id)); member of \(deletion.workspaces.count) workspace(s)")
                if !deletion.unreachable.isEmpty {
                    throw CLIError("the user is deleted, but these workspace files could not be updated (their teams still list \(deleted.id)): "
                                   + deletion.unreachable.map { "\($0.workspace) (\($0.error))" }.joined(separator: "; "))
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the appliance's users (disabled ones marked).")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                var users: [User] = []
                while true {
                    let page = try identity.users(after: users.last?.id, limit: 500)
                    users += page
                    if page.count < 500 { break }
                }
                if json { try printJSON(users.map(UserOutput.init)) } else {
                    for u in users { print("\(u.id)  \(u.email)\(u.isAdmin ? "  appliance admin" : "")\(u.isDisabled ? "  disabled" : "")") }
                    if users.isEmpty { print("no users yet") }
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user; --admin makes an appliance admin (works before any setup).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Email address (the sign-in name).") var email: String
        @Option(help: "File holding the password (at least 12 characters, at most 72 bytes; one line). Never pass a password on the command line.")
        var passwordFile: String
        @Flag(help: "Appliance admin: may create workspaces and users.") var admin = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let raw = try readInputText(passwordFile, what: "password file")
                let password = raw.trimmingCharacters(in: .newlines)
                let config = try global.loadConfig()
                // Checked first: a typo made a whole data directory, with a master key, and then failed.
                do { try IdentityService.checkNewUser(email: email, password: password) } catch let error as IdentityError { throw CLIError(error.description) }
                // The first admin may be created before the appliance first runs: this makes the data directory.
                let identity = try global.identity(config, create: true)
                let user = try identity.createUser(email: email, password: password, isAdmin: admin)
                // An admin exists: the setup token is void. None yet: it stays (or is made), and says so.
                let setupOpen = try identity.ensureSetupToken(in: global.dataDirectory)
                if json { try printJSON(UserOutput(user)) } else { print("created \(user.isAdmin ? "appliance admin" : "user") \(user.email) (\(user.id))") }
                if setupOpen {
                    FileHandle.standardError.write(Data(("note: the appliance has no admin yet (to add users and workspaces): create one with `sentinel user create --admin`, "
                        + "or with the setup token in \(global.dataDirectory.setupTokenFile.path) on the console's setup page\n").utf8))
                }
            }
        }
    }
}

/// A user as the API's `User` shows one (`id`, `email`, `is_admin`, `disabled`, `created_at`).
struct UserOutput: Encodable {
    let id: String
    let email: String
    let isAdmin: Bool
    let disabled: Bool
    let createdAt: Date

    init(_ user: User) {
        (id, email, isAdmin, disabled, createdAt) = (user.id, user.email, user.isAdmin, user.isDisabled, Date(timeIntervalSince1970: user.createdAt))
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Personal API tokens.", subcommands: [Create.self, List.self, Revoke.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A user's API tokens (never the secrets: their first characters only).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The tokens' user.") var email: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                guard let user = try identity.user(email: email) else { throw CLIError("no user with email \(email)") }
                let tokens = try identity.tokens(of: user)
                if json { try printJSON(tokens) } else {
                    for t in tokens {
                        let state = t.revokedAt.map { "revoked \($0)" } ?? t.expiresAt.map { "expires \($0)" } ?? "no expiry"
                        print("\(t.id)  \(t.name)  \(t.prefix)…  \(t.scopes.map(\.rawValue).joined(separator: ","))  \(state)")
                    }
                    if tokens.isEmpty { print("\(email) has no API tokens") }
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke one of a user's API tokens; it stops working at once.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The token's user.") var email: String
        @Argument(help: "Token id (from `sentinel token list`).") var id: String

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                guard let user = try identity.user(email: email) else { throw CLIError("no user with email \(email)") }
                try identity.revokeToken(id: id, of: user, by: "cli")
                print("revoked token \(id) of \(user.email)")
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API token for a user and print it once.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The token's user.") var email: String
        @Option(help: "A name to recognise the token by.") var name = "cli"
        @Option(parsing: .upToNextOption, help: "Scopes: read, write, admin (admin only for appliance admins).") var scopes: [String] = ["read", "write"]
        @Option(help: "Days until the token expires (default: never).") var expiresIn: Int?

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                let identity = try global.identity(config)
                guard let user = try identity.user(email: email) else { throw CLIError("no user with email \(email)") }
                var parsed = Swift.Set<TokenScope>()
                for s in scopes.flatMap({ $0.split(separator: ",") }) {
                    guard let scope = TokenScope(rawValue: String(s)) else { throw CLIError("unknown scope '\(s)' (read, write, admin)") }
                    parsed.insert(scope)
                }
                let (token, _) = try identity.createToken(for: user, name: name, scopes: parsed, expiresInDays: expiresIn, by: "cli")
                print(token)
            }
        }
    }
}

extension WorkspaceCommand {
    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-member", abstract: "Give a user a role in a workspace (a member's role is changed).",
            discussion: "Within the plan's seats; the workspace keeps at least one owner. Audited as MemberAdded or MemberRoleChanged, by cli.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Option(help: "The user's email.") var email: String
        @Option(help: "owner, admin, member or viewer.") var role: String

        func run() async throws {
            try await oneLine {
                guard let role = WorkspaceRole(rawValue: role) else { throw CLIError("role must be one of owner, admin, member, viewer") }
                let config = try global.loadConfig()
                let identity = try global.identity(config)
                let user = try UserCommand.find(email, in: identity)
                let (name, id, changed) = try await global.withWorkspace(workspace) { actor, control, _ in
                    let members = WorkspaceMembers(identity: identity, workspaceID: actor.id, workspace: actor, actorRole: .owner, actorName: "cli")
                    let before = try identity.role(of: user.id, in: actor.id)
                    if before == nil {
                        _ = try await members.add(email: user.email, role: role, seatLimit: try global.billing(config, control).currentPlan(of: actor.id))
                    } else if before != role {
                        _ = try await members.changeRole(userID: user.id, to: role)
                    }
                    return (try control.workspace(actor.id)?.name ?? actor.id.rawValue, actor.id, before.map { $0 != role ? "was \($0.rawValue)" : "unchanged" })
                }
                print("\(user.email) is \(role.rawValue) of workspace \(name) (\(id))" + (changed.map { " (\($0))" } ?? ""))
            }
        }
    }

    struct RemoveMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-member", abstract: "Take a user out of a workspace and its teams (the user and their other workspaces stay).",
            discussion: "The workspace keeps at least one owner. Audited as MemberRemoved, by cli.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Option(help: "The user's email.") var email: String

        func run() async throws {
            try await oneLine {
                let identity = try global.identity(try global.loadConfig())
                let user = try UserCommand.find(email, in: identity)
                try await global.withWorkspace(workspace) { actor, _, _ in
                    try await WorkspaceMembers(identity: identity, workspaceID: actor.id, workspace: actor, actorRole: .owner, actorName: "cli")
                        .remove(userID: user.id)
                }
                print("\(user.email) is no longer a member of workspace \(workspace)")
            }
        }
    }
}

struct OpenAPICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Print (or write) the API's OpenAPI 3.1 description, as served at /api/v1/openapi.json (or .yaml).")
    @Flag(help: "The YAML source (Sources/SentinelServer/openapi.yaml) instead of JSON.") var yaml = false
    @Option(help: "Write to this file instead of stdout.") var out: String?

    func run() async throws {
        try await oneLine {
            let document = try APIDocument.load()
            let data = yaml ? document.yaml : document.json
            if let out {
                // Said in words (Foundation's was "NSCocoaErrorDomain error 512").
                var isDirectory: ObjCBool = false
                if out.isEmpty { throw CLIError("--out needs a file name") }
                if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory), isDirectory.boolValue {
                    throw CLIError("cannot write \(out): it is a directory; give a file name, e.g. \(out)/openapi.\(yaml ? "yaml" : "json")")
                }
                // A typo must not put the document over a database (`--out data/control.sqlite`).
                let existing = FileHandle(forReadingAtPath: out).flatMap { handle in defer { try? handle.close() }; return try? handle.read(upToCount: 16) }
                if existing == Data("SQLite format 3\u{0}".utf8) {
                    throw CLIError("\(out) is an SQLite database; write the API document to a file of its own")
                }
                do { try data.write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                    throw CLIError("cannot write \(out): \((error as NSError).localizedDescription)")
                }
            } else {
                FileHandle.standardOutput.write(data)
            }
        }
    }
}
