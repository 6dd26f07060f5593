import Foundation

/// Access records of requests, appended to the audit log in batches: one
/// transaction, one fsync and one signed head for every request that finished
/// while the previous batch was being written. A request's answer goes out
/// only once its record is durable, so no answered request is missing from the
/// log after a crash; and no worker waits meanwhile (the answer is handed on).
/// One thread writes while records arrive and exits when none do.
final class AuditBatcher: @unchecked Sendable {
    typealias Commit = @Sendable (_ entries: [AuditEntry]) -> Void

    private let lock = NSLock()
    private var pending: [(entry: AuditEntry, then: @Sendable () -> Void)] = []
    private var running = false
    /// Set once by the owner before the first record (the service, at the end of its init).
    var commit: Commit = { _ in }

    /// Records `entry`, then runs `then` (from the writing thread).
    func record(_ entry: AuditEntry, then: @escaping @Sendable () -> Void) {
        let start: Bool = lock.withLock {
            pending.append((entry, then))
            defer { running = true }
            return !running
        }
        guard start else { return }
        let thread = Thread { [self] in run() }
        thread.name = "sigilo-audit-batches"
        thread.start()
    }

    private func run() {
        while true {
            let batch: [(entry: AuditEntry, then: @Sendable () -> Void)] = lock.withLock {
                defer { pending = [] }
                if pending.isEmpty { running = false }
                return pending
            }
            guard !batch.isEmpty else { return }
            commit(batch.map(\.entry))
            for record in batch { record.then() }
        }
    }
}
