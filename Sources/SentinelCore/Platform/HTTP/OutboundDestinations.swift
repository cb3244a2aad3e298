import Foundation
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as its network-order bytes (4 or 16).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A textual address (`10.0.0.5`, `::1`, `[fe80::1]`); nil for anything else, host names included.
    public init?(_ text: String) {
        var text = text
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if let zone = text.firstIndex(of: "%") { text = String(text[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for, else self.
    public var unmapped: IPAddress {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return self }
        return IPAddress(bytes: Array(bytes[12..<16]))!
    }

    public var description: String {
        var copy = bytes
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = copy.withUnsafeMutableBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        guard ok else { return bytes.map(String.init).joined(separator: ".") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address block in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard let first = parts.first, let address = IPAddress(String(first)) else { return nil }
        let bits = address.bytes.count * 8
        let length: Int
        if parts.count == 1 { length = bits } else if parts.count == 2, let n = Int(parts[1]), (0...bits).contains(n) { length = n } else { return nil }
        self.network = address
        self.prefixLength = length
    }

    public func contains(_ address: IPAddress) -> Bool {
        // An IPv4 client against an IPv4-mapped block (`::ffff:127.0.0.1/128`, as `ss` shows a
        // dual-stack listener's peers) is compared in its mapped form, and the other way round.
        let candidate: IPAddress
        if address.bytes.count == network.bytes.count { candidate = address }
        else if address.isIPv4 { candidate = IPAddress(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + address.bytes)! }
        else { candidate = address.unmapped }
        guard candidate.bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for (a, b) in zip(candidate.bytes, network.bytes) {
            if remaining <= 0 { return true }
            let mask: UInt8 = remaining >= 8 ? 0xff : ~(0xff >> UInt8(remaining))
            if a & mask != b & mask { return false }
            remaining -= 8
        }
        return true
    }

    public var description: String { "\(network)/\(prefixLength)" }

    /// A configuration key's comma-separated address blocks (an address alone is a block of one).
    public static func list(_ text: String, key: String) throws -> [IPRange] {
        try text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { entry in
            guard let range = IPRange(entry) else { throw ConfigError("\(key): '\(entry)' is not an address block (e.g. 10.20.0.0/16)") }
            return range
        }
    }
}

/// Resolves a host name to addresses. The edge where outbound destinations meet DNS, so tests can
/// make a public-looking name resolve to a private address.
public protocol HostResolver: Sendable {
    func resolve(host: String, port: Int) async throws -> [IPAddress]
}

/// `getaddrinfo`, run on a few threads of its own: never on the cooperative pool, and not on NIO's
/// shared blocking pool either, where workspace files are opened, closed and checkpointed. A DNS
/// server that stops answering holds each lookup for the resolver's whole timeout (seconds per
/// attempt, per name server); lookups stuck there held up every workspace open behind them.
public struct SystemHostResolver: HostResolver {
    /// Lookups at once, at most; more wait their turn on this pool.
    static let threads = 4
    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        return pool
    }()

    private let lookup: @Sendable (String, Int) throws -> [IPAddress]

    public init() { self.lookup = { try Self.lookup(host: $0, port: $1) } }

    /// Another lookup on the same threads (tests: one that hangs like an unanswered DNS query).
    init(lookup: @escaping @Sendable (String, Int) throws -> [IPAddress]) { self.lookup = lookup }

    public func resolve(host: String, port: Int) async throws -> [IPAddress] {
        let lookup = self.lookup
        return try await Self.pool.runIfActive { try lookup(host, port) }
    }

    static func lookup(host: String, port: Int) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw OutboundHTTPError.connection("\(host): the name could not be resolved (\(String(cString: gai_strerror(status))))")
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let raw = info.pointee.ai_addr {
                switch info.pointee.ai_family {
                case AF_INET:
                    let bytes = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                        withUnsafeBytes(of: p.pointee.sin_addr) { Array($0) }
                    }
                    if let a = IPAddress(bytes: bytes), !addresses.contains(a) { addresses.append(a) }
                case AF_INET6:
                    let bytes = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                        withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) }
                    }
                    if let a = IPAddress(bytes: bytes), !addresses.contains(a) { addresses.append(a) }
                default: break
                }
            }
            cursor = info.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw OutboundHTTPError.connection("\(host): the name resolved to no address") }
        return addresses
    }
}

