//! The memory allocator's set-up, made once at start-up by both binaries, so that memory freed
//! is given back to the system instead of piling up as fragmentation.
//!
//! glibc's `malloc` raises its mmap threshold every time a large block (above the threshold)
//! is freed, up to 32 MiB: after the first few 256 KiB spool buffers, hash sets and chunk
//! arenas are freed, every such block comes from the heap instead of its own mapping, and the
//! heap, interleaved with small long-lived blocks, is never trimmed. A 3,000,000-record
//! `process` grew so to 83–95 MiB of resident memory while its live heap never passed 21 MiB.
//! Fixing the thresholds turns that adjustment off: blocks of 128 KiB and more are mapped on
//! their own and unmapped when freed, and the heap's free top is trimmed past 128 KiB. Two
//! arenas at most keep the worker threads from each growing an arena of their own (a worker's
//! allocations are small and short-lived; the contention is not measurable here).
//!
//! With these settings that run peaks at 28–36 MiB (worst of 5, `scripts/bench memory`, on a
//! loaded machine) against 41–68 MiB before. Chosen over a replacement allocator crate
//! (mimalloc, jemalloc: C libraries built for the arm64 Lambda by cargo-lambda with zig): it
//! needs no build of its own, adds nothing to the binaries, and already brings resident memory
//! down to the live heap; a crate was not measured.

/// Blocks of this size and more get a mapping of their own, unmapped when freed; and free
/// memory at the top of the heap past this size is given back.
pub const RETURN_ABOVE_BYTES: i32 = 128 << 10;

/// Arenas `malloc` may make, whatever the number of threads.
pub const MAX_ARENAS: i32 = 2;

/// Sets the allocator's thresholds and arena count (see the module documentation). Call first
/// thing in `main`, before any thread is started. Returns whether every setting was taken (always
/// true on glibc; elsewhere nothing is set and the system allocator's own policy stays).
pub fn return_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters; called before other threads
        // allocate, as its documentation asks.
        unsafe {
            let mmap = libc::mallopt(libc::M_MMAP_THRESHOLD, RETURN_ABOVE_BYTES);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, RETURN_ABOVE_BYTES);
            let arenas = libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
            mmap == 1 && trim == 1 && arenas == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn on_glibc_every_setting_is_taken() {
        // Given glibc, when the settings are made, then malloc accepts each of them
        assert!(return_freed_memory());
    }
}
