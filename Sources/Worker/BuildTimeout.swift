import Protocol

/// How long a step's image build may take: the worker's `--build-timeout`, or less when the
/// properties ask for less with `opschain.config.build_timeout` (seconds). A request for more
/// is held to the worker's limit: the worker's operator bounds what a slot can be held for.
public enum BuildTimeout {
    /// The timeout, and a note for the step's log when the request was cut down.
    public static func resolve(_ properties: JSON, maximum: Duration) throws(StepFailure) -> (timeout: Duration, note: String?) {
        guard let value = properties["opschain"]?["config"]?["build_timeout"], value != .null else { return (maximum, nil) }
        guard let seconds = value.intValue, seconds > 0 else {
            throw StepFailure("opschain.config.build_timeout must be a positive whole number of seconds, not \(value.serialized())")
        }
        let limit = maximum.components.seconds
        guard Int64(seconds) <= limit else {
            return (maximum, "build: opschain.config.build_timeout asks for \(seconds) s; this worker allows at most \(limit) s (--build-timeout)")
        }
        return (.seconds(seconds), nil)
    }
}
