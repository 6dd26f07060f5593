import Foundation

/// Large arrays handed out and taken back, so a buffer of millions of values
/// is allocated and faulted in once, not once per use.
final class BufferPool<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [[Element]] = []
    private let keeping: Int

    init(keeping: Int) { self.keeping = keeping }

    /// A buffer from the pool (empty when none is free).
    func take() -> [Element] { lock.withLock { free.popLast() } ?? [] }

    /// Gives `buffer` back (it is left empty); beyond `keeping` it is freed.
    func give(_ buffer: inout [Element]) {
        let returned = buffer
        buffer = []
        lock.withLock { if free.count < keeping { free.append(returned) } }
    }
}
