import Foundation
#if canImport(Glibc)
import Glibc
internal import CEpoll
#endif

/// One thread around one epoll instance. Descriptors registered here are
/// touched only by this thread; other threads hand it work with `execute`,
/// which wakes it through an eventfd. Every `tickInterval` it ticks every
/// registered handler (deadlines are checked by sweeping, not by a timer per
/// connection).
final class EventLoop: @unchecked Sendable {
    /// What a registered descriptor is told.
    protocol Handler: AnyObject {
        func ready(events: UInt32)
        func tick(_ now: Double)
    }

    /// The receive buffer of every connection on this loop: a connection holds none while it waits.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

    private let epoll: Int32
    private let wakeFD: Int32
    private let lock = NSLock()
    private var tasks: [() -> Void] = []
    private var handlers: [Int32: any Handler] = [:]
    private var running = true
    private var closed = false
    private var thread: Thread?
    private let tickInterval: Double
    private static let wakeTag = UInt64.max

    init(name: String, tickInterval: Double) throws {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard epoll >= 0, wakeFD >= 0 else { throw HTTPServerError("epoll: \(Syscall.errorText())") }
        self.tickInterval = tickInterval
        Syscall.epollControl(epoll, EPOLL_CTL_ADD, wakeFD, events: EPOLLIN.rawValue, data: Self.wakeTag)
        let thread = Thread { [self] in run() }
        thread.name = name
        self.thread = thread
        thread.start()
    }

    /// Runs `task` on the loop's thread, soon; nothing once the loop stopped
    /// (a handler may answer after its client and the server are gone: its
    /// wake-up must not be written to a descriptor number since reused).
    func execute(_ task: @escaping () -> Void) {
        lock.withLock {
            guard !closed else { return }
            tasks.append(task)
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    /// Registers (or re-registers) `fd` for `events`; loop thread only.
    func register(_ fd: Int32, events: UInt32, handler: any Handler) {
        let known = handlers[fd] != nil
        handlers[fd] = handler
        Syscall.epollControl(epoll, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, events: events, data: UInt64(UInt32(bitPattern: fd)))
    }

    /// Forgets `fd` (before it is closed); loop thread only.
    func deregister(_ fd: Int32) {
        guard handlers.removeValue(forKey: fd) != nil else { return }
        Syscall.epollControl(epoll, EPOLL_CTL_DEL, fd, events: 0, data: 0)
    }

    /// Every registered handler (loop thread only).
    var registered: [any Handler] { Array(handlers.values) }

    /// Stops the loop after the tasks already queued, and waits for its thread.
    func stop() {
        execute { [self] in running = false }
        while thread?.isExecuting == true { usleep(1000) }
        lock.withLock {
            closed = true
            close(epoll)
            close(wakeFD)
        }
        readBuffer.deallocate()
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var nextTick = Self.now() + tickInterval
        while running {
            let timeout = Int32(max(0, (nextTick - Self.now()) * 1000).rounded(.up))
            let count = epoll_wait(epoll, &events, Int32(events.count), timeout)
            for index in 0..<max(0, Int(count)) {
                let event = events[index]
                if event.data.u64 == Self.wakeTag {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                    let queued = lock.withLock { defer { tasks.removeAll(keepingCapacity: true) }; return tasks }
                    for task in queued { task() }
                } else if let handler = handlers[Int32(truncatingIfNeeded: event.data.u64)] {
                    handler.ready(events: event.events)
                }
            }
            let now = Self.now()
            if now >= nextTick {
                for handler in Array(handlers.values) { handler.tick(now) }
                nextTick = now + tickInterval
            }
        }
    }
}
