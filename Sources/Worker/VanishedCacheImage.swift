/// A build that failed because an image of its cache chain disappeared while it ran.
///
/// Workers on one host share the engine's images; one worker's step image prune removes an
/// image with its untagged build-cache parents, and a build on another worker that had just
/// taken one of those parents from the cache ("Using cache") then fails with the engine's
/// `unable to find image "sha256:…"` (seen in `ops/chaos cluster-node-loss`: 3 changes of 50
/// failed so). The same build started again finds the cache without that layer and makes it.
enum VanishedCacheImage {
    /// Builds tried in all, the first included.
    static let attempts = 3

    /// True when the engine's build error says an image it had just used is gone.
    static func matches(_ message: String) -> Bool {
        let lowered = message.lowercased()
        return (lowered.contains("unable to find image") || lowered.contains("no such image")) && lowered.contains("sha256:")
    }
}
