import Foundation

/// A provider-independent token estimate. Exact counts need each vendor's tokenizer; budgeting
/// only needs a stable, slightly pessimistic number, and ~4 bytes per token is that for code.
public enum TokenEstimator {
    /// ⌈utf8 bytes / 4⌉; 0 for empty text, at least 1 otherwise.
    public static func estimate(_ text: String) -> Int {
        estimate(byteCount: text.utf8.count)
    }

    public static func estimate(byteCount: Int) -> Int {
        byteCount <= 0 ? 0 : (byteCount + 3) / 4
    }
}

/// One unit of model work: the files (or parts of files, holding a subset of hunks) that go into
/// one prompt. Chunks exist so a large PR is reviewed in pieces that fit the model's context and
/// can run in parallel.
public struct ReviewChunk: Sendable, Hashable {
    /// Position of the chunk in review order.
    public var index: Int
    public var files: [DiffFile]
    /// Estimated tokens of the rendered diff of these files (see `DiffRenderer`).
    public var estimatedTokens: Int

    public init(index: Int, files: [DiffFile], estimatedTokens: Int) {
        self.index = index
        self.files = files
        self.estimatedTokens = estimatedTokens
    }
}

/// Renders files the way the prompt shows them to the model, and measures them. It lives next to
/// the chunker so that the size the chunker budgets is, by construction, the size the prompt sends.
///
/// Format, per file:
/// ```
/// ### File: path (modified)
/// @@ -10,3 +10,4 @@ section
///  10  10  unchanged
///  11     -removed
///      11 +added
/// ```
/// The first column is the old (LEFT) line number, the second the new (RIGHT) line number.
public enum DiffRenderer {
    public static func fileHeader(_ file: DiffFile) -> String {
        var s = "### File: \(promptName(file.path))"
        if file.status == .renamed, let old = file.oldPath, old != file.path { s += " (renamed from \(promptName(old)))" }
        else { s += " (\(file.status.rawValue))" }
        return s + "\n"
    }

    /// A file name as the prompt shows it: a line break or other control character in it is
    /// written as `\u{A}`. Written raw, a file named `x\n### File: other.py …` made up files and
    /// numbered lines in the prompt, where the diff's own lines cannot.
    static func promptName(_ path: String) -> String {
        guard path.unicodeScalars.contains(where: isBreaking) else { return path }
        var out = ""
        for scalar in path.unicodeScalars {
            if isBreaking(scalar) { out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}" } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    private static func isBreaking(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .control || scalar.value == 0x2028 || scalar.value == 0x2029
    }

    /// Width of the line-number columns for `file`: enough digits for its largest line number.
    public static func numberWidth(_ file: DiffFile) -> Int {
        var maxLine = 1
        for hunk in file.hunks {
            maxLine = max(maxLine, hunk.oldStart + hunk.oldCount, hunk.newStart + hunk.newCount)
        }
        return String(maxLine).count
    }

    /// The rendered file; `width` defaults to the file's own `numberWidth`.
    public static func render(_ file: DiffFile, width: Int? = nil) -> String {
        let width = width ?? numberWidth(file)
        var out = fileHeader(file)
        out.reserveCapacity(fileBytes(file, width: width))
        for hunk in file.hunks {
            out += hunk.header
            out += "\n"
            for line in hunk.lines {
                appendLine(line, width: width, to: &out)
            }
        }
        out += "\n"
        return out
    }

    static func appendLine(_ line: DiffLine, width: Int, to out: inout String) {
        let old = line.kind == .added ? "" : line.oldLine.map(String.init) ?? ""
        let new = line.kind == .removed ? "" : line.newLine.map(String.init) ?? ""
        out += String(repeating: " ", count: max(0, width - old.count)) + old
        out += " "
        out += String(repeating: " ", count: max(0, width - new.count)) + new
        out += " "
        switch line.kind {
        case .context: out += " "
        case .added: out += "+"
        case .removed: out += "-"
        }
        out += line.text
        out += "\n"
    }

    static func lineBytes(_ line: DiffLine, width: Int) -> Int {
        // Numbers never exceed `width` digits for lines of the file `width` was computed for.
        2 * width + 3 + line.text.utf8.count + 1
    }

    static func hunkHeaderBytes(oldStart: Int, oldCount: Int, newStart: Int, newCount: Int, section: String) -> Int {
        DiffHunk.headerLine(oldStart: oldStart, oldCount: oldCount, newStart: newStart, newCount: newCount,
                            section: section).utf8.count + 1
    }

    static func hunkBytes(_ hunk: DiffHunk, width: Int) -> Int {
        var total = hunkHeaderBytes(oldStart: hunk.oldStart, oldCount: hunk.oldCount, newStart: hunk.newStart,
                                    newCount: hunk.newCount, section: hunk.section)
        for line in hunk.lines { total += lineBytes(line, width: width) }
        return total
    }

    /// Bytes of the header plus the blank line that ends a rendered file.
    static func fileOverheadBytes(_ file: DiffFile) -> Int {
        fileHeader(file).utf8.count + 1
    }

    static func fileBytes(_ file: DiffFile, width: Int) -> Int {
        fileOverheadBytes(file) + file.hunks.reduce(0) { $0 + hunkBytes($1, width: width) }
    }
}

/// Splits a change into chunks that fit a token budget. Files are packed whole and in order
/// (related files tend to be adjacent); a file too large for one chunk is split at hunk
/// boundaries, and a hunk too large at line boundaries, so every diff line is reviewed exactly once.
public enum Chunker {
    /// Estimated prompt tokens of `file` rendered whole.
    public static func estimatedTokens(of file: DiffFile) -> Int {
        TokenEstimator.estimate(byteCount: DiffRenderer.fileBytes(file, width: DiffRenderer.numberWidth(file)))
    }

