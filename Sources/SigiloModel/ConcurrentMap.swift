import Dispatch

extension Array where Element: Sendable {
    /// `transform` of every element, in order, computed on all cores: the same result as
    /// `map`'s when the tasks are independent (trainings, say, each with its own seed).
    /// Each element is one task, so it suits a few large tasks, not many tiny ones.
    public func concurrentMap<Result: Sendable>(_ transform: @Sendable (Element) -> Result) -> [Result] {
        var results = [Result?](repeating: nil, count: count)
        results.withUnsafeMutableBufferPointer { slots in
            nonisolated(unsafe) let slots = slots // each task writes its own slot
            DispatchQueue.concurrentPerform(iterations: count) { slots[$0] = transform(self[$0]) }
        }
        return results.map { $0! }
    }
}
