extension JSON {
    /// `self` deep-merged with `overlay`: objects merge member by member, recursively, and the
    /// overlay wins; arrays and scalars in the overlay replace what was there.
    ///
    /// The properties an action sees are `project.deepMerged(with: environment)`.
    public func deepMerged(with overlay: JSON) -> JSON {
        guard case .object(var base) = self, case .object(let top) = overlay else { return overlay }
        for (key, value) in top {
            base[key] = base[key].map { $0.deepMerged(with: value) } ?? value
        }
        return .object(base)
    }
}
