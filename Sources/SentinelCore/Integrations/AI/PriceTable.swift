import Foundation
import Yams

/// USD per million tokens.
public struct ModelPrice: Sendable, Hashable, Codable {
    public var inputPerMillion: Double
    public var outputPerMillion: Double

    public init(inputPerMillion: Double, outputPerMillion: Double) {
        self.inputPerMillion = inputPerMillion
        self.outputPerMillion = outputPerMillion
    }

    public static let free = ModelPrice(inputPerMillion: 0, outputPerMillion: 0)
}

/// Prices by `"kind/model"` pattern. A pattern is an exact name or a prefix ending in `*`
/// (`"openai/gpt-4o*"`); the kind may be `*` (`"*/llama*"`). The most specific match wins: an
/// exact name, then the longest prefix. A model of a vendor that bills every call (OpenAI, Azure
/// OpenAI, Anthropic, Gemini) that no entry names is priced as the dearest model of its kind the
/// table lists, an estimate on the high side, so that a workspace's AI budget holds for it (it was
/// free, and the budget let every call through); other unknown models cost 0 (self-hosted
/// endpoints are usually free; admins add entries for paid ones).
public struct PriceTable: Sendable, Hashable {
    public private(set) var entries: [String: ModelPrice]

    public init(entries: [String: ModelPrice] = PriceTable.builtInEntries) {
        self.entries = entries
    }

    /// Built-in list prices of well-known models (USD per 1M tokens, standard tier, no caching).
    /// Overridable: `overriding(_:)` or `set(_:for:)`.
    public static let builtInEntries: [String: ModelPrice] = {
        var table: [String: ModelPrice] = [
            "openai/gpt-4o*": .init(inputPerMillion: 2.50, outputPerMillion: 10.00),
            "openai/gpt-4o-mini*": .init(inputPerMillion: 0.15, outputPerMillion: 0.60),
            "openai/gpt-4.1*": .init(inputPerMillion: 2.00, outputPerMillion: 8.00),
            "openai/gpt-4.1-mini*": .init(inputPerMillion: 0.40, outputPerMillion: 1.60),
            "openai/gpt-4.1-nano*": .init(inputPerMillion: 0.10, outputPerMillion: 0.40),
            "openai/gpt-4*": .init(inputPerMillion: 30.00, outputPerMillion: 60.00),
            "openai/gpt-4-32k*": .init(inputPerMillion: 60.00, outputPerMillion: 120.00),
            "openai/gpt-4-turbo*": .init(inputPerMillion: 10.00, outputPerMillion: 30.00),
            "openai/gpt-4-0125-preview*": .init(inputPerMillion: 10.00, outputPerMillion: 30.00),
            "openai/gpt-4-1106-preview*": .init(inputPerMillion: 10.00, outputPerMillion: 30.00),
            "openai/gpt-4.5*": .init(inputPerMillion: 75.00, outputPerMillion: 150.00),
            "openai/gpt-3.5-turbo*": .init(inputPerMillion: 0.50, outputPerMillion: 1.50),
            "openai/gpt-5*": .init(inputPerMillion: 1.25, outputPerMillion: 10.00),
            "openai/gpt-5-pro*": .init(inputPerMillion: 15.00, outputPerMillion: 120.00),
            "openai/gpt-5-mini*": .init(inputPerMillion: 0.25, outputPerMillion: 2.00),
            "openai/gpt-5-nano*": .init(inputPerMillion: 0.05, outputPerMillion: 0.40),
            "openai/o1*": .init(inputPerMillion: 15.00, outputPerMillion: 60.00),
            "openai/o1-mini*": .init(inputPerMillion: 1.10, outputPerMillion: 4.40),
            "openai/o1-pro*": .init(inputPerMillion: 150.00, outputPerMillion: 600.00),
            "openai/o3*": .init(inputPerMillion: 2.00, outputPerMillion: 8.00),
            "openai/o3-pro*": .init(inputPerMillion: 20.00, outputPerMillion: 80.00),
            "openai/o3-deep-research*": .init(inputPerMillion: 10.00, outputPerMillion: 40.00),
            "openai/o4-mini-deep-research*": .init(inputPerMillion: 2.00, outputPerMillion: 8.00),
            "openai/o3-mini*": .init(inputPerMillion: 1.10, outputPerMillion: 4.40),
            "openai/o4-mini*": .init(inputPerMillion: 1.10, outputPerMillion: 4.40),
            "anthropic/claude-opus-4*": .init(inputPerMillion: 15.00, outputPerMillion: 75.00),
            "anthropic/claude-sonnet-4*": .init(inputPerMillion: 3.00, outputPerMillion: 15.00),
            "anthropic/claude-3-7-sonnet*": .init(inputPerMillion: 3.00, outputPerMillion: 15.00),
            "anthropic/claude-3-5-sonnet*": .init(inputPerMillion: 3.00, outputPerMillion: 15.00),
            "anthropic/claude-3-5-haiku*": .init(inputPerMillion: 0.80, outputPerMillion: 4.00),
            "anthropic/claude-haiku-4*": .init(inputPerMillion: 1.00, outputPerMillion: 5.00),
            "anthropic/claude-3-opus*": .init(inputPerMillion: 15.00, outputPerMillion: 75.00),
            "anthropic/claude-3-sonnet*": .init(inputPerMillion: 3.00, outputPerMillion: 15.00),
            "anthropic/claude-3-haiku*": .init(inputPerMillion: 0.25, outputPerMillion: 1.25),
            "gemini/gemini-2.5-pro*": .init(inputPerMillion: 1.25, outputPerMillion: 10.00),
            "gemini/gemini-2.5-flash*": .init(inputPerMillion: 0.30, outputPerMillion: 2.50),
            "gemini/gemini-2.5-flash-lite*": .init(inputPerMillion: 0.10, outputPerMillion: 0.40),
            "gemini/gemini-2.0-flash*": .init(inputPerMillion: 0.10, outputPerMillion: 0.40),
            "gemini/gemini-1.5-pro*": .init(inputPerMillion: 1.25, outputPerMillion: 5.00),
            "gemini/gemini-1.5-flash*": .init(inputPerMillion: 0.075, outputPerMillion: 0.30),
        ]
        // Azure deployments of OpenAI models are priced like OpenAI's (global standard); Azure
        // names GPT-3.5 `gpt-35-turbo`.
        for (key, price) in table where key.hasPrefix("openai/") {
            table["azure-openai/" + key.dropFirst("openai/".count)] = price
        }
        table["azure-openai/gpt-35-turbo*"] = table["openai/gpt-3.5-turbo*"]
        return table
    }()

