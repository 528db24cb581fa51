//! Process-wide allocator settings for training.
//!
//! A training step allocates the same large buffers (activations, gradient
//! rows) every step. glibc's allocator serves blocks above 128 KiB with fresh
//! `mmap`s and returns them on free, so each step pays page faults and
//! zeroing for memory it had a moment ago. Raising the mmap and trim
//! thresholds keeps those blocks in the heap for reuse.

/// Size up to which blocks stay in the heap, and the free space kept at its
/// top, in bytes.
pub const KEEP_BYTES: i32 = 256 << 20;

/// Keeps large blocks in the heap for reuse (glibc on Linux; elsewhere it
/// does nothing). Call once at the start of a process, before threads start.
pub fn keep_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; it is called
    // before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_BYTES);
    }
}
