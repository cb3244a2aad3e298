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