    public static let builtIn = PriceTable()

    /// This table with `overrides` replacing or adding entries.
    public func overriding(_ overrides: [String: ModelPrice]) -> PriceTable {
        var copy = self
        for (key, price) in overrides { copy.entries[key] = price }
        return copy
    }

    public mutating func set(_ price: ModelPrice, for pattern: String) { entries[pattern] = price }

    /// The price for a model, or nil when no entry matches.
    public func price(kind: ProviderKind, model: String) -> ModelPrice? {
        price(kind: kind.rawValue, model: model)
    }

    public func price(kind: String, model: String) -> ModelPrice? {
        match(kind: kind, model: model)?.price ?? dearest(kind: kind)?.price
    }

    /// The kinds whose vendors bill every call.
    static let billedKinds: Set<String> = ["openai", "azure-openai", "anthropic", "gemini"]

    /// Whether an entry of the table prices this model (not the dearest of its kind standing in).
    public func names(kind: String, model: String) -> Bool {
        match(kind: kind, model: model) != nil
    }

    /// The entry of the dearest model of a billed kind (input and output together), which prices
    /// that kind's models no entry names; nil for other kinds.
    public func dearest(kind: String) -> (pattern: String, price: ModelPrice)? {
        guard Self.billedKinds.contains(kind) else { return nil }
        return entries.filter { $0.key.hasPrefix(kind + "/") }
            .max { ($0.value.inputPerMillion + $0.value.outputPerMillion, $1.key) < ($1.value.inputPerMillion + $1.value.outputPerMillion, $0.key) }
            .map { ($0.key, $0.value) }
    }

