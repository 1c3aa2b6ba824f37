/// Dispatch latency, derived after a bench run from what the simulated workers saw and what
/// the store holds.
///
/// A step becomes *ready* when the outcome that lets it run is published: its parent's
/// outcome (its children are queued in the transaction applying it), or, for the root of a
/// change that waited behind another on the same environment, the last outcome of that
/// earlier change. Its dispatch latency runs from then until a simulated worker holds its job:
/// the outcome's trip through the broker, the dispatcher's transaction, the outbox publish
/// with its confirm, and the job's trip to the worker. The first change of each environment
/// has no such moment (it is queued when the run starts) and is left out.
struct BenchDispatcherLatency {
    struct Step: Sendable, Equatable {
        var id: String
        var changeId: String
        var parentId: String?
    }

    struct Change: Sendable, Equatable {
        var id: String
        var environment: String
        /// Creation order.
        var seq: Int
    }

    /// Dispatch latencies in nanoseconds, and how many steps had no ready moment (first
    /// changes' roots) or no delivery or ready time recorded.
    struct Result: Sendable, Equatable {
        var samples: [UInt64]
        var firstRoots: Int
        var missing: Int
    }

    /// `outcomeSent` and `delivered` are per step id, on one monotonic clock (nanoseconds).
    static func derive(steps: [Step], changes: [Change], outcomeSent: [String: UInt64], delivered: [String: UInt64]) -> Result {
        var stepsOfChange: [String: [String]] = [:]
        for step in steps { stepsOfChange[step.changeId, default: []].append(step.id) }
        var previous: [String: String] = [:]
        for group in Dictionary(grouping: changes, by: \.environment).values {
            let ordered = group.sorted { $0.seq < $1.seq }
            for (earlier, later) in zip(ordered, ordered.dropFirst()) { previous[later.id] = earlier.id }
        }
        var result = Result(samples: [], firstRoots: 0, missing: 0)
        result.samples.reserveCapacity(steps.count)
        for step in steps {
            let ready: UInt64?
            if let parent = step.parentId {
                ready = outcomeSent[parent]
            } else if let before = previous[step.changeId] {
                ready = (stepsOfChange[before] ?? []).compactMap { outcomeSent[$0] }.max()
            } else {
                result.firstRoots += 1
                continue
            }
            guard let ready, let got = delivered[step.id], got >= ready else {
                result.missing += 1
                continue
            }
            result.samples.append(got - ready)
        }
        return result
    }

    /// Steps per second over the middle of the run: outcomes between the `trim` and 1 - `trim`
    /// quantiles of their times, over the time between them (ramp-up and tail left out).
    static func sustainedRate(_ times: [UInt64], trim: Double = 0.1) -> Double? {
        guard times.count >= 10 else { return nil }
        let sorted = times.sorted()
        let low = Int(Double(sorted.count - 1) * trim)
        let high = Int(Double(sorted.count - 1) * (1 - trim))
        guard high > low, sorted[high] > sorted[low] else { return nil }
        return Double(high - low) / (Double(sorted[high] - sorted[low]) / 1e9)
    }
}
