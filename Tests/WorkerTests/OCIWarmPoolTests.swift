import Foundation
import Testing
@testable import Worker

/// The warm pool's bookkeeping: at most `capacity` containers, for the images used last, each
/// taken once, none made again for a key that failed, none after the pool closed.
@Suite(.timeLimit(.minutes(1))) struct OCIWarmPoolTests {
    static func key(_ image: String, user: String = "opschain") -> OCIWarmPool.Key {
        OCIWarmPool.Key(imageID: image, imageUser: user, limits: ContainerLimits())
    }

    static func entry(_ key: OCIWarmPool.Key, _ id: String) -> OCIWarmPool.Entry {
        OCIWarmPool.Entry(key: key, id: id, made: Task { nil })
    }

    @Test func anEntryIsTakenOnceAndOnlyByItsKey() {
        let pool = OCIWarmPool(capacity: 2)
        #expect(pool.add(Self.entry(Self.key("a"), "1")).isEmpty)
        #expect(pool.take(Self.key("a", user: "root")) == nil)
        #expect(pool.take(Self.key("b")) == nil)
        #expect(pool.take(Self.key("a"))?.id == "1")
        #expect(pool.take(Self.key("a")) == nil)
    }

    @Test func theImageUsedLastPushesOutTheOldest() {
        let pool = OCIWarmPool(capacity: 2)
        #expect(pool.wants(Self.key("a")))
        _ = pool.add(Self.entry(Self.key("a"), "1"))
        _ = pool.add(Self.entry(Self.key("a"), "2"))
        #expect(!pool.wants(Self.key("a")), "two of a already")
        #expect(pool.wants(Self.key("b")))
        #expect(pool.add(Self.entry(Self.key("b"), "3")).map(\.id) == ["1"])
        #expect(pool.count == 2)
        // Full of its own key: the new entry itself is handed back to be removed.
        let crowded = OCIWarmPool(capacity: 1)
        _ = crowded.add(Self.entry(Self.key("a"), "1"))
        #expect(crowded.add(Self.entry(Self.key("a"), "2")).map(\.id) == ["2"])
    }

    @Test func aFailedKeyAndAClosedPoolGetNoMore() {
        let pool = OCIWarmPool(capacity: 2)
        pool.failed(Self.key("a"))
        #expect(!pool.wants(Self.key("a")))
        #expect(pool.wants(Self.key("a", user: "root")))
        _ = pool.add(Self.entry(Self.key("b"), "1"))
        #expect(pool.remove(id: "1")?.id == "1")
        #expect(pool.remove(id: "1") == nil, "a removed or taken entry is not removed again")
        _ = pool.add(Self.entry(Self.key("b"), "2"))
        #expect(pool.close().map(\.id) == ["2"])
        #expect(!pool.wants(Self.key("b")))
        #expect(pool.add(Self.entry(Self.key("b"), "3")).map(\.id) == ["3"])
        #expect(pool.count == 0)
        #expect(!OCIWarmPool(capacity: 0).wants(Self.key("a")))
    }
}
