//! Process-wide allocator settings for training.
//!
//! A training step allocates the same large buffers (activations, gradient
//! rows) every step. glibc's allocator serves blocks above 128 KiB with fresh
//! `mmap`s and returns them on free, so each step pays page faults and
//! zeroing for memory it had a moment ago. Raising the mmap and trim
//! thresholds keeps those blocks in the heap for reuse
//! ([`keep_large_blocks`]).
//!
//! The threads of a parallel kernel write neighbouring parts of one output
//! (a matrix product cut by columns writes the two halves of every row). The
//! system allocator starts blocks on 16 bytes, so the line at each cut is
//! then shared by two cores and moves between them at every write.
//! [`LineAligned`] starts every block of at least [`LINE_ALIGNED_FROM`]
//! bytes on a cache line.
//!
//! A kernel that walks down the columns of a large matrix touches a new
//! 4 KiB page at every row, and the processor's cache of page translations
//! covers a few MiB; [`HugePages`] asks Linux to back large blocks with
//! 2 MiB pages. The `mtl` command installs both:
//!
//! ```
//! use mtl_cli::allocator::{HugePages, LineAligned};
//!
//! #[global_allocator]
//! static ALLOCATOR: HugePages<LineAligned> = HugePages(LineAligned);
//!
//! let v = vec![0.0f32; 4096];
//! assert_eq!(v.as_ptr() as usize % mtl_cli::allocator::LINE, 0);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

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

/// Bytes in a cache line: the alignment [`LineAligned`] gives large blocks.
pub const LINE: usize = 64;

/// Size from which [`LineAligned`] starts blocks on a cache line, in bytes.
/// Smaller blocks (names, shapes, small vectors) keep the alignment their
/// type asks for, so they cost no padding.
pub const LINE_ALIGNED_FROM: usize = 1024;

/// The system allocator, with every block of at least [`LINE_ALIGNED_FROM`]
/// bytes aligned to a cache line ([`LINE`] bytes). Results do not depend on
/// where a buffer starts; only the time of the kernels that split an output
/// between threads does. Install it with `#[global_allocator]` (see the
/// module's example).
#[derive(Debug, Clone, Copy, Default)]
pub struct LineAligned;

/// The layout a block of `layout` is given: the same size, aligned to a
/// line from [`LINE_ALIGNED_FROM`] bytes on.
fn line_layout(layout: Layout) -> Layout {
    if layout.size() >= LINE_ALIGNED_FROM && layout.align() < LINE {
        // A size valid at a smaller power-of-two alignment is valid at LINE
        // unless rounding it up to LINE overflows isize; then keep the
        // caller's layout.
        Layout::from_size_align(layout.size(), LINE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every block is made and freed by `System` with `line_layout` of the
// caller's layout, a function of that layout alone, so a block is always
// freed (or resized) with the layout it was made with; the alignment given is
// at least the one asked for.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(line_layout(layout))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(line_layout(layout))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, line_layout(layout))
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = line_layout(layout);
        // SAFETY: the caller guarantees that `new_size` with the block's
        // alignment is a valid layout.
        let new = line_layout(Layout::from_size_align_unchecked(new_size, layout.align()));
        if old.align() == new.align() {
            return System.realloc(ptr, old, new_size);
        }
        // The block crosses LINE_ALIGNED_FROM: move it to a block of the new
        // alignment.
        let moved = System.alloc(new);
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
            System.dealloc(ptr, old);
        }
        moved
    }
}

/// Bytes in a huge page, and the size from which [`HugePages`] advises them.
pub const HUGE_PAGE: usize = 2 << 20;

/// The allocator `A`, with every whole, aligned [`HUGE_PAGE`] inside a block
/// of at least that size advised for transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`; on Linux, and elsewhere `A` alone).
///
/// Linux then backs those pages of a block with 2 MiB pages when they are
/// first touched (where the system's setting is `madvise` or `always`;
/// pages touched before keep 4 KiB until the kernel merges them). Where a
/// kernel reads a short run from each of many rows of a large matrix (the
/// matrix product packing B's columns: 256 rows a block, each on a page of
/// its own when a row holds 1024 floats), each run then no longer needs a
/// translation of its own. What is computed does not change, only the time.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages<A>(pub A);

