import Foundation

/// A fixed number of threads running jobs that may block (SQLite, fsync,
/// accounting), so the event loops never do. The queue is bounded: past
/// `maximumQueued` a job is refused and its connection answered 503 at once,
/// instead of queueing work no one will wait for.
final class WorkerPool: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [Thread] = []
    let maximumQueued: Int

    init(threads count: Int, maximumQueued: Int, name: String) {
        self.maximumQueued = maximumQueued
        for index in 0..<max(1, count) {
            let thread = Thread { [self] in work() }
            thread.name = "\(name)-\(index)"
            threads.append(thread)
            thread.start()
        }
    }

    var threadCount: Int { threads.count }

    /// Queues a job; false when the queue is full.
    func submit(_ job: @escaping () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard jobs.count - head < maximumQueued, !stopping else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Finishes the queued jobs, then stops the threads.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        while threads.contains(where: \.isExecuting) { usleep(1000) }
    }

    private func work() {
        while true {
            condition.lock()
            while head == jobs.count, !stopping { condition.wait() }
            if head == jobs.count { condition.unlock(); return }
            let job = jobs[head]
            jobs[head] = {} // drop what the job captured (a request's body, say) now, not when the queue is compacted
            head += 1
            if head == jobs.count { jobs.removeAll(keepingCapacity: true); head = 0 } else if head > 1024 { jobs.removeFirst(head); head = 0 }
            condition.unlock()
            job()
        }
    }
}
