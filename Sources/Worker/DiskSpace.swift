import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Whether there is room to take steps: the free space of each place the worker fills (its
/// work directory with mirrors and checkouts, the engine's root directory with images and
/// container layers) against a minimum. A place that cannot be measured from here (the engine
/// on another host, or its folder not mounted into the worker's container) does not count.
public enum DiskSpace {
    public struct Report: Sendable, Equatable {
        /// True when a measured place has less free space than the minimum.
        public var low: Bool
        /// `path: N MiB free` for each place measured, for the worker's log.
        public var summary: String
    }

    public static func check(_ paths: [String], minimum: Int64, freeBytes: (String) -> Int64?) -> Report {
        var low = false
        var parts: [String] = []
        for path in paths {
            guard let free = freeBytes(path) else {
                parts.append("\(path): not measurable here")
                continue
            }
            parts.append("\(path): \(free >> 20) MiB free")
            if minimum > 0, free < minimum { low = true }
        }
        return Report(low: low, summary: parts.joined(separator: ", ") + " (minimum \(minimum >> 20) MiB)")
    }

    /// Free bytes for an unprivileged writer on the file system of `path`, nil when it cannot
    /// be measured (no such folder here).
    public static func freeBytes(_ path: String) -> Int64? {
        var status = statvfs()
        guard statvfs(path, &status) == 0 else { return nil }
        return Int64(status.f_bavail) * Int64(status.f_frsize)
    }
}
