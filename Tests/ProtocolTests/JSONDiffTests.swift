import PropertyBased
import Testing
@testable import Protocol

@Suite(.timeLimit(.minutes(2))) struct JSONDiffTests {
    @Test func diffOfRelatedDocumentsApplies() async {
        await propertyCheck(count: 2000, input: RandomJSON.relatedPairs) { pair in
            let patch = JSONPatch.diff(from: pair.old, to: pair.new)
            #expect((try? patch.apply(to: pair.old)) == pair.new, "\(pair)\npatch: \(patch.json)")
            if pair.old == pair.new { #expect(patch.isEmpty) }
        }
    }

    @Test func diffOfUnrelatedDocumentsApplies() async {
        await propertyCheck(count: 1000, input: RandomJSON.documents, RandomJSON.documents) { old, new in
            let patch = JSONPatch.diff(from: old, to: new)
            #expect((try? patch.apply(to: old)) == new, "old: \(old)\nnew: \(new)\npatch: \(patch.json)")
        }
    }

    @Test func diffSurvivesSerialization() async {
        await propertyCheck(count: 500, input: RandomJSON.relatedPairs) { pair in
            let text = JSONPatch.diff(from: pair.old, to: pair.new).json.serialized()
            #expect((try? JSONPatch(text: text).apply(to: pair.old)) == pair.new)
        }
    }

    @Test func aDeepChangeIsOneOperationAtItsPath() throws {
        let old = try JSON.parse(#"{"app":{"db":{"host":"a","port":5432},"name":"x"},"list":[1,2,3]}"#)
        let new = try JSON.parse(#"{"app":{"db":{"host":"b","port":5432},"name":"x"},"list":[1,2,3]}"#)
        #expect(JSONPatch.diff(from: old, to: new).json == (try JSON.parse(#"[{"op":"replace","path":"/app/db/host","value":"b"}]"#)))
    }

    @Test func arrayAppendsRemovalsAndChangesAreElementOperations() throws {
        func diff(_ old: String, _ new: String) throws -> String {
            JSONPatch.diff(from: try JSON.parse(old), to: try JSON.parse(new)).json.serialized()
        }
        #expect(try diff("[1,2,3]", "[1,2,3,4]") == #"[{"op":"add","path":"/-","value":4}]"#)
        #expect(try diff("[1,2,3]", "[0,1,2,3]") == #"[{"op":"add","path":"/0","value":0}]"#)
        #expect(try diff("[1,2,3]", "[1,3]") == #"[{"op":"remove","path":"/1"}]"#)
        #expect(try diff(#"[{"id":1,"v":"a"},{"id":2,"v":"b"}]"#, #"[{"id":1,"v":"a"},{"id":2,"v":"c"}]"#) == #"[{"op":"replace","path":"/1/v","value":"c"}]"#)
        #expect(try diff("[1,2,3,4,5]", "[1,9,3,5]") == #"[{"op":"replace","path":"/1","value":9},{"op":"remove","path":"/3"}]"#)
    }

    @Test func typeChangesAndKeysNeedingEscapes() throws {
        let old = try JSON.parse(#"{"a/b":{"m~n":1},"t":[1]}"#)
        let new = try JSON.parse(#"{"a/b":{"m~n":2},"t":{"0":1}}"#)
        let patch = JSONPatch.diff(from: old, to: new)
        #expect(patch.json == (try JSON.parse(#"[{"op":"replace","path":"/a~1b/m~0n","value":2},{"op":"replace","path":"/t","value":{"0":1}}]"#)))
        #expect(try patch.apply(to: old) == new)
    }

    @Test func largeArraysFallBackButStayCorrect() throws {
        let old = JSON.array((0..<700).map { JSON($0) })
        let new = JSON.array((0..<700).map { JSON($0 % 7 == 0 ? -$0 : $0) }.reversed())
        #expect(try JSONPatch.diff(from: old, to: new).apply(to: old) == new)
    }
}