/// Why an outbound destination was refused. Descriptions name the setting that would allow it.
public enum DestinationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A configured URL is not https and its host is not loopback.
    case insecureScheme(field: String, url: String)
    /// A configured URL is not an absolute http(s) URL.
    case invalidURL(field: String, url: String)
    /// A configured URL names a port no connection can use (outside 1...65535). The message leaves
    /// the URL out: a notification channel's URL carries its token.
    case invalidPort(field: String, port: Int)
    /// The host is, or resolves to, an address outbound calls may not reach.
    case refusedAddress(host: String, address: String, range: String)
    /// A configured URL holds a user name or password (`https://user:secret@host/`).
    case credentialsInURL(field: String)

    /// A URL as messages show it: scheme, host and port, never the user, path or query (a
    /// webhook URL's path and a URL's user part can be secrets).
    public static func shown(_ url: URL) -> String {
        let host = url.host ?? "?"
        let bracketed = host.contains(":") ? "[\(host)]" : host     // `http://[::1]:9/…`
        let rest = url.path.isEmpty || url.path == "/" ? "" : "/…"
        return "\(url.scheme ?? "https")://\(bracketed)\(url.port.map { ":\($0)" } ?? "")\(rest)"
    }

    static func shown(_ text: String) -> String { URL(string: text).map(shown) ?? "(not a URL)" }

    public var description: String {
        switch self {
        case .insecureScheme(let field, let url):
            return "\(field) must use https (plain http is only accepted for loopback hosts, and for AI providers on the hosts in security.plain_http_hosts): \(Self.shown(url))"
        case .invalidURL(let field, let url):
            return "\(field) must be an absolute https URL: \(Self.shown(url))"
        case .credentialsInURL(let field):
            return "\(field) must not hold a user name or password (user:password@): credentials go in the token or key fields, sent in headers"
        case .invalidPort(let field, let port):
            return "\(field) has port \(port); a port is between 1 and 65535"
        case .refusedAddress(let host, let address, let range):
            return "\(host) resolves to \(address), a \(range) address; outbound calls to it are refused "
                + "(allow it with security.allowed_destination_cidrs or security.allow_private_destinations)"
        }
    }

    /// The configuration field a refusal is about, for API problems.
    public var field: String? {
        switch self {
        case .insecureScheme(let field, _), .invalidURL(let field, _), .invalidPort(let field, _), .credentialsInURL(let field): return field
        case .refusedAddress: return nil
        }
    }
}

/// Where outbound calls (AI providers, GitHub Enterprise Server) may go. Two checks:
/// - when a URL is configured: https, unless the host is loopback (`requireSecure`);
/// - when a connection is made: every address the host resolves to must be public or loopback,
///   unless an appliance admin allows private destinations or lists the address's block in
///   `security.allowed_destination_cidrs` (`check`). The HTTP client then connects to the address
///   it checked, so a name cannot be re-pointed between the check and the connection.
public struct DestinationPolicy: Sendable {
    public var allowPrivate: Bool
    public var allowedRanges: [IPRange]
    /// Hosts an AI provider's base URL may name with plain http besides loopback
    /// (`security.plain_http_hosts`): exact names (lowercased) and address blocks.
    public var plainHTTPNames: Set<String>
    public var plainHTTPRanges: [IPRange]

    public init(allowPrivate: Bool = false, allowedRanges: [IPRange] = [], plainHTTPNames: Set<String> = [], plainHTTPRanges: [IPRange] = []) {
        self.allowPrivate = allowPrivate
        self.allowedRanges = allowedRanges
        self.plainHTTPNames = plainHTTPNames
        self.plainHTTPRanges = plainHTTPRanges
    }

