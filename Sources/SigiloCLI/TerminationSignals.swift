import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM as events a long-running command waits for.
///
/// `block()` must run before any thread is created: every later thread
/// inherits the mask, so the signals stay pending until `wait` takes them,
/// whatever the parent (a shell's background job, a test's Process) did with
/// their dispositions.
public enum TerminationSignals {
    static func set() -> sigset_t {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        return signals
    }

    public static func block() {
        var signals = set()
        pthread_sigmask(SIG_BLOCK, &signals, nil)
    }

    /// Waits for SIGINT or SIGTERM; returns it, or nil once `timeout` seconds passed.
    @discardableResult
    public static func wait(timeout: Double? = nil) -> Int32? {
        var signals = set()
        guard let timeout else {
            var received: Int32 = 0
            while sigwait(&signals, &received) != 0 {}
            return received
        }
        var remaining = timespec(tv_sec: Int(timeout), tv_nsec: Int((timeout - timeout.rounded(.down)) * 1e9))
        while true {
            let r = sigtimedwait(&signals, nil, &remaining)
            if r > 0 { return r }
            if errno == EINTR { continue }
            return nil
        }
    }
}
