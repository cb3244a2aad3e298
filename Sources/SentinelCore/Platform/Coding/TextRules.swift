import Foundation

/// The rules every text a client sends follows, wherever it comes from (the API, whose request
/// validation reads the limits from its document, the console's forms, the CLI): no control
/// characters (tab and line breaks only where text may span lines) and at most so many characters.
/// Domain functions check the fields they store with these, so a form post that bypasses the
/// API's schema is held to the same limits.
public enum TextRules {
    /// Why `text` may not be stored for its control characters; nil when it may. One-line text
    /// (names, emails, tokens) may not hold bidirectional controls either (U+202A–U+202E,
    /// U+2066–U+2069): a workspace, team or provider named with one displays as another name
    /// ("Trojan Source" applied to a list). Text that spans lines (instructions, PEM) may, as
    /// right-to-left prose uses them.
    public static func controlCharacterProblem(_ text: String, multiline: Bool) -> String? {
        if StoredText.hasControlCharacters(text, multiline: multiline) {
            return multiline ? "must not contain control characters other than tab and line breaks" : "must not contain control characters"
        }
        // DEL, the C1 controls (U+0085 is a line break to some readers, U+009B a terminal's CSI)
        // and the Unicode line and paragraph separators break one line as surely as a newline.
        if !multiline, text.unicodeScalars.contains(where: { (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029 }) {
            return "must not contain control characters"
        }
        if !multiline, let control = BidiControls.find(in: text).first {
            return "must not contain bidirectional control characters (\(BidiControls.codePoint(control.scalar)) at character \(control.column))"
        }
        if !multiline, let (scalar, column) = invisible(in: text) {
            return "must not contain invisible characters (\(BidiControls.codePoint(scalar)) at character \(column))"
        }
        return nil
    }

    /// The first character that displays as nothing (Unicode's default-ignorable code points: a
    /// word joiner, a soft hyphen, a zero-width space, tags, the Hangul filler) and its position:
    /// `acme` with one at its end listed as another workspace `acme`, an email with a soft hyphen
    /// as another user's. Kept where they do something: a zero-width (non-)joiner between two
    /// characters outside ASCII (Persian, Indic scripts, emoji sequences), an emoji variation
    /// selector after an emoji (or in a keycap), another variation selector after an ideograph or
    /// a mathematical symbol, and the bidirectional marks right-to-left names carry.
    static func invisible(in text: String) -> (Unicode.Scalar, Int)? {
        let characters = Array(text)
        for (offset, character) in characters.enumerated() {
            let column = offset + 1
            let scalars = Array(character.unicodeScalars)
            for (index, scalar) in scalars.enumerated() {
                guard scalar.properties.isDefaultIgnorableCodePoint, ![0x200E, 0x200F, 0x061C].contains(scalar.value) else { continue }
                let previous = index > 0 ? scalars[index - 1] : nil
                if scalar.value == 0x200C || scalar.value == 0x200D {
                    // Between two visible characters outside ASCII; the next may begin the next character.
                    let next = index + 1 < scalars.count ? scalars[index + 1] : offset + 1 < characters.count ? characters[offset + 1].unicodeScalars.first : nil
                    if let previous, let next, !previous.isASCII, !next.isASCII, !previous.properties.isDefaultIgnorableCodePoint,
                       !next.properties.isDefaultIgnorableCodePoint { continue }
                } else if scalar.value == 0xFE0E || scalar.value == 0xFE0F, let previous {
                    if previous.properties.isEmoji && !previous.isASCII { continue }
                    if previous.isASCII, "0123456789#*".unicodeScalars.contains(previous), scalars.contains(where: { $0.value == 0x20E3 }) { continue }
                } else if (0xFE00...0xFE0D).contains(scalar.value), let previous,
                          previous.properties.isIdeographic || previous.properties.generalCategory == .mathSymbol {
                    continue
                }
                return (scalar, column)
            }
        }
        return nil
    }

    /// Why `text` is too long; nil when it is not.
    /// Characters as people count them; and at most four code points a character, so that marks
    /// piled on one letter (`z` and 300,000 combining accents, one "character") do not pass.
    public static func lengthProblem(_ text: String, maxLength: Int) -> String? {
        text.count > maxLength || text.unicodeScalars.count > 4 * maxLength ? "must have at most \(maxLength) characters" : nil
    }

    /// The first problem of `text` under both rules; nil when there is none.
    public static func problem(_ text: String, maxLength: Int, multiline: Bool = false) -> String? {
        controlCharacterProblem(text, multiline: multiline) ?? lengthProblem(text, maxLength: maxLength)
    }
}
