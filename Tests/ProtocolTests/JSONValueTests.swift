import Foundation
import Testing
@testable import Protocol

@Suite(.timeLimit(.minutes(2))) struct JSONValueTests {
    @Test(arguments: [
        "123456789012345678901234567890123",
        "-0.000000000000000000000000000001",
        "3.14159265358979323846264338327950288419716939937510",
        "1e400",
        "9007199254740993",
        "18446744073709551616",
    ])
    func numbersRoundTripExactly(_ literal: String) throws {
        let document = try JSON.parse("{\"n\": [\(literal)]}")
        #expect(document.serialized() == "{\"n\":[\(literal)]}")
    }

    @Test func integersStayIntegers() throws {
        let document = try JSON.parse("[1, -5, 0, 42]")
        #expect(document.serialized() == "[1,-5,0,42]")
        #expect(document.arrayValue?[3].intValue == 42)
    }

    @Test func numbersCompareByValue() throws {
        #expect(try JSON.parse("1") == JSON.parse("1.0"))
        #expect(try JSON.parse("100") == JSON.parse("1e2"))
        #expect(try JSON.parse("0") == JSON.parse("-0.0"))
        #expect(try JSON.parse("0.1") != JSON.parse("0.10000000000000001"))
        #expect(try JSON.parse("1").hashValue == JSON.parse("1.00").hashValue)
    }

    @Test func keyOrderDoesNotMatter() throws {
        #expect(try JSON.parse(#"{"a":1,"b":[true,null]}"#) == JSON.parse(#"{"b":[true,null],"a":1}"#))
    }

    @Test func stringsWithEscapesRoundTrip() throws {
        let text = #""quote \" backslash \\ slash \/ newline \n tab \t control \u0001 snowman \u2603 emoji \ud83d\ude00""#
        let value = try JSON.parse(text)
        #expect(value == .string("quote \" backslash \\ slash / newline \n tab \t control \u{01} snowman ☃ emoji 😀"))
        #expect(try JSON.parse(value.serialized()) == value)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul", "\"abc", "\"\\x\"",
        "\"\\ud800\"", "[1 2]", "{\"a\" 1}", "{1:2}", "NaN", "Infinity", "// c\n1", "\"tab\there\"", "[] []",
    ])
    func invalidTextIsRefused(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
    }

    @Test func deepNestingIsRefusedNotCrashed() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        let fine = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect((try? JSON.parse(fine)) != nil)
    }

    @Test func parseErrorsSayWhere() {
        do {
            _ = try JSON.parse("[1, 2, oops]")
            Issue.record("expected an error")
        } catch {
            #expect(error.offset == 7)
            #expect(error.description.contains("unexpected character 'o'"))
        }
    }

    @Test func codableKeepsLargeIntegersAndDecimals() throws {
        let document = try JSON.parse(#"{"big":123456789012345678901234567890,"dec":0.1,"neg":-7,"f":1.5e3,"s":"x","n":null,"b":false}"#)
        let data = try JSONEncoder().encode(document)
        let decoded = try JSONDecoder().decode(JSON.self, from: data)
        #expect(decoded == document)
        #expect(decoded["big"]?.serialized() == "123456789012345678901234567890")
    }

    @Test func deepMergeLetsEnvironmentWin() throws {
        let project = try JSON.parse(#"{"a":{"x":1,"y":[1,2]},"b":"project","only_project":true}"#)
        let environment = try JSON.parse(#"{"a":{"y":[3],"z":2},"b":"environment"}"#)
        let merged = project.deepMerged(with: environment)
        #expect(merged == (try JSON.parse(#"{"a":{"x":1,"y":[3],"z":2},"b":"environment","only_project":true}"#)))
    }

    @Test func deepMergeReplacesScalarsWithObjectsAndBack() throws {
        #expect((["a": 1] as JSON).deepMerged(with: ["a": ["b": 2]]) == ["a": ["b": 2]])
        #expect((["a": ["b": 2]] as JSON).deepMerged(with: ["a": 1]) == ["a": 1])
    }
}
