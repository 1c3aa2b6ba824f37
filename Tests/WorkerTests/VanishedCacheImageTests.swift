import Testing

@testable import Worker

/// Which build errors mean "a cached layer vanished under this build" (built again) and which
/// are the build's own failures (reported at once).
@Suite struct VanishedCacheImageTests {
    @Test(.timeLimit(.minutes(1))) func aPrunedCacheParentIsRecognised() {
        #expect(VanishedCacheImage.matches(#"unable to find image "sha256:fc72301e7c6780657eb8729ebabe365107e905e5f17ba1275ad62e5e6d025936""#))
        #expect(VanishedCacheImage.matches("No such image: sha256:19a5543384ac6928ee63a9911de708e2f0dfbf40405762a3e878092aaf3bab68"))
    }

    @Test(.timeLimit(.minutes(1))) func theBuildsOwnFailuresAreNot() {
        #expect(!VanishedCacheImage.matches("The command '/bin/sh -c exit 3' returned a non-zero code: 3"))
        // A missing FROM image is the operator's to fix (StepFleet never pulls), not a race.
        #expect(!VanishedCacheImage.matches("pull access denied for nosuchimage, repository does not exist"))
        #expect(!VanishedCacheImage.matches("unable to find image 'nosuch:latest' locally"))
    }
}
