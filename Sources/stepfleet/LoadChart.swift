import Foundation

/// The picture of a `stepfleet load` run, as a self-contained SVG (no scripts, fonts or
/// other files): throughput over time above, latency over time below, with the run's figures
/// in the title.
enum LoadChart {
    struct Series {
        var name: String
        var color: String
        var dashed = false
        /// (seconds from the start, value); nil values break the line.
        var points: [(Double, Double?)]
    }

    static let width = 960.0
    static let height = 640.0
    static let left = 70.0
    static let right = 200.0
    static let plotWidth = width - left - right

    static func svg(_ report: LoadReport) -> String {
        let buckets = report.buckets
        let mid: (LoadReport.Bucket) -> Double = { $0.start + $0.seconds / 2 }
        let throughput = [
            Series(name: "steps finished/s", color: "#1f77b4", points: buckets.map { (mid($0), Double($0.stepsFinished) / $0.seconds) }),
            Series(name: "changes finished/s", color: "#2ca02c", points: buckets.map { (mid($0), Double($0.changesFinished) / $0.seconds) }),
            Series(name: "changes created/s", color: "#7f7f7f", dashed: true, points: buckets.map { (mid($0), Double($0.submitted) / $0.seconds) }),
        ]
        // Seconds once the latencies reach ten of them: "1500k ms" reads badly.
        let longest = buckets.flatMap { [$0.changeLatency.p99, $0.queueLatency.p99] }.compactMap { $0 }.max() ?? 0
        let (unit, divisor) = longest >= 10_000 ? ("s", 1000.0) : ("ms", 1.0)
        let scaled: (Double?) -> Double? = { $0.map { $0 / divisor } }
        let latency = [
            Series(name: "change p99", color: "#d62728", points: buckets.map { (mid($0), scaled($0.changeLatency.p99)) }),
            Series(name: "change p50", color: "#ff7f0e", points: buckets.map { (mid($0), scaled($0.changeLatency.p50)) }),
            Series(name: "queue p99", color: "#9467bd", dashed: true, points: buckets.map { (mid($0), scaled($0.queueLatency.p99)) }),
            Series(name: "queue p50", color: "#8c564b", dashed: true, points: buckets.map { (mid($0), scaled($0.queueLatency.p50)) }),
        ]
        let xMax = max(buckets.last.map { $0.start + $0.seconds } ?? 1, 1)
        var body: [String] = []
        body.append(##"<rect x="0" y="0" width="\##(format(width))" height="\##(format(height))" fill="#ffffff"/>"##)
        body.append(text(left, 28, "stepfleet load: \(report.settings.project) via \(report.settings.via), \(report.submitted) changes submitted", size: 18, weight: "bold"))
        body.append(text(left, 50, subtitle(report), size: 12, color: "#333333"))
        body += panel(title: "Throughput (per second, \(format(report.buckets.first?.seconds ?? 1)) s windows)", unit: "per s", top: 80, height: 220, xMax: xMax, series: throughput)
        body += panel(title: "Latency (\(unit)): change = create → final, queue = enqueue → claim", unit: unit, top: 360, height: 220, xMax: xMax, series: latency)
        body.append(text(left + plotWidth / 2, height - 18, "seconds since the first change was created", size: 12, anchor: "middle", color: "#333333"))
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(format(width))" height="\(format(height))" viewBox="0 0 \(format(width)) \(format(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
            <title>\(escape("stepfleet load: " + subtitle(report)))</title>
            \(body.joined(separator: "\n"))
            </svg>

            """
    }

    static func subtitle(_ report: LoadReport) -> String {
        func ms(_ value: Double?) -> String { value.map { $0 >= 1000 ? String(format: "%.2f s", $0 / 1000) : String(format: "%.0f ms", $0) } ?? "-" }
        return String(format: "%.2f changes/s, %.2f steps/s over %.0f s", report.changesPerSecond, report.stepsPerSecond, report.windowSeconds)
            + "; change p50 \(ms(report.changeLatency.p50)) p99 \(ms(report.changeLatency.p99)); queue p50 \(ms(report.queueLatency.p50)) p99 \(ms(report.queueLatency.p99))"
            + "; \(LoadReport.counts(report.changes))"
    }

    /// One chart: frame, grid with labelled ticks, a line per series and its legend.
    static func panel(title: String, unit: String, top: Double, height: Double, xMax: Double, series: [Series]) -> [String] {
        let yMaxValue = series.flatMap { $0.points.compactMap(\.1) }.max() ?? 0
        let yTicks = ticks(upTo: yMaxValue)
        let xTicks = ticks(upTo: xMax)
        let yMax = yTicks.last ?? 1
        let xScale = xTicks.last ?? xMax
        func x(_ value: Double) -> Double { left + plotWidth * value / xScale }
        func y(_ value: Double) -> Double { top + height - height * value / yMax }
        var out: [String] = []
        out.append(text(left, top - 8, title, size: 13, weight: "bold"))
        for tick in yTicks {
            out.append(line(left, y(tick), left + plotWidth, y(tick), color: "#e5e5e5"))
            out.append(text(left - 6, y(tick) + 4, label(tick), size: 11, anchor: "end", color: "#333333"))
        }
        for tick in xTicks {
            out.append(line(x(tick), top, x(tick), top + height, color: "#f0f0f0"))
            out.append(text(x(tick), top + height + 16, label(tick), size: 11, anchor: "middle", color: "#333333"))
        }
        out.append(##"<rect x="\##(format(left))" y="\##(format(top))" width="\##(format(plotWidth))" height="\##(format(height))" fill="none" stroke="#666666"/>"##)
        out.append(text(left - 52, top + height / 2, unit, size: 11, anchor: "middle", color: "#333333"))
        for (index, item) in series.enumerated() {
            for segment in segments(item.points) where !segment.isEmpty {
                let points = segment.map { "\(format(x($0.0))),\(format(y($0.1)))" }.joined(separator: " ")
                let dash = item.dashed ? ##" stroke-dasharray="6 4""## : ""
                if segment.count == 1 {
                    out.append(##"<circle cx="\##(format(x(segment[0].0)))" cy="\##(format(y(segment[0].1)))" r="2.5" fill="\##(item.color)"/>"##)
                } else {
                    out.append(##"<polyline points="\##(points)" fill="none" stroke="\##(item.color)" stroke-width="2"\##(dash)/>"##)
                }
            }
            let legendY = top + 14 + Double(index) * 20
            let dash = item.dashed ? ##" stroke-dasharray="6 4""## : ""
            out.append(##"<line x1="\##(format(left + plotWidth + 14))" y1="\##(format(legendY - 4))" x2="\##(format(left + plotWidth + 40))" y2="\##(format(legendY - 4))" stroke="\##(item.color)" stroke-width="2"\##(dash)/>"##)
            out.append(text(left + plotWidth + 46, legendY, item.name, size: 12))
        }
        return out
    }

    /// Runs of consecutive points with values.
    static func segments(_ points: [(Double, Double?)]) -> [[(Double, Double)]] {
        var result: [[(Double, Double)]] = [[]]
        for (x, value) in points {
            if let value { result[result.count - 1].append((x, value)) } else if !result[result.count - 1].isEmpty { result.append([]) }
        }
        return result
    }

    /// 0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to at least `maximum`, five or six of them.
    static func ticks(upTo maximum: Double) -> [Double] {
        guard maximum > 0, maximum.isFinite else { return [0, 1] }
        let rough = maximum / 6
        let power = pow(10, (log10(rough)).rounded(.down))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * power }.first { $0 >= rough } ?? 10 * power
        var values: [Double] = [0]
        while values.last! < maximum - step * 1e-9 { values.append(values.last! + step) }
        return values
    }

    static func label(_ value: Double) -> String {
        if value >= 10_000 { return String(format: "%.0fk", value / 1000) }
        return value == value.rounded() ? String(format: "%.0f", value) : String(format: "%g", value)
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, color: String) -> String {
        ##"<line x1="\##(format(x1))" y1="\##(format(y1))" x2="\##(format(x2))" y2="\##(format(y2))" stroke="\##(color)" stroke-width="1"/>"##
    }

    static func text(_ x: Double, _ y: Double, _ content: String, size: Int, anchor: String = "start", weight: String = "normal", color: String = "#000000") -> String {
        ##"<text x="\##(format(x))" y="\##(format(y))" font-size="\##(size)" text-anchor="\##(anchor)" font-weight="\##(weight)" fill="\##(color)">\##(escape(content))</text>"##
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
