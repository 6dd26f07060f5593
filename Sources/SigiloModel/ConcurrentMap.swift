import Dispatch

extension Array where Element: Sendable {
    /// `transform` of every element, in order, computed on all cores. For a handful of
    /// independent trainings: each element is one task, so the wall time is that of the
    /// slowest chain of tasks a core runs, and the result is the same as `map`'s.
    public func concurrentMap<Result: Sendable>(_ transform: @Sendable (Element) -> Result) -> [Result] {
        var results = [Result?](repeating: nil, count: count)
        results.withUnsafeMutableBufferPointer { slots in
            nonisolated(unsafe) let slots = slots // each task writes its own slot
            DispatchQueue.concurrentPerform(iterations: count) { slots[$0] = transform(self[$0]) }
        }
        return results.map { $0! }
    }
}
