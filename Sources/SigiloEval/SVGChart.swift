import Foundation

/// Small, dependency-free SVG charts for the evaluation reports.
enum SVGChart {
    static let width = 640.0, height = 360.0
    static let left = 60.0, right = 150.0, top = 36.0, bottom = 48.0
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]

    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    /// Lines over a shared x axis.
    static func lines(title: String, xLabel: String, yLabel: String, series: [Series], yRange: ClosedRange<Double>? = nil) -> String {
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
        let xMin = xs.min() ?? 0, xMax = max(xs.max() ?? 1, xMin + 1e-9)
        let range = yRange ?? ((ys.min() ?? 0)...max(ys.max() ?? 1, (ys.min() ?? 0) + 1e-9))
        var svg = header(title: title, xLabel: xLabel, yLabel: yLabel)
        svg += axes(xMin: xMin, xMax: xMax, yRange: range)
        for (i, s) in series.enumerated() where !s.points.isEmpty {
            let colour = palette[i % palette.count]
            let path = s.points.map { "\(fmt(px($0.x, xMin, xMax))),\(fmt(py($0.y, range)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for p in s.points where s.points.count <= 12 {
                svg += "<circle cx=\"\(fmt(px(p.x, xMin, xMax)))\" cy=\"\(fmt(py(p.y, range)))\" r=\"3\" fill=\"\(colour)\"/>\n"
            }
            svg += legend(i, name: s.name, colour: colour)
        }
        return svg + "</svg>\n"
    }

    /// Grouped bars: one group per category, one bar per series.
    static func bars(title: String, yLabel: String, categories: [String], series: [Series], yRange: ClosedRange<Double> = 0...1) -> String {
        var svg = header(title: title, xLabel: "", yLabel: yLabel)
        svg += axes(xMin: 0, xMax: 1, yRange: yRange, xTicks: false)
        let plotWidth = width - left - right
        let group = plotWidth / Double(max(1, categories.count))
        let bar = group * 0.8 / Double(max(1, series.count))
        for (c, category) in categories.enumerated() {
            let x0 = left + Double(c) * group + group * 0.1
            for (i, s) in series.enumerated() where c < s.points.count {
                let y = py(s.points[c].y, yRange)
                svg += "<rect x=\"\(fmt(x0 + Double(i) * bar))\" y=\"\(fmt(y))\" width=\"\(fmt(bar))\" height=\"\(fmt(height - bottom - y))\" fill=\"\(palette[i % palette.count])\"/>\n"
            }
            if categories.count <= 24 {
                svg += "<text x=\"\(fmt(x0 + group * 0.4))\" y=\"\(fmt(height - bottom + 14))\" font-size=\"10\" text-anchor=\"middle\">\(escape(category))</text>\n"
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

    private static func axes(xMin: Double, xMax: Double, yRange: ClosedRange<Double>, xTicks: Bool = true) -> String {
        var svg = "<line x1=\"\(fmt(left))\" y1=\"\(fmt(height - bottom))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(height - bottom))\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(top))\" x2=\"\(fmt(left))\" y2=\"\(fmt(height - bottom))\" stroke=\"black\"/>\n"
        for k in 0...4 {
            let y = yRange.lowerBound + Double(k) / 4 * (yRange.upperBound - yRange.lowerBound)
            svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(py(y, yRange)))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(py(y, yRange)))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(py(y, yRange) + 4))\" font-size=\"10\" text-anchor=\"end\">\(label(y))</text>\n"
            if xTicks {
                let x = xMin + Double(k) / 4 * (xMax - xMin)
                svg += "<text x=\"\(fmt(px(x, xMin, xMax)))\" y=\"\(fmt(height - bottom + 14))\" font-size=\"10\" text-anchor=\"middle\">\(label(x))</text>\n"
            }
        }
        return svg
    }

    private static func legend(_ i: Int, name: String, colour: String) -> String {
        let y = top + 8 + Double(i) * 18
        return "<rect x=\"\(fmt(width - right + 12))\" y=\"\(fmt(y - 8))\" width=\"10\" height=\"10\" fill=\"\(colour)\"/>"
            + "<text x=\"\(fmt(width - right + 26))\" y=\"\(fmt(y + 1))\" font-size=\"11\">\(escape(name))</text>\n"
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