    /// The `model` label of the AI metrics: the table's entry that prices the model, as a model
    /// family (`gpt-4o-mini` for `gpt-4o-mini-2024-07-18`, from `openai/gpt-4o-mini*`), else
    /// `other`. A workspace admin names a provider's model freely (200 characters); as a label
    /// each name was a new set of series, kept until restart.
    public func metricsModel(kind: String, model: String) -> String {
        guard let pattern = match(kind: kind, model: model)?.pattern, let slash = pattern.firstIndex(of: "/") else { return "other" }
        var family = pattern[pattern.index(after: slash)...]
        if family.hasSuffix("*") { family = family.dropLast() }
        return family.isEmpty ? "other" : String(family)
    }

    private func match(kind: String, model: String) -> (pattern: String, price: ModelPrice)? {
        var best: (score: Int, pattern: String, price: ModelPrice)?
        for (pattern, price) in entries {
            guard let slash = pattern.firstIndex(of: "/") else { continue }
            let patternKind = pattern[..<slash]
            let patternModel = pattern[pattern.index(after: slash)...]
            guard patternKind == "*" || patternKind == kind else { continue }
            var score: Int
            if patternModel.hasSuffix("*") {
                let prefix = patternModel.dropLast()
                guard model.hasPrefix(prefix) else { continue }
                score = prefix.count * 2
            } else {
                guard patternModel == model else { continue }
                score = 1_000_000
            }
            if patternKind != "*" { score += 1 }
            if best == nil || score > best!.score || (score == best!.score && pattern < best!.pattern) { best = (score, pattern, price) }
        }
        return best.map { ($0.pattern, $0.price) }
    }

    /// Cost in USD of `usage` on a model (0 when no price applies: see `price(kind:model:)`).
    public func cost(_ usage: TokenUsage, provider: ProviderKind, model: String) -> Double {
        guard let price = price(kind: provider, model: model) else { return 0 }
        return Double(usage.inputTokens) / 1_000_000 * price.inputPerMillion
            + Double(usage.outputTokens) / 1_000_000 * price.outputPerMillion
    }
}

extension PriceTable {
    /// The built-in table overridden by an admin's YAML file of
    /// `"kind/model-pattern": {input_per_million: N, output_per_million: N}` entries.
    /// The highest price accepted for a million tokens, in USD (today's dearest models cost well under 100).
    public static let maxPricePerMillion = 10_000.0

    public static func load(overridesFile path: String?) throws -> PriceTable {
        guard let path else { return .builtIn }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError("cannot read price table \(path)") }
        let parsed: Any?
        try AliasScanner.check(text, file: path)
        do { parsed = try Yams.load(yaml: text) } catch { throw ConfigError.invalidYAML(path, error) }
        guard let map = parsed as? [String: Any] else { throw ConfigError("\(path): expected a map of \"kind/model\" to prices") }
        var overrides: [String: ModelPrice] = [:]
        for (pattern, value) in map {
            guard let entry = value as? [String: Any],
                  let input = (entry["input_per_million"] as? Double) ?? (entry["input_per_million"] as? Int).map(Double.init),
                  let output = (entry["output_per_million"] as? Double) ?? (entry["output_per_million"] as? Int).map(Double.init),
                  pattern.contains("/") else {
                throw ConfigError("\(path): '\(pattern)' needs a kind/model name and non-negative input_per_million and output_per_million")
            }
            // A price is USD per million tokens: .inf, .nan or 1e300 would make every cost (and the
            // spend limits and usage reports built on it) infinite.
            for (field, price) in [("input_per_million", input), ("output_per_million", output)] where !(0...Self.maxPricePerMillion).contains(price) {
                throw ConfigError("\(path): '\(pattern)': \(field) must be a number of USD from 0 to \(Int(Self.maxPricePerMillion)), not \(price)")
            }
            overrides[pattern] = ModelPrice(inputPerMillion: input, outputPerMillion: output)
        }
        return PriceTable.builtIn.overriding(overrides)
    }
}
