import Foundation

/// Tenants' long-polls (`GET /v1/rounds/current?wait=S`) parked until a round
/// opens or their deadline passes. One thread answers them all, so thousands
/// of waiting tenants cost a closure each, not a thread or a worker each. It
/// runs while anything is parked and exits when nothing is.
final class LongPolls: @unchecked Sendable {
    /// Tries to answer: true when it did. `final` means it must answer now (deadline or shutdown).
    typealias Attempt = @Sendable (_ final: Bool) -> Bool

    private struct Parked {
        var deadline: Date
        /// Rounds opened when it last looked: it looks again only after another opens.
        var seen: Int
        let attempt: Attempt
    }

    private let service: CoordinatorService
    private let lock = NSLock()
    private var parked: [Parked] = []
    private var running = false
    private var stopping = false

    init(service: CoordinatorService) { self.service = service }

    var count: Int { lock.withLock { parked.count } }

    /// Parks a poll that found nothing to answer after `seen` rounds had opened.
    func park(seen: Int, deadline: Date, attempt: @escaping Attempt) {
        enum Decision { case answerNow, parked, parkedAndStartThread }
        let decision: Decision = lock.withLock {
            guard !stopping else { return .answerNow }
            parked.append(Parked(deadline: deadline, seen: seen, attempt: attempt))
            defer { running = true }
            return running ? .parked : .parkedAndStartThread
        }
        switch decision {
        case .answerNow:
            _ = attempt(true)
        case .parked:
            break
        case .parkedAndStartThread:
            let thread = Thread { [self] in run() }
            thread.name = "sigilo-long-polls"
            thread.start()
        }
    }

    /// Answers every parked poll now and parks no more (the server is stopping).
    func stop() {
        let all: [Parked] = lock.withLock {
            stopping = true
            defer { parked = [] }
            return parked
        }
        for poll in all { _ = poll.attempt(true) }
    }

    private func run() {
        while true {
            let (earliest, seenByAll): (Date?, Int?) = lock.withLock {
                guard !parked.isEmpty else { running = false; return (nil, nil) }
                return (parked.map(\.deadline).min(), parked.map(\.seen).min())
            }
            guard let earliest, let seenByAll else { return }
            // Woken by the next opening, or at the earliest deadline (at least once a second all the same).
            service.waitForNextRound(after: seenByAll, until: min(earliest, Date().addingTimeInterval(1)))
            let opened = service.roundsOpenedSoFar
            let now = Date()
            let due: [Parked] = lock.withLock {
                let (due, waiting) = parked.reduce(into: ([Parked](), [Parked]())) { split, poll in
                    if poll.seen != opened || poll.deadline <= now { split.0.append(poll) } else { split.1.append(poll) }
                }
                parked = waiting
                return due
            }
            for var poll in due where !poll.attempt(poll.deadline <= now) {
                poll.seen = opened
                let stopped: Bool = lock.withLock {
                    if !stopping { parked.append(poll) }
                    return stopping
                }
                if stopped { _ = poll.attempt(true) } // stop() has flushed already: answer it here
            }
        }
    }
}
