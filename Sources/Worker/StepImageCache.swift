import Foundation
import Protocol

/// How many step images an engine keeps, and for how long an image stays after its last use.
public struct ImageCachePolicy: Sendable, Hashable {
    /// Images of the step repository kept, the most recently used first; 0 keeps them all.
    public var keep: Int
    /// An image used (built or reused) this recently is never removed: another worker on the
    /// same engine may be about to run it.
    public var idle: Duration
    /// How often the worker prunes.
    public var interval: Duration

    public init(keep: Int = 200, idle: Duration = .seconds(600), interval: Duration = .seconds(300)) {
        self.keep = keep
        self.idle = idle
        self.interval = interval
    }
}

/// Keeps an engine's step images within a policy. "Last used" is the image's `LastTagTime`,
/// which the builder moves by tagging an image again whenever it reuses one, so every worker
/// on the engine sees the same use times without sharing anything else. The least recently
/// used images past `keep` go, with their build-cache parents, unless used within `idle` or
/// used by a container (the engine refuses those; they are tried again next time).
public struct StepImageCache: Sendable {
    public let engine: DockerEngine
    public let repository: String

    public init(engine: DockerEngine, repository: String) {
        self.engine = engine
        self.repository = repository
    }

    public struct Report: Sendable, Equatable {
        public var removed: [String] = []
        /// Over the limit but kept: recently used or in use by a container.
        public var spared = 0
        public var kept = 0
    }

    public func prune(_ policy: ImageCachePolicy, now: Date = Date()) async throws(DockerError) -> Report {
        var report = Report()
        let tags = try await engine.imageTags(repository: repository)
        guard policy.keep > 0, tags.count > policy.keep else {
            report.kept = tags.count
            return report
        }
        var used: [(tag: String, at: Date)] = []
        for tag in tags {
            guard let image = try await engine.inspectImage(tag) else { continue }
            used.append((tag, Self.lastUsed(image) ?? .distantPast))
        }
        used.sort { $0.at > $1.at }
        report.kept = min(policy.keep, used.count)
        let idleSeconds = Double(Clock.milliseconds(policy.idle)) / 1000
        // One image at a time, and only while no build on this engine runs: a removal takes
        // the image's untagged cache parents, which a running build may have just used.
        let lock = StepImageLock(engineSocket: engine.socketPath)
        for (tag, at) in used.dropFirst(policy.keep) {
            if now.timeIntervalSince(at) < idleSeconds {
                report.spared += 1
                continue
            }
            let removal: Result<Void, DockerError>? = await lock.exclusiveIfFree {
                do throws(DockerError) {
                    try await engine.removeImage(tag, force: false)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            switch removal {
            case .success?:
                report.removed.append(tag)
            case nil:
                report.spared += 1
            case .failure(let error)?:
                guard error.status == 409 else { throw error }
                report.spared += 1
            }
        }
        return report
    }

    /// The later of the image's creation and its last tagging.
    static func lastUsed(_ image: JSON) -> Date? {
        [image["Created"]?.stringValue, image["Metadata"]?["LastTagTime"]?.stringValue].compactMap { $0.flatMap(parseTime) }.max()
    }

    /// An RFC 3339 time as the engine writes it, with its fraction (nanoseconds) and zone (`Z`
    /// or `+01:00`). Times before 1970 (the engine's zero time) mean "never".
    static func parseTime(_ text: String) -> Date? {
        guard text.count >= 20 else { return nil }
        var rest = text.dropFirst(19)
        var fraction = 0.0
        if rest.first == "." {
            let digits = rest.dropFirst().prefix { $0.isNumber }
            fraction = Double("0." + digits) ?? 0
            rest = rest.dropFirst(1 + digits.count)
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        guard let date = formatter.date(from: String(text.prefix(19) + rest)), date.timeIntervalSince1970 > 0 else { return nil }
        return date.addingTimeInterval(fraction)
    }
}
