/// The characters that reorder how the text around them is displayed (embeddings, overrides,
/// isolates and their terminators): U+202A–U+202E and U+2066–U+2069, the "Trojan Source"
/// characters (CVE-2021-42574) that compilers' own lints flag. The marks (U+200E, U+200F, U+061C)
/// only nudge neutral characters and are left alone, as right-to-left text uses them.
///
/// The built-in checks flag them in added lines; model text that carries them is shown with them
/// spelled out (`ModelText`), and a suggested change holding one is not offered; names and other
/// one-line text a client sends may not hold them (`TextRules`).
enum BidiControls {
    static let names: [UInt32: String] = [
        0x202A: "LEFT-TO-RIGHT EMBEDDING", 0x202B: "RIGHT-TO-LEFT EMBEDDING", 0x202C: "POP DIRECTIONAL FORMATTING",
        0x202D: "LEFT-TO-RIGHT OVERRIDE", 0x202E: "RIGHT-TO-LEFT OVERRIDE", 0x2066: "LEFT-TO-RIGHT ISOLATE",
        0x2067: "RIGHT-TO-LEFT ISOLATE", 0x2068: "FIRST STRONG ISOLATE", 0x2069: "POP DIRECTIONAL ISOLATE",
    ]

    /// Every one of them is three UTF-8 bytes starting 0xE2 0x80 or 0xE2 0x81, so text without
    /// 0xE2 (nearly every line of code) is passed over without decoding it.
    static func mayContain(_ text: String) -> Bool { text.utf8.contains(0xE2) }

    /// The controls in `text` with their columns (1-based, in Unicode scalars).
    static func find(in text: String) -> [(column: Int, scalar: Unicode.Scalar)] {
        guard mayContain(text) else { return [] }
        var found: [(column: Int, scalar: Unicode.Scalar)] = []
        for (offset, scalar) in text.unicodeScalars.enumerated() where names[scalar.value] != nil {
            found.append((offset + 1, scalar))
        }
        return found
    }

    static func contains(_ text: String) -> Bool {
        mayContain(text) && text.unicodeScalars.contains { names[$0.value] != nil }
    }

    /// `U+202E`.
    static func codePoint(_ scalar: Unicode.Scalar) -> String { "U+" + String(scalar.value, radix: 16, uppercase: true) }

    /// `text` with each control written out as `[U+202E]`, so it shows where it was and reorders nothing.
    static func spelledOut(_ text: String) -> String {
        guard contains(text) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if names[scalar.value] != nil {
                out.append(contentsOf: "[\(codePoint(scalar))]".unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }
}
