import Foundation

extension Double {
    /// An amount (a budget in USD) in digits and at most one decimal point, without an exponent
    /// or trailing zeros, to twelve places: what the console's budget form and the CLI show, and
    /// what the form takes back (six places rounded $0.0000001 to 0, and cents showed $0.0155 as 0.02).
    public var plainDecimalText: String {
        var text = String(format: "%.12f", self)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    /// An amount in USD with cents, and more places where it has them: `1.20`, `0.000228` (cents
    /// alone showed a spend of $0.000228, or a budget of $0.001, as 0.00).
    public var dollarText: String {
        let plain = plainDecimalText
        let places = plain.firstIndex(of: ".").map { plain.distance(from: $0, to: plain.endIndex) - 1 } ?? 0
        return places >= 2 ? plain : String(format: "%.2f", self)
    }
}
