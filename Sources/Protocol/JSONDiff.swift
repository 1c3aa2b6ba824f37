extension JSONPatch {
    /// A patch that turns `old` into `new`: `try diff(a, b).apply(to: a) == b` for every pair.
    ///
    /// Compact: objects are compared member by member, so a change deep inside is one operation
    /// at its path; arrays keep their common prefix and suffix and align the rest by longest
    /// common subsequence, so appends, removals and element changes are operations on those
    /// elements rather than a replacement of the array.
    public static func diff(from old: JSON, to new: JSON) -> JSONPatch {
        var operations: [Operation] = []
        JSONDiffer.diff(old, new, at: .root, into: &operations)
        return JSONPatch(operations)
    }
}

enum JSONDiffer {
    /// Above this many element pairs an array middle is not aligned by LCS (quadratic) but
    /// compared position by position.
    static let alignmentLimit = 250_000

    static func diff(_ old: JSON, _ new: JSON, at path: JSONPointer, into operations: inout [JSONPatch.Operation]) {
        if old == new { return }
        switch (old, new) {
        case (.object(let oldMembers), .object(let newMembers)):
            for key in oldMembers.keys.sorted() where newMembers[key] == nil {
                operations.append(.remove(path: path.appending(key)))
            }
            for key in newMembers.keys.sorted() {
                let newValue = newMembers[key]!
                if let oldValue = oldMembers[key] {
                    diff(oldValue, newValue, at: path.appending(key), into: &operations)
                } else {
                    operations.append(.add(path: path.appending(key), value: newValue))
                }
            }
        case (.array(let oldElements), .array(let newElements)):
            diffArrays(oldElements, newElements, at: path, into: &operations)
        default:
            operations.append(.replace(path: path, value: new))
        }
    }

    private enum Edit {
        case keep
        case delete
        case insert(JSON)
    }

    private static func diffArrays(_ old: [JSON], _ new: [JSON], at path: JSONPointer, into operations: inout [JSONPatch.Operation]) {
        var prefix = 0
        while prefix < old.count, prefix < new.count, old[prefix] == new[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < old.count - prefix, suffix < new.count - prefix,
            old[old.count - 1 - suffix] == new[new.count - 1 - suffix]
        {
            suffix += 1
        }
        let oldMiddle = Array(old[prefix..<(old.count - suffix)])
        let newMiddle = Array(new[prefix..<(new.count - suffix)])
        let edits = align(oldMiddle, newMiddle)

        // Walk the edit script; `index` is the position in the array as patched so far.
        // A run of deletions next to a run of insertions becomes element changes (diffed
        // recursively, so a changed member of an element is one operation), then the surplus
        // is removed or added.
        var index = prefix
        var count = old.count  // length of the array as patched so far
        var oldPosition = 0
        var position = 0
        while position < edits.count {
            if case .keep = edits[position] {
                index += 1
                oldPosition += 1
                position += 1
                continue
            }
            var deletions = 0
            var insertions: [JSON] = []
            while position < edits.count {
                switch edits[position] {
                case .keep: break
                case .delete: deletions += 1
                case .insert(let value): insertions.append(value)
                }
                if case .keep = edits[position] { break }
                position += 1
            }
            let changed = min(deletions, insertions.count)
            for offset in 0..<changed {
                diff(oldMiddle[oldPosition + offset], insertions[offset], at: path.appending(index), into: &operations)
                index += 1
            }
            for _ in changed..<deletions {
                operations.append(.remove(path: path.appending(index)))
                count -= 1
            }
            for value in insertions.dropFirst(changed) {
                operations.append(.add(path: index == count ? path.appending("-") : path.appending(index), value: value))
                index += 1
                count += 1
            }
            oldPosition += deletions
        }
    }

    /// An edit script from `old` to `new`: LCS alignment, or position by position when large.
    private static func align(_ old: [JSON], _ new: [JSON]) -> [Edit] {
        if old.isEmpty { return new.map { .insert($0) } }
        if new.isEmpty { return old.map { _ in .delete } }
        guard old.count * new.count <= alignmentLimit else {
            return old.map { _ in Edit.delete } + new.map { .insert($0) }
        }
        // lengths[i][j]: LCS length of old[i...] and new[j...].
        let columns = new.count + 1
        var lengths = [Int](repeating: 0, count: (old.count + 1) * columns)
        for i in stride(from: old.count - 1, through: 0, by: -1) {
            for j in stride(from: new.count - 1, through: 0, by: -1) {
                lengths[i * columns + j] =
                    old[i] == new[j]
                    ? lengths[(i + 1) * columns + j + 1] + 1
                    : max(lengths[(i + 1) * columns + j], lengths[i * columns + j + 1])
            }
        }
        var edits: [Edit] = []
        var i = 0
        var j = 0
        while i < old.count, j < new.count {
            if old[i] == new[j] {
                edits.append(.keep)
                i += 1
                j += 1
            } else if lengths[(i + 1) * columns + j] >= lengths[i * columns + j + 1] {
                edits.append(.delete)
                i += 1
            } else {
                edits.append(.insert(new[j]))
                j += 1
            }
        }
        edits.append(contentsOf: repeatElement(.delete, count: old.count - i))
        edits.append(contentsOf: new[j...].map { .insert($0) })
        return edits
    }
}
