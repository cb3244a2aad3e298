import Foundation

/// Bar charts drawn on the server as inline SVG: no script, no external resource. Every bar
/// carries a `<title>` (its day and value) for screen readers and tooltips, and each chart has a
/// text alternative summarising it.
enum ConsoleCharts {
    struct Series {
        let name: String
        /// A CSS class (colour) for the series.
        let style: String
        let values: [Double]
    }

    /// Stacked bars, one per day; `format` writes a value for titles and the axis.
    static func bars(id: String, title: String, days: [String], series: [Series], format: (Double) -> String) -> String {
        let width = 600.0, height = 180.0, left = 48.0, bottom = 22.0, top = 8.0
        let totals = days.indices.map { index in series.reduce(0) { $0 + ($1.values.indices.contains(index) ? $1.values[index] : 0) } }
        let maximum = max(totals.max() ?? 0, 0)
        let scale = maximum > 0 ? (height - bottom - top) / maximum : 0
        let slot = days.isEmpty ? 0 : (width - left) / Double(days.count)
        let barWidth = max(slot * 0.7, 1)
        let total = totals.reduce(0, +)
        var svg = """
        <figure class="chart"><figcaption id="\(id)-title">\(escape(title))</figcaption>\
        <svg viewBox="0 0 \(Int(width)) \(Int(height))" role="img" aria-labelledby="\(id)-title \(id)-desc" data-points="\(totals.filter { $0 > 0 }.count)">\
        <desc id="\(id)-desc">\(escape(title)): \(escape(format(total))) in total over \(days.count) days, at most \(escape(format(maximum))) a day.</desc>\
        <line class="axis" x1="\(left)" y1="\(height - bottom)" x2="\(width)" y2="\(height - bottom)"/>\
        <text class="label" x="\(left - 4)" y="\(top + 8)" text-anchor="end">\(escape(format(maximum)))</text>\
        <text class="label" x="\(left - 4)" y="\(height - bottom)" text-anchor="end">0</text>
        """
        for (index, day) in days.enumerated() {
            var y = height - bottom
            let x = left + Double(index) * slot + (slot - barWidth) / 2
            for s in series {
                let value = s.values.indices.contains(index) ? s.values[index] : 0
                guard value > 0 else { continue }
                let h = value * scale
                y -= h
                svg += "<rect class=\"\(s.style)\" x=\(quote(x)) y=\(quote(y)) width=\(quote(barWidth)) height=\(quote(h))>"
                    + "<title>\(escape(day)) \(escape(s.name)): \(escape(format(value)))</title></rect>"
            }
            if index == 0 || index == days.count - 1 || index == days.count / 2 {
                // The first label starts at its bar, the last ends at its bar: neither is clipped.
                let (anchor, at) = index == 0 ? ("start", x) : index == days.count - 1 ? ("end", x + barWidth) : ("middle", x + barWidth / 2)
                svg += "<text class=\"label\" x=\(quote(at)) y=\"\(Int(height - 6))\" text-anchor=\"\(anchor)\">\(escape(String(day.suffix(5))))</text>"
            }
        }
        svg += "</svg>"
        if series.count > 1 {
            svg += "<ul class=\"legend\">" + series.map { "<li><span class=\"swatch \($0.style)\"></span>\(escape($0.name))</li>" }.joined() + "</ul>"
        }
        return svg + "</figure>"
    }

    static func quote(_ value: Double) -> String { "\"\(String(format: "%.1f", value))\"" }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