    /// - Parameters:
    ///   - budget: maximum estimated tokens of one chunk's rendered diff.
    ///   - maxTotalTokens: optional cap over all chunks; once a file would cross it, that file and
    ///     every later one go to `overBudget`.
    /// - Returns: the chunks, and the files that could not be placed (a single line larger than
    ///   the budget, or beyond the total cap). Files without hunks have nothing to review and
    ///   appear in neither.
    public static func chunks(files: [DiffFile], budget: Int, maxTotalTokens: Int? = nil)
        -> (chunks: [ReviewChunk], overBudget: [DiffFile])
    {
        let byteBudget = budget > 0 ? budget * 4 : 0
        let totalByteCap = maxTotalTokens.map { max(0, $0) * 4 }
        var items: [(file: DiffFile, bytes: Int)] = []
        var overBudget: [DiffFile] = []
        var totalBytes = 0
        var capReached = false

        for file in files {
            if capReached { overBudget.append(file); continue }
            guard !file.hunks.isEmpty else { continue }
            guard let pieces = pieces(of: file, byteBudget: byteBudget) else {
                overBudget.append(file)
                continue
            }
            let fileTotal = pieces.reduce(0) { $0 + $1.bytes }
            if let cap = totalByteCap, totalBytes + fileTotal > cap {
                capReached = true
                overBudget.append(file)
                continue
            }
            totalBytes += fileTotal
            items.append(contentsOf: pieces)
        }

        var chunks: [ReviewChunk] = []
        var current: [DiffFile] = []
        var currentBytes = 0
        func flush() {
            guard !current.isEmpty else { return }
            chunks.append(ReviewChunk(index: chunks.count, files: current,
                                      estimatedTokens: TokenEstimator.estimate(byteCount: currentBytes)))
            current = []
            currentBytes = 0
        }
        for item in items {
            if currentBytes + item.bytes > byteBudget { flush() }
            current.append(item.file)
            currentBytes += item.bytes
        }
        flush()
        return (chunks, overBudget)
    }

    /// The file as one piece when it fits, else split into pieces each within `byteBudget`;
    /// nil when some single line cannot fit even alone.
    private static func pieces(of file: DiffFile, byteBudget: Int) -> [(file: DiffFile, bytes: Int)]? {
        let width = DiffRenderer.numberWidth(file)
        let overhead = DiffRenderer.fileOverheadBytes(file)
        let hunkSizes = file.hunks.map { DiffRenderer.hunkBytes($0, width: width) }
        let whole = overhead + hunkSizes.reduce(0, +)
        if whole <= byteBudget { return [(file, whole)] }

        let available = byteBudget - overhead
        guard available > 0 else { return nil }

        // Units: hunks that fit, or line-level slices of hunks that do not.
        var units: [(hunk: DiffHunk, bytes: Int)] = []
        for (hunk, size) in zip(file.hunks, hunkSizes) {
            if size <= available {
                units.append((hunk, size))
                continue
            }
            // An upper bound for any slice's header: starts can only grow, counts only shrink.
            let headerBound = DiffRenderer.hunkHeaderBytes(
                oldStart: hunk.oldStart + hunk.oldCount, oldCount: hunk.oldCount,
                newStart: hunk.newStart + hunk.newCount, newCount: hunk.newCount, section: hunk.section)
            var start = 0
            var bytes = headerBound
            for (i, line) in hunk.lines.enumerated() {
                let lb = DiffRenderer.lineBytes(line, width: width)
                if headerBound + lb > available { return nil }
                if bytes + lb > available {
                    let slice = hunk.slice(start..<i)
                    units.append((slice, DiffRenderer.hunkBytes(slice, width: width)))
                    start = i
                    bytes = headerBound
                }
                bytes += lb
            }
            if start < hunk.lines.count {
                let slice = hunk.slice(start..<hunk.lines.count)
                units.append((slice, DiffRenderer.hunkBytes(slice, width: width)))
            }
        }

        var result: [(file: DiffFile, bytes: Int)] = []
        var group: [DiffHunk] = []
        var groupBytes = 0
        for unit in units {
            if !group.isEmpty && groupBytes + unit.bytes > available {
                result.append((file.withHunks(group), overhead + groupBytes))
                group = []
                groupBytes = 0
            }
            group.append(unit.hunk)
            groupBytes += unit.bytes
        }
        if !group.isEmpty { result.append((file.withHunks(group), overhead + groupBytes)) }
        return result
    }
}
