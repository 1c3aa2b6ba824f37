import Testing
@testable import Protocol

/// RFC 6902 appendix A and the edge cases the RFC spells out.
@Suite(.timeLimit(.minutes(1))) struct JSONPatchTests {
    private func apply(_ document: String, _ patch: String) throws -> JSON {
        try JSONPatch(text: patch).apply(to: JSON.parse(document))
    }

    private func expectResult(_ document: String, _ patch: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try apply(document, patch) == JSON.parse(expected), sourceLocation: sourceLocation)
    }

    private func expectFailure(_ document: String, _ patch: String, contains text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let result = try apply(document, patch)
            Issue.record("expected failure, got \(result)", sourceLocation: sourceLocation)
        } catch let error as JSONPatchError {
            #expect(error.description.contains(text), "\(error.description)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func appendixA() throws {
        try expectResult(#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux"}]"#, #"{"baz":"qux","foo":"bar"}"#)
        try expectResult(#"{"foo":["bar","baz"]}"#, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, #"{"foo":["bar","qux","baz"]}"#)
        try expectResult(#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"remove","path":"/baz"}]"#, #"{"foo":"bar"}"#)
        try expectResult(#"{"foo":["bar","qux","baz"]}"#, #"[{"op":"remove","path":"/foo/1"}]"#, #"{"foo":["bar","baz"]}"#)
        try expectResult(#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"replace","path":"/baz","value":"boo"}]"#, #"{"baz":"boo","foo":"bar"}"#)
        try expectResult(
            #"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#,
            #"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#,
            #"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#)
        try expectResult(#"{"foo":["all","grass","cows","eat"]}"#, #"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#, #"{"foo":["all","cows","eat","grass"]}"#)
        try expectResult(
            #"{"baz":"qux","foo":["a",2,"c"]}"#,
            #"[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]"#,
            #"{"baz":"qux","foo":["a",2,"c"]}"#)
        expectFailure(#"{"baz":"qux"}"#, #"[{"op":"test","path":"/baz","value":"bar"}]"#, contains: "test failed")
        try expectResult(#"{"foo":"bar"}"#, #"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#, #"{"foo":"bar","child":{"grandchild":{}}}"#)
        // A.11: unknown members are ignored.
        try expectResult(#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux","xyz":123}]"#, #"{"foo":"bar","baz":"qux"}"#)
        expectFailure(#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz/bat","value":"qux"}]"#, contains: "parent path does not exist")
        try expectResult(#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":10}]"#, #"{"/":9,"~1":10}"#)
        expectFailure(#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":"10"}]"#, contains: "test failed")
        try expectResult(#"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#, #"{"foo":["bar",["abc","def"]]}"#)
    }

    @Test func addAtArrayLengthAppendsAndBeyondFails() throws {
        try expectResult(#"[1,2]"#, #"[{"op":"add","path":"/2","value":3}]"#, "[1,2,3]")
        expectFailure(#"[1,2]"#, #"[{"op":"add","path":"/3","value":3}]"#, contains: "beyond the end")
    }

    @Test func leadingZerosAreNotIndices() {
        expectFailure(#"[1,2,3]"#, #"[{"op":"replace","path":"/01","value":0}]"#, contains: "does not exist")
        expectFailure(#"[1,2,3]"#, #"[{"op":"add","path":"/01","value":0}]"#, contains: "not a valid array index")
        expectFailure(#"[1,2,3]"#, #"[{"op":"remove","path":"/-"}]"#, contains: "not a valid array index")
    }

    @Test func moveIntoOwnChildIsAnError() throws {
        expectFailure(#"{"a":{"b":{}}}"#, #"[{"op":"move","from":"/a","path":"/a/b/c"}]"#, contains: "own child")
        try expectResult(#"{"a":1}"#, #"[{"op":"move","from":"/a","path":"/a"}]"#, #"{"a":1}"#)
    }

    @Test func copyAndRootOperations() throws {
        try expectResult(#"{"a":{"x":[1]}}"#, #"[{"op":"copy","from":"/a","path":"/b"}]"#, #"{"a":{"x":[1]},"b":{"x":[1]}}"#)
        try expectResult(#"{"a":1}"#, #"[{"op":"replace","path":"","value":[1]}]"#, "[1]")
        try expectResult(#"{"a":1}"#, #"[{"op":"add","path":"","value":{"b":2}}]"#, #"{"b":2}"#)
        expectFailure(#"{"a":1}"#, #"[{"op":"remove","path":""}]"#, contains: "whole document")
        expectFailure(#"{"a":1}"#, #"[{"op":"copy","from":"/nope","path":"/b"}]"#, contains: "\"from\" location")
    }

    @Test func testComparesByJSONEquality() throws {
        try expectResult(#"{"a":{"x":1.0,"y":[1,{"z":null}]}}"#, #"[{"op":"test","path":"/a","value":{"y":[1,{"z":null}],"x":1}}]"#, #"{"a":{"x":1.0,"y":[1,{"z":null}]}}"#)
        expectFailure(#"{"a":[1,2]}"#, #"[{"op":"test","path":"/a","value":[2,1]}]"#, contains: "test failed")
        expectFailure(#"{"a":1}"#, #"[{"op":"test","path":"/b","value":1}]"#, contains: "nothing at the path")
    }

    /// Three operations, the first two good, the last one failing: the call throws, naming the
    /// last one, and returns nothing of the first two (a caller keeps its document as it was).
    @Test func aPatchWhoseLastOperationFailsIsRefusedWhole() throws {
        var document = try JSON.parse(#"{"a":1,"list":[1,2]}"#)
        let patch = try JSONPatch(text: #"[{"op":"add","path":"/b","value":2},{"op":"remove","path":"/list/0"},{"op":"remove","path":"/zzz"}]"#)
        var partial: JSON?
        #expect(throws: JSONPatchError(operationIndex: 2, operation: "remove", path: "/zzz", reason: "path does not exist: no member \"zzz\"")) {
            partial = try patch.apply(to: document)
            document = partial!
        }
        #expect(partial == nil, "a partly applied document came back: \(partial.map { "\($0)" } ?? "")")
        #expect(try document == JSON.parse(#"{"a":1,"list":[1,2]}"#))
        // The same patch without its failing operation does apply: the refusal is the last one's.
        #expect(try JSONPatch(text: #"[{"op":"add","path":"/b","value":2},{"op":"remove","path":"/list/0"}]"#).apply(to: document) == JSON.parse(#"{"a":1,"b":2,"list":[2]}"#))
    }

    @Test func malformedPatchesAreRefusedWithReasons() {
        expectFailure("{}", #"{"op":"add"}"#, contains: "must be a JSON array")
        expectFailure("{}", #"[{"path":"/a"}]"#, contains: "member \"op\"")
        expectFailure("{}", #"[{"op":"jump","path":"/a"}]"#, contains: "unknown operation \"jump\"")
        expectFailure("{}", #"[{"op":"add","path":"/a"}]"#, contains: "missing member \"value\"")
        expectFailure("{}", #"[{"op":"move","path":"/a"}]"#, contains: "member \"from\"")
        expectFailure("{}", #"[{"op":"add","path":"a","value":1}]"#, contains: "must be empty or start with '/'")
        expectFailure("{}", #"[{"op":"add","path":"/a~2","value":1}]"#, contains: "'~' not followed")
        expectFailure("{}", #"[1]"#, contains: "must be an object")
        expectFailure("{}", #"[{"op":"add","path":"/a","value":1}"#, contains: "invalid JSON")
    }

    @Test func nullValuesAreValues() throws {
        try expectResult(#"{}"#, #"[{"op":"add","path":"/a","value":null}]"#, #"{"a":null}"#)
        try expectResult(#"{"a":null}"#, #"[{"op":"test","path":"/a","value":null}]"#, #"{"a":null}"#)
    }
}

@Suite(.timeLimit(.minutes(1))) struct JSONPointerTests {
    @Test func escapesRoundTrip() throws {
        let pointer = try JSONPointer("/a~1b/m~0n/~01/0/-/")
        #expect(pointer.tokens == ["a/b", "m~n", "~1", "0", "-", ""])
        #expect(pointer.description == "/a~1b/m~0n/~01/0/-/")
    }

    @Test func rfc6901Examples() throws {
        let document = try JSON.parse(#"{"foo":["bar","baz"],"":0,"a/b":1,"c%d":2,"e^f":3,"g|h":4,"i\\j":5,"k\"l":6," ":7,"m~n":8}"#)
        let cases: [(String, JSON)] = [
            ("", document), ("/foo", ["bar", "baz"]), ("/foo/0", "bar"), ("/", 0), ("/a~1b", 1), ("/c%d", 2),
            ("/e^f", 3), ("/g|h", 4), ("/i\\j", 5), ("/k\"l", 6), ("/ ", 7), ("/m~0n", 8),
        ]
        for (text, expected) in cases {
            #expect(document.value(at: try JSONPointer(text)) == expected, "\(text)")
        }
        #expect(document.value(at: try JSONPointer("/foo/2")) == nil)
        #expect(document.value(at: try JSONPointer("/foo/-")) == nil)
    }

    @Test func prefixes() throws {
        #expect(try JSONPointer("/a").isProperPrefix(of: JSONPointer("/a/b")))
        #expect(try !JSONPointer("/a").isProperPrefix(of: JSONPointer("/a")))
        #expect(try !JSONPointer("/a").isProperPrefix(of: JSONPointer("/ab")))
    }
}
