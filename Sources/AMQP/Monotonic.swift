#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic time in milliseconds (never goes back, unlike the wall clock).
enum Monotonic {
    static var milliseconds: UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
    }
}
