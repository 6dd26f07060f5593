import Foundation

/// Small, dependency-free SVG charts for the evaluation reports.
enum SVGChart {
    static let width = 640.0, height = 360.0
    static let left = 60.0, right = 150.0, top = 36.0, bottom = 56.0
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]

    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    /// A horizontal reference (a baseline, a budget): dashed, labelled, never a data series.
    struct Reference {
        var name: String
        var y: Double
    }

    /// Lines over a shared x axis. `integerX`: ticks only at whole numbers (rounds),
    /// the axis from `xFrom` (0 shows where training started).
    static func lines(title: String, xLabel: String, yLabel: String, series: [Series], yRange: ClosedRange<Double>? = nil,
                      references: [Reference] = [], integerX: Bool = false, xFrom: Double? = nil) -> String {
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) } + references.map(\.y)
        let xMin = xFrom ?? xs.min() ?? 0, xMax = max(xs.max() ?? 1, xMin + (integerX ? 1 : 1e-9))
        let range = yRange ?? ((ys.min() ?? 0)...max(ys.max() ?? 1, (ys.min() ?? 0) + 1e-9))
        var svg = header(title: title, xLabel: xLabel, yLabel: yLabel)
        svg += axes(xMin: xMin, xMax: xMax, yRange: range, xTicks: integerX ? .integers : .quarters)
        var entry = 0
        for (i, s) in series.enumerated() where !s.points.isEmpty {
            let colour = palette[i % palette.count]
            let path = s.points.map { "\(fmt(px($0.x, xMin, xMax))),\(fmt(py($0.y, range)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for p in s.points where s.points.count <= 12 {
                svg += "<circle cx=\"\(fmt(px(p.x, xMin, xMax)))\" cy=\"\(fmt(py(p.y, range)))\" r=\"3\" fill=\"\(colour)\"/>\n"
            }
            svg += legend(entry, name: s.name, colour: colour)
            entry += 1
        }
        for reference in references {
            let y = py(reference.y, range)
            svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(y))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(y))\" stroke=\"#555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n"
            svg += "<text x=\"\(fmt(width - right - 4))\" y=\"\(fmt(y - 5))\" font-size=\"10\" text-anchor=\"end\" fill=\"#333\">\(escape(reference.name)) \(label(reference.y))</text>\n"
            svg += legend(entry, name: reference.name, colour: "#555", dashed: true)
            entry += 1
        }
        return svg + "</svg>\n"
    }

    /// Grouped bars: one group per category, one bar per series.
    /// `notes`: a second line under each category (its example count, say).
    static func bars(title: String, yLabel: String, categories: [String], notes: [String] = [], series: [Series],
                     yRange: ClosedRange<Double> = 0...1) -> String {
        var svg = header(title: title, xLabel: "", yLabel: yLabel)
        svg += axes(xMin: 0, xMax: 1, yRange: yRange, xTicks: .none)
        let plotWidth = width - left - right
        let group = plotWidth / Double(max(1, categories.count))
        let bar = group * 0.8 / Double(max(1, series.count))
        for (c, category) in categories.enumerated() {
            let x0 = left + Double(c) * group + group * 0.1
            for (i, s) in series.enumerated() where c < s.points.count {
                let y = py(s.points[c].y, yRange)
                svg += "<rect x=\"\(fmt(x0 + Double(i) * bar))\" y=\"\(fmt(y))\" width=\"\(fmt(bar))\" height=\"\(fmt(height - bottom - y))\" fill=\"\(palette[i % palette.count])\"/>\n"
            }
            if categories.count <= 40 {
                let x = fmt(x0 + group * 0.4), name = escape(category), note = c < notes.count ? escape(notes[c]) : nil
                if group >= 44 { // room for two lines under the group
                    svg += "<text x=\"\(x)\" y=\"\(fmt(height - bottom + 14))\" font-size=\"10\" text-anchor=\"middle\">\(name)</text>\n"
                    if let note { svg += "<text x=\"\(x)\" y=\"\(fmt(height - bottom + 26))\" font-size=\"9\" text-anchor=\"middle\" fill=\"#555\">\(note)</text>\n" }
                } else { // crowded: one slanted label per group
                    let y = fmt(height - bottom + 10)
                    svg += "<text x=\"\(x)\" y=\"\(y)\" font-size=\"9\" text-anchor=\"end\" transform=\"rotate(-40 \(x) \(y))\">\(name)"
                        + (note.map { " <tspan fill=\"#555\">\($0)</tspan>" } ?? "") + "</text>\n"
                }
            }
        }
        for (i, s) in series.enumerated() { svg += legend(i, name: s.name, colour: palette[i % palette.count]) }
        return svg + "</svg>\n"
    }

    private static func header(title: String, xLabel: String, yLabel: String) -> String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(fmt(left))" y="20" font-size="14" font-weight="bold">\(escape(title))</text>
        <text x="\(fmt(left + (width - left - right) / 2))" y="\(fmt(height - 8))" font-size="12" text-anchor="middle">\(escape(xLabel))</text>
        <text x="14" y="\(fmt(top + (height - top - bottom) / 2))" font-size="12" text-anchor="middle" transform="rotate(-90 14 \(fmt(top + (height - top - bottom) / 2)))">\(escape(yLabel))</text>

        """
    }

    enum XTicks { case none, quarters, integers }

    private static func axes(xMin: Double, xMax: Double, yRange: ClosedRange<Double>, xTicks: XTicks) -> String {
        var svg = "<line x1=\"\(fmt(left))\" y1=\"\(fmt(height - bottom))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(height - bottom))\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(top))\" x2=\"\(fmt(left))\" y2=\"\(fmt(height - bottom))\" stroke=\"black\"/>\n"
        for y in yTicks(yRange) {
            svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(py(y, yRange)))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(py(y, yRange)))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(py(y, yRange) + 4))\" font-size=\"10\" text-anchor=\"end\">\(label(y))</text>\n"
        }
        let ticks: [Double]
        switch xTicks {
        case .none: ticks = []
        case .quarters: ticks = (0...4).map { xMin + Double($0) / 4 * (xMax - xMin) }
        case .integers: ticks = integerTicks(xMin, xMax)
        }
        for x in ticks {
            svg += "<line x1=\"\(fmt(px(x, xMin, xMax)))\" y1=\"\(fmt(height - bottom))\" x2=\"\(fmt(px(x, xMin, xMax)))\" y2=\"\(fmt(height - bottom + 4))\" stroke=\"black\"/>\n"
            svg += "<text x=\"\(fmt(px(x, xMin, xMax)))\" y=\"\(fmt(height - bottom + 16))\" font-size=\"10\" text-anchor=\"middle\">\(label(x))</text>\n"
        }
        return svg
    }

    /// Ticks at multiples of 1, 2 or 5 times a power of ten, about five across the range.
    static func yTicks(_ range: ClosedRange<Double>) -> [Double] {
        let span = range.upperBound - range.lowerBound
        guard span > 0, span.isFinite else { return [range.lowerBound] }
        let magnitude = pow(10, floor(log10(span / 5)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { span / $0 <= 6 } ?? 10 * magnitude
        var ticks = [Double](), y = ceil(range.lowerBound / step - 1e-9) * step
        while y <= range.upperBound + 1e-9 * span { ticks.append(abs(y) < 1e-9 * span ? 0 : y); y += step } // never "-0"
        return ticks
    }

    /// Whole-number ticks from lo to hi at a step of 1, 2 or 5 times a power of ten, at most about 8 of them.
    static func integerTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let span = max(1, hi - lo)
        var step = 1.0, magnitude = 1.0
        search: while true { // 1, 2, 5, 10, 20, 50, ...
            for multiple in [1.0, 2, 5] {
                step = multiple * magnitude
                if span / step <= 8 { break search }
            }
            magnitude *= 10
        }
        var ticks = [Double](), x = ceil(lo / step) * step
        while x <= hi + 1e-9 { ticks.append(x); x += step }
        return ticks
    }

    private static func legend(_ i: Int, name: String, colour: String, dashed: Bool = false) -> String {
        let y = top + 8 + Double(i) * 18
        let mark = dashed
            ? "<line x1=\"\(fmt(width - right + 10))\" y1=\"\(fmt(y - 3))\" x2=\"\(fmt(width - right + 23))\" y2=\"\(fmt(y - 3))\" stroke=\"\(colour)\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"/>"
            : "<rect x=\"\(fmt(width - right + 12))\" y=\"\(fmt(y - 8))\" width=\"10\" height=\"10\" fill=\"\(colour)\"/>"
        return mark + "<text x=\"\(fmt(width - right + 26))\" y=\"\(fmt(y + 1))\" font-size=\"11\">\(escape(name))</text>\n"
    }

    private static func px(_ x: Double, _ lo: Double, _ hi: Double) -> Double { left + (x - lo) / (hi - lo) * (width - left - right) }
    private static func py(_ y: Double, _ r: ClosedRange<Double>) -> Double {
        let clamped = min(max(y, r.lowerBound), r.upperBound)
        return height - bottom - (clamped - r.lowerBound) / (r.upperBound - r.lowerBound) * (height - top - bottom)
    }
    private static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }
    private static func label(_ v: Double) -> String { abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.3g", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