    /// From `security.allow_private_destinations`, `security.allowed_destination_cidrs` and
    /// `security.plain_http_hosts`.
    public init(_ security: SentinelConfig.Security) throws {
        let ranges = try IPRange.list(security.allowedDestinationCIDRs, key: "security.allowed_destination_cidrs")
        var names: Set<String> = []
        var plainRanges: [IPRange] = []
        for text in Self.entries(security.plainHTTPHosts) {
            if let range = IPRange(text) {          // an address alone is a block of one
                plainRanges.append(range)
            } else if Self.isHostName(text) {
                names.insert(text.lowercased())
            } else {
                throw ConfigError("security.plain_http_hosts: '\(text)' is neither a host name nor an address block (e.g. ollama.corp.example or 10.20.0.0/16)")
            }
        }
        self.init(allowPrivate: security.allowPrivateDestinations, allowedRanges: ranges, plainHTTPNames: names, plainHTTPRanges: plainRanges)
    }

    private static func entries(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// A DNS name: dot-separated labels of letters, digits and inner hyphens.
    private static func isHostName(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return text.utf8.count <= 253 && labels.allSatisfy { label in
            (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" }
        }
    }

    /// Whether plain http may be used to `host`: loopback, or listed in `security.plain_http_hosts`.
    public func allowsPlainHTTP(to host: String) -> Bool {
        if Self.isLoopbackHost(host) { return true }
        if let address = IPAddress(host)?.unmapped { return plainHTTPRanges.contains { $0.contains(address) } }
        return plainHTTPNames.contains(host.lowercased())
    }

    static let loopback = [IPRange("127.0.0.0/8")!, IPRange("::1/128")!]

    /// Blocks outbound calls may not reach by default, with the name used in refusals.
    static let reserved: [(range: IPRange, name: String)] = {
        let table: [(String, String)] = [
        ("0.0.0.0/8", "unspecified"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("169.254.0.0/16", "link-local (cloud metadata)"), ("172.16.0.0/12", "private"), ("192.0.0.0/24", "IETF protocol"),
        ("192.0.2.0/24", "documentation"), ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"), ("::/128", "unspecified"), ("64:ff9b::/96", "NAT64"), ("100::/64", "discard"),
        ("2001:db8::/32", "documentation"), ("fc00::/7", "private (unique local)"), ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"), ("ff00::/8", "multicast"),
        ]
        return table.map { (range: IPRange($0.0)!, name: $0.1) }
    }()

    public static func isLoopback(_ address: IPAddress) -> Bool {
        loopback.contains { $0.contains(address) }
    }

    /// Whether a URL's host is loopback by its text: `localhost` or a loopback address literal.
    public static func isLoopbackHost(_ host: String) -> Bool {
        let host = host.lowercased()
        if host == "localhost" || host.hasSuffix(".localhost") { return true }
        return IPAddress(host).map(isLoopback) ?? false
    }

    /// Refuses a configured URL that is not https, unless its host is loopback, or whose port no
    /// connection can use.
    public static func requireSecure(_ url: URL, field: String) throws {
        try DestinationPolicy().requireSecure(url, field: field)
    }

    /// Refuses a configured URL that is not https, unless `allowsPlainHTTP(to:)` its host, or
    /// whose port no connection can use.
    public func requireSecure(_ url: URL, field: String) throws {
        guard let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty, scheme == "https" || scheme == "http" else {
            throw DestinationError.invalidURL(field: field, url: url.absoluteString)
        }
        if let port = url.port, !(1...65535).contains(port) { throw DestinationError.invalidPort(field: field, port: port) }
        // AsyncHTTPClient would not send them; they would only end up in messages and logs.
        if url.user != nil || url.password != nil { throw DestinationError.credentialsInURL(field: field) }
        if scheme == "http" && !allowsPlainHTTP(to: host) {
            throw DestinationError.insecureScheme(field: field, url: url.absoluteString)
        }
    }

    /// The name of the reserved block `address` is in, or nil for a public address.
    public static func reservedRange(of address: IPAddress) -> String? {
        let plain = address.unmapped
        return reserved.first { $0.range.contains(plain) }?.name
    }

    /// Refuses an address outbound calls may not reach (see the type's documentation).
    public func check(_ address: IPAddress, host: String) throws {
        let plain = address.unmapped
        if Self.isLoopback(plain) || allowPrivate { return }
        if allowedRanges.contains(where: { $0.contains(plain) }) { return }
        if let name = Self.reservedRange(of: plain) {
            throw DestinationError.refusedAddress(host: host, address: plain.description, range: name)
        }
    }
}

/// An address an admin typed, read as written: a space, a control or a character outside ASCII
/// makes it no URL (Foundation's `URL(string:)` percent-encodes them and stored `/v1%E2%80%A8`).
/// The API, the console and the command line read addresses with it.
public enum WebAddress {
    public static func parse(_ text: String) -> URL? {
        URL(string: text, encodingInvalidCharacters: false)
    }
}

/// Error text from remote servers (provider and GitHub error bodies) before it is stored or posted:
/// control characters removed, credentials in the well-known token shapes redacted, HTML comments
/// and @-mentions neutralised as model text is, and truncated, so a hostile or broken server can
/// neither forge Sentinel's markers, nor flood a summary, nor have a token it echoes (GitHub's
/// installation token, say) posted on a pull request or logged.
public enum RemoteText {
    public static let maxCharacters = 500

    /// Token shapes redacted wherever remote text goes: GitHub's (`ghp_`, `ghs_`, … and fine-grained
    /// `github_pat_`), GitLab's (`glpat-`, `gloas-`, …), provider keys (`sk-…`, Google's `AIza…`), JSON Web Tokens,
    /// and any value after `bearer` or an api-key label, or after `token:` / `token=`.
    static let credentialPatterns = [
        #"\bgh[opusr]_[A-Za-z0-9_]{8,}"#,
        #"\bgithub_pat_[A-Za-z0-9_]{8,}"#,
        #"\bgl[a-z]{2,6}-[A-Za-z0-9_\-]{8,}"#,
        #"\bsk-[A-Za-z0-9_\-\*]{6,}"#,
        #"\bAIza[0-9A-Za-z_\-]{20,}"#,
        // A JSON Web Token (a GitHub App's, valid ten minutes, mints installation tokens): its
        // header is base64url JSON, so it starts `eyJ`. Wherever it starts (`Bearer%20eyJ…`).
        #"eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"#,
        #"(?i)(api[-_ ]?key|bearer|x-api-key|api-key)(\s*[:=]\s*|\s+)[A-Za-z0-9_\-\.\*]{8,}"#,
        #"(?i)\b(access[-_ ]?)?token\s*[:=]\s*[A-Za-z0-9_\-\.\*]{8,}"#,
    ]

    /// `text` with every credential of a well-known shape replaced by `[redacted]`.
    public static func redactCredentials(_ text: String) -> String {
        var out = text
        for pattern in credentialPatterns {
            out = out.replacingOccurrences(of: pattern, with: "[redacted]", options: .regularExpression)
        }
        return out
    }

    public static func clean(_ text: String, limit: Int = maxCharacters) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A, 0x09: scalars.append(" ")
            case 0x00...0x1F, 0x7F...0x9F: continue
            default: scalars.append(scalar)
            }
        }
        // Neutralised first, so the cut cannot leave a marker the neutraliser would have broken.
        var out = ModelText.neutralize(redactCredentials(String(scalars).trimmingCharacters(in: .whitespaces)))
        if out.count > limit { out = String(out.prefix(limit - 1)) + "…" }
        return out
    }
}