/// Advises the whole huge pages inside `len` bytes at `ptr` (a block just
/// made) for transparent huge pages.
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if len >= HUGE_PAGE && !ptr.is_null() {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside a block this process owns;
            // the advice changes how it is backed, never its contents, and
            // a refusal (no transparent huge pages) is harmless.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

// SAFETY: every block is made, resized and freed by `A` with the caller's
// layout; the advice only changes how the block's pages are backed.
unsafe impl<A: GlobalAlloc> GlobalAlloc for HugePages<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        advise_huge_pages(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        advise_huge_pages(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        advise_huge_pages(p, new_size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_on_a_line_and_small_ones_keep_their_alignment() {
        let a = LineAligned;
        for (size, align, want) in [
            (LINE_ALIGNED_FROM, 4, LINE),
            (LINE_ALIGNED_FROM, 128, 128),
            (LINE_ALIGNED_FROM - 4, 4, 4),
        ] {
            // The layout asked of the system, whatever address it returns.
            let layout = Layout::from_size_align(size, align).unwrap();
            assert_eq!(line_layout(layout).align(), want, "{size} bytes at {align}");
            assert_eq!(line_layout(layout).size(), size);
        }
        for (size, align, want) in [
            (LINE_ALIGNED_FROM, 4, LINE),
            (1 << 20, 8, LINE),
            (LINE_ALIGNED_FROM + 4, 4, LINE),
            (LINE_ALIGNED_FROM, 128, 128),
            (LINE_ALIGNED_FROM - 4, 4, 4),
            (8, 8, 8),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            for zeroed in [false, true] {
                // SAFETY: the layout has a positive size; the block is freed
                // with the layout it was made with.
                unsafe {
                    let p = if zeroed {
                        a.alloc_zeroed(layout)
                    } else {
                        a.alloc(layout)
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % want, 0, "{size} bytes at {align}");
                    if zeroed {
                        assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    }
                    a.dealloc(p, layout);
                }
            }
        }
    }

    #[test]
    fn resizing_across_the_threshold_keeps_the_contents_and_the_alignment() {
        let a = LineAligned;
        let small = Layout::from_size_align(100, 4).unwrap();
        // SAFETY: each block is resized or freed with the layout it has at
        // that point (the caller's alignment with the current size).
        unsafe {
            let p = a.alloc(small);
            for i in 0..100 {
                *p.add(i) = i as u8;
            }
            // Grow past the threshold: moved to a line.
            let grown = a.realloc(p, small, 5000);
            assert_eq!(grown as usize % LINE, 0);
            assert!((0..100).all(|i| *grown.add(i) == i as u8));
            for i in 100..5000 {
                *grown.add(i) = (i % 251) as u8;
            }
            // Grow within the large sizes, then shrink below the threshold.
            let large = Layout::from_size_align(5000, 4).unwrap();
            let larger = a.realloc(grown, large, 70_000);
            assert_eq!(larger as usize % LINE, 0);
            assert!((100..5000).all(|i| *larger.add(i) == (i % 251) as u8));
            let shrunk = a.realloc(larger, Layout::from_size_align(70_000, 4).unwrap(), 50);
            assert!((0..50).all(|i| *shrunk.add(i) == i as u8));
            a.dealloc(shrunk, Layout::from_size_align(50, 4).unwrap());
        }
    }

    /// The `VmFlags` of the mapping of this process that holds `addr`.
    #[cfg(target_os = "linux")]
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.to_string();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn large_blocks_are_advised_for_huge_pages_and_keep_their_contents() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("no transparent huge pages in this kernel: the advice is refused");
            return;
        }
        let a = HugePages(LineAligned);
        // SAFETY: each block is resized or freed with the layout it has.
        unsafe {
            let layout = Layout::from_size_align(3 * HUGE_PAGE, 4).unwrap();
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % LINE, 0);
            // The whole huge pages inside the block are advised (`hg`).
            let page = (p as usize).next_multiple_of(HUGE_PAGE);
            assert!(vm_flags(page).split_whitespace().any(|f| f == "hg"));
            for i in (0..layout.size()).step_by(4093) {
                *p.add(i) = (i % 251) as u8;
            }
            let grown = a.realloc(p, layout, 5 * HUGE_PAGE);
            let page = (grown as usize).next_multiple_of(HUGE_PAGE);
            assert!(vm_flags(page).split_whitespace().any(|f| f == "hg"));
            assert!((0..layout.size())
                .step_by(4093)
                .all(|i| *grown.add(i) == (i % 251) as u8));
            a.dealloc(grown, Layout::from_size_align(5 * HUGE_PAGE, 4).unwrap());
            let zeroed = a.alloc_zeroed(layout);
            assert!(std::slice::from_raw_parts(zeroed, layout.size())
                .iter()
                .all(|&b| b == 0));
            a.dealloc(zeroed, layout);
        }
    }
}
