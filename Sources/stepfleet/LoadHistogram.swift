import Foundation
import Histogram
import Protocol

/// Latencies in an HDR histogram (microsecond resolution, three significant digits, up to an
/// hour), read back as milliseconds: what `stepfleet load` and `stepfleet bench dispatcher`
/// report as p50 / p95 / p99 / max.
struct LoadHistogram: Sendable {
    private var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// Samples outside the trackable range (negative or over an hour): counted, not recorded.
    private(set) var outOfRange = 0

    init() {}

    init(milliseconds samples: [Double]) {
        for sample in samples { record(milliseconds: sample) }
    }

    mutating func record(milliseconds value: Double) {
        guard value.isFinite, value >= 0, histogram.record(UInt64((value * 1000).rounded())) else {
            outOfRange += 1
            return
        }
    }

    mutating func add(_ other: LoadHistogram) {
        histogram.add(other.histogram)
        outOfRange += other.outOfRange
    }

    var count: Int { Int(histogram.totalCount) }

    /// The value at `percentile` (0-100) in milliseconds; nil when empty.
    func milliseconds(at percentile: Double) -> Double? {
        guard count > 0 else { return nil }
        return Double(histogram.valueAtPercentile(percentile)) / 1000
    }

    var maximum: Double? { count > 0 ? Double(histogram.max) / 1000 : nil }

    var summary: LatencySummary {
        LatencySummary(
            count: count, p50: milliseconds(at: 50), p95: milliseconds(at: 95), p99: milliseconds(at: 99), max: maximum, outOfRange: outOfRange)
    }
}

/// p50 / p95 / p99 / max in milliseconds (nil without samples), and how many samples.
struct LatencySummary: Sendable, Equatable {
    var count: Int
    var p50: Double?
    var p95: Double?
    var p99: Double?
    var max: Double?
    var outOfRange = 0

    var json: JSON {
        func ms(_ value: Double?) -> JSON { value.map { loadJSONNumber($0, decimals: 3) } ?? .null }
        return ["count": JSON(count), "p50_ms": ms(p50), "p95_ms": ms(p95), "p99_ms": ms(p99), "max_ms": ms(max), "out_of_range": JSON(outOfRange)]
    }

    /// `p50 12.3 ms  p95 …` on one line.
    var line: String {
        func ms(_ value: Double?) -> String { value.map { String(format: "%.1f ms", $0) } ?? "-" }
        return "p50 \(ms(p50))  p95 \(ms(p95))  p99 \(ms(p99))  max \(ms(max))  (\(count) samples)"
    }
}

/// A number for a report, rounded to `decimals` places.
func loadJSONNumber(_ value: Double, decimals: Int = 3) -> JSON {
    guard value.isFinite else { return .null }
    let scale = pow(10, Double(decimals))
    return .number(JSONNumber((value * scale).rounded() / scale))
}
