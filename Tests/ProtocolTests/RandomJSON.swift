import PropertyBased
@testable import Protocol

/// Random JSON documents for property tests, and mutated copies of them: random pairs share
/// little structure, so the interesting diffs come from a document and an edited copy.
enum RandomJSON {
    static let keys = ["a", "b", "c", "d", "x/y", "m~n", "", "0", "-", "long key"]

    static func document(_ rng: inout any SeededRandomNumberGenerator, depth: Int = 0) -> JSON {
        let leafOnly = depth >= 4
        switch Int.random(in: 0..<(leafOnly ? 5 : 8), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return JSON(Int.random(in: -3...3, using: &rng))
        case 3: return .number(JSONNumber(literal: ["0.5", "1e30", "123456789012345678901234567890", "-2.25"].randomElement(using: &rng)!)!)
        case 4: return .string(["", "s", "t", "ü", "a/b"].randomElement(using: &rng)!)
        case 5, 6:
            var members: [String: JSON] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                members[keys.randomElement(using: &rng)!] = document(&rng, depth: depth + 1)
            }
            return .object(members)
        default:
            return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in document(&rng, depth: depth + 1) })
        }
    }

    /// A copy of `value` with a few random edits deep inside.
    static func mutate(_ value: JSON, _ rng: inout any SeededRandomNumberGenerator, depth: Int = 0) -> JSON {
        switch value {
        case .object(var members):
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                let key = keys.randomElement(using: &rng)!
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: members[key] = nil
                case 1: members[key] = document(&rng, depth: depth + 1)
                default: if let child = members[key] { members[key] = mutate(child, &rng, depth: depth + 1) }
                }
            }
            return .object(members)
        case .array(var elements):
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                switch Int.random(in: 0..<5, using: &rng) {
                case 0 where !elements.isEmpty: elements.remove(at: Int.random(in: 0..<elements.count, using: &rng))
                case 1: elements.insert(document(&rng, depth: depth + 1), at: Int.random(in: 0...elements.count, using: &rng))
                case 2: elements.append(document(&rng, depth: depth + 1))
                case 3 where !elements.isEmpty:
                    let index = Int.random(in: 0..<elements.count, using: &rng)
                    elements[index] = mutate(elements[index], &rng, depth: depth + 1)
                default: break
                }
            }
            return .array(elements)
        default:
            return Bool.random(using: &rng) ? value : document(&rng, depth: depth)
        }
    }

    static let documents = Generator<JSON, Shrink.None<JSON>>(run: { rng in document(&rng) })

    static let relatedPairs = Generator<Pair, Shrink.None<Pair>>(run: { rng in
        let old = document(&rng)
        var new = old
        for _ in 0..<Int.random(in: 1...3, using: &rng) { new = mutate(new, &rng) }
        return Pair(old: old, new: new)
    })

    struct Pair: Sendable, CustomStringConvertible {
        let old: JSON
        let new: JSON
        var description: String { "old: \(old)\nnew: \(new)" }
    }
}
