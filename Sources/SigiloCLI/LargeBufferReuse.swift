#if canImport(Glibc)
import CMalloc
#endif

/// Keeps freed model-sized buffers in the heap for the next one.
///
/// The programs move buffers of 4 bytes per parameter (16 MB at d = 4M) many
/// times a round: request bodies, decoded updates, models. glibc maps every
/// block above its mmap threshold straight from the kernel and unmaps it on
/// free, so each such buffer is fresh pages that the kernel faults in and
/// zeroes. The threshold's maximum (32 MiB on 64-bit) and a trim threshold of
/// 256 MiB let freed buffers be reused: at K = 50, d = 4M the clients of
/// tools/bench-round went from 4.1 to 2.6-3.2 CPU seconds a round, the
/// coordinator's peak memory unchanged (it is set by the buffers alive at
/// once, not by how they are recycled).
public enum LargeBufferReuse {
    public static func enable() {
        #if canImport(Glibc)
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 256 << 20)
        #endif
    }
}
