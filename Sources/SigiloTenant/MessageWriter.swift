import Foundation

/// Live messages reach the store in groups: whatever arrived while the last
/// transaction was committing, or in the short linger before this one, goes
/// into the next one (one fsync for all), off the path of the request that
/// classified them, and after its answer has left. `flush` waits for what
/// was handed over before it; the webhook and feedback call it, because the
/// first must not acknowledge what is not durable and the second must find
/// the message it labels.
final class MessageWriter: @unchecked Sendable {
    struct Pending: Sendable {
        var key: String
        var customer: String
        var redacted: String
        var source: MessageSource
        /// The encoder's embedding of `redacted` (by the encoder's digest), when the model that answered reads one.
        var embedding: (encoder: [UInt8], values: [Float])?
    }

    private let condition = NSCondition()
    private var queue = [Pending]()
    private var handedOver = 0
    private var committed = 0
    private var stopping = false
    private var running = false
    /// Callers waiting in `flush`: the group is then committed without lingering.
    private var flushing = 0
    /// How long the writer lingers after the first message of a group arrives before it commits: the
    /// answer that handed the message over leaves first, and messages arriving meanwhile join the group.
    static let linger = 0.002
    private let commit: @Sendable ([Pending]) -> Void

    /// `commit` stores a group in one transaction (and reports its own failures).
    init(commit: @escaping @Sendable ([Pending]) -> Void) {
        self.commit = commit
    }

    func start() {
        condition.withLock { running = true }
        Thread { [self] in loop() }.start()
    }

    func enqueue(_ items: [Pending]) {
        guard !items.isEmpty else { return }
        condition.withLock {
            queue += items
            handedOver += items.count
            condition.broadcast()
        }
    }

    /// Returns once everything handed over before the call is committed (or failed).
    func flush() {
        condition.withLock {
            let target = handedOver
            flushing += 1
            condition.broadcast()
            while committed < target, running { condition.wait() }
            flushing -= 1
        }
    }

    /// Commits what is queued, then stops the thread.
    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while running { condition.wait() }
        }
    }

    private func loop() {
        // Storing is background work: on a busy core, answers come first (Linux: this thread's own nice value).
        #if canImport(Glibc)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        #endif
        condition.lock()
        while true {
            while queue.isEmpty, !stopping { condition.wait() }
            if queue.isEmpty { break }
            let deadline = Date(timeIntervalSinceNow: Self.linger)
            while flushing == 0, !stopping, condition.wait(until: deadline) {}
            let group = queue, upTo = handedOver
            queue.removeAll(keepingCapacity: true)
            condition.unlock()
            commit(group)
            condition.lock()
            committed = upTo
            condition.broadcast()
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }
}
