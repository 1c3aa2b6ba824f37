import Testing
@testable import stepfleet

@Suite struct LoadPacerTests {
    @Test(.timeLimit(.minutes(1))) func aRateSpacesChangesEvenlyWhateverTheEarlierOnesTook() {
        let pacer = LoadPacer(rate: 4, count: 10, duration: nil)
        #expect((0..<5).map(pacer.due) == [0, 0.25, 0.5, 0.75, 1])
        // Behind schedule: no wait, and the schedule does not slip.
        #expect(pacer.wait(before: 4, elapsed: 3) == 0)
        #expect(pacer.wait(before: 8, elapsed: 1.5) == 0.5)
    }

    @Test(.timeLimit(.minutes(1))) func theCountEndsTheRun() {
        let pacer = LoadPacer(rate: nil, count: 3, duration: nil)
        #expect(pacer.sends(2, elapsed: 100))
        #expect(!pacer.sends(3, elapsed: 0))
        #expect(pacer.wait(before: 2, elapsed: 0) == 0)
        #expect(pacer.planned == 3)
    }

    @Test(.timeLimit(.minutes(1))) func aDurationWithARateSendsWhatIsDueWithinIt() {
        let pacer = LoadPacer(rate: 10, count: nil, duration: 2)
        #expect(pacer.sends(19, elapsed: 5))
        #expect(!pacer.sends(20, elapsed: 0))
        #expect(pacer.planned == 20)
        #expect(LoadPacer(rate: 10, count: 5, duration: 2).planned == 5)
    }

    @Test(.timeLimit(.minutes(1))) func aDurationWithoutARateSendsUntilItEnds() {
        let pacer = LoadPacer(rate: nil, count: nil, duration: 2)
        #expect(pacer.sends(1_000_000, elapsed: 1.9))
        #expect(!pacer.sends(0, elapsed: 2))
        #expect(pacer.planned == nil)
    }
}
