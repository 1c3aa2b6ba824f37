import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure StepFleet's moving parts and print the figures.",
        subcommands: [BenchAMQP.self, BenchStep.self, BenchChain.self, BenchDispatcher.self]
    )
}

/// Percentiles of a sample, nearest-rank.
struct Percentiles {
    private let sorted: [Double]

    init(_ samples: [Double]) {
        sorted = samples.sorted()
    }

    func value(_ percentile: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = Int((percentile / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    var median: Double { value(50) }
}

extension Double {
    /// Milliseconds with two decimals.
    var milliseconds: String { String(format: "%.2f ms", self) }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
