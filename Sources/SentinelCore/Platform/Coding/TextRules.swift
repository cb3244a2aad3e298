import Foundation

/// The rules every text a client sends follows, wherever it comes from (the API, whose request
/// validation reads the limits from its document, the console's forms, the CLI): no control
/// characters (tab and line breaks only where text may span lines) and at most so many characters.
/// Domain functions check the fields they store with these, so a form post that bypasses the
/// API's schema is held to the same limits.
public enum TextRules {
    /// Why `text` may not be stored for its control characters; nil when it may.
    public static func controlCharacterProblem(_ text: String, multiline: Bool) -> String? {
        guard StoredText.hasControlCharacters(text, multiline: multiline) else { return nil }
        return multiline ? "must not contain control characters other than tab and line breaks" : "must not contain control characters"
    }

    /// Why `text` is too long; nil when it is not.
    public static func lengthProblem(_ text: String, maxLength: Int) -> String? {
        text.count > maxLength ? "must have at most \(maxLength) characters" : nil
    }

    /// The first problem of `text` under both rules; nil when there is none.
    public static func problem(_ text: String, maxLength: Int, multiline: Bool = false) -> String? {
        controlCharacterProblem(text, multiline: multiline) ?? lengthProblem(text, maxLength: maxLength)
    }
}
