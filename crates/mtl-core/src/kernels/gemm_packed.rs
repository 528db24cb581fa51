//! The f32 matrix product with both operands packed and the work split over
//! rayon's threads, for any register tile ([`Tile`]: 14 × 32 on AVX-512 in
//! `gemm_avx512.rs`, 6 × 16 on AVX2 in `gemm_avx2.rs`).
//!
//! The product `C (+)= op(A) · op(B)` is cut into tasks that each own a block
//! of C's rows and columns (rows alone for tall products and where C has no
//! more columns than rows; otherwise columns first, so that each task packs
//! only its own part of B, unless C has too few columns to share them
//! evenly).
//! Within a task, for each block of 256 inner terms and each block of `NC`
//! columns, the task's columns of B are packed into panels of `NR` columns
//! (zero-padded), then for every stripe of `MR` rows of A (packed the same
//! way, once per block of terms) each panel is multiplied in registers: one
//! fused multiply-add per term and accumulator, with the panel's rows
//! prefetched into L1 a few terms ahead. Each block's stripes are handed
//! out one at a time, and a task that has ended its own work takes those
//! not yet started of the block another task over the same columns has
//! open, block after block, reading that task's packed B (see
//! [`Progress`]): the threads end together rather than one waiting for the
//! other, even where a thread was held up (a product of 784 terms has a
//! last block of 16, and a thread preempted earlier left the other waiting
//! for it).
//!
//! Summation order, and so every bit of the result, is fixed by the inner
//! dimension alone: each element is summed from zero by one run of fused
//! multiply-adds over each block of 256 terms (`[0, 256)`, `[256, 512)`, …),
//! and the blocks are added to C in order (the first one stored when not
//! accumulating). That is the order of `matrixmultiply`'s fused paths, so
//! this product gives the same bits as the one it replaces, whatever the
//! tile, the thread count or the split into tasks.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::share;
use crate::workers::own_products;

/// Inner terms summed in registers before they are added to C (fixed: it
/// sets the summation order).
pub(super) const KC: usize = 256;
/// Rows per thread from which a product is cut by rows alone (see [`split`]).
const ROWS_FIRST: usize = 256;
/// Multiply-adds below which the product runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// A register tile of one instruction set and the packing it reads: the
/// product's kernels, which [`gemm`] drives.
///
/// # Safety
///
/// An implementation's packing writes only within the slices it is given
/// and lays the operands out as its `tile` reads them; [`gemm`] drives a
/// tile only on a CPU with its instruction set (its caller checks).
pub(super) unsafe trait Tile {
    /// Rows of the register tile.
    const MR: usize;
    /// Columns of the register tile.
    const NR: usize;
    /// Columns of B packed at once (`KC × NC` floats stay in L2).
    const NC: usize;
    /// Rows of A whose packed stripes are kept for every block of columns,
    /// in tasks with more than `NC` columns (a multiple of `MR`).
    const MC: usize;

    /// Packs rows `i0..i0 + mr` (`mr ≤ MR`), terms `p0..p0 + kc` of `op(A)`
    /// as `kc` groups of `MR` floats (term-major, zeros past `mr`) into `pa`.
    ///
    /// # Safety
    /// The CPU has the tile's instruction set.
    unsafe fn pack_a(
        a: &[f32],
        s: Strides,
        i0: usize,
        mr: usize,
        p0: usize,
        kc: usize,
        pa: &mut [f32],
    );

    /// Packs terms `p0..p0 + kc`, columns `j0..j0 + nc` of `op(B)` as panels
    /// of `KC × NR` floats, each `kc` rows of `NR` columns (zeros past `nc`).
    ///
    /// # Safety
    /// The CPU has the tile's instruction set.
    unsafe fn pack_b(
        b: &[f32],
        s: Strides,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        pb: &mut [f32],
    );

    /// `mr ≤ MR` rows × `width ≤ NR` columns of C at `c` (row stride `ldc`):
    /// sums `kc` terms of the packed `pa` and `pb` from zero in registers,
    /// then stores them (`store`) or adds them to C.
    ///
    /// # Safety
    /// The CPU has the tile's instruction set; `pa` holds `kc` groups of
    /// `MR`, `pb` `kc` rows of `NR`, and `c` the tile's elements.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        mr: usize,
        kc: usize,
        pa: &[f32],
        pb: &[f32],
        c: *mut f32,
        ldc: usize,
        width: usize,
        store: bool,
    );
}

/// Element strides of a row-major operand, read as given or transposed:
/// element `(i, j)` of `op(X)` sits at `x[i * row + j * col]`.
#[derive(Clone, Copy)]
pub(super) struct Strides {
    /// Between rows of `op(X)`.
    pub(super) row: usize,
    /// Between columns of `op(X)`.
    pub(super) col: usize,
}

impl Strides {
    /// `op(X)` of `rows × cols` over a row-major `X` (`cols × rows` when
    /// transposed).
    pub(super) fn new(rows: usize, cols: usize, transposed: bool) -> Self {
        if transposed {
            Strides { row: 1, col: rows }
        } else {
            Strides { row: cols, col: 1 }
        }
    }
}

/// Copies `src` (at most `N` floats) to the first `N` floats of `dst`, zeros
/// past its end: a copy of constant length (a few vector moves, no call)
/// when `src` is whole, as it is for all but a product's last panel or
/// stripe.
#[inline(always)]
pub(super) fn copy_padded<const N: usize>(dst: &mut [f32], src: &[f32]) {
    match <&[f32; N]>::try_from(src) {
        Ok(whole) => dst[..N].copy_from_slice(whole),
        Err(_) => {
            dst[..src.len()].copy_from_slice(src);
            dst[src.len()..N].fill(0.0);
        }
    }
}

/// C, shared by the tasks; each task writes only its own block.
#[derive(Clone, Copy)]
struct Output {
    ptr: *mut f32,
    ld: usize,
}

// SAFETY: tasks write disjoint blocks of C (see `gemm`), and the borrow of
// `c` outlives every task because rayon joins them before `gemm` returns.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

thread_local! {
    /// Packing space of this thread: one stripe of A, then `KC × NC` of B.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// `Cᵀ` of this thread's last product computed transposed, kept for
    /// the next one (a step computes the same heads every time).
    static TRANSPOSED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `c = op(a) · op(b)` (or `c += …` when `accumulate`), with the shapes and
/// layout of [`super::gemm`], which checks the lengths and calls this only
/// where `T`'s instruction set is present and every dimension is positive.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm<T: Tile>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    let sa = Strides::new(m, k, trans_a);
    let sb = Strides::new(k, n, trans_b);
    if transposed::<T>(m, k, n, accumulate) {
        // Taken out of the thread's slot while in use, so that a product
        // this thread runs for another task while it waits for this one's
        // takes a buffer of its own. Its contents are overwritten: the
        // transposed product stores every element.
        let mut kept = TRANSPOSED.take();
        if kept.len() < n * m {
            kept.resize(n * m, 0.0);
        }
        let ct = &mut kept[..n * m];
        let swap = |s: Strides| Strides {
            row: s.col,
            col: s.row,
        };
        run_tasks::<T>(n, k, m, b, swap(sb), a, swap(sa), ct, false);
        for (i, row) in c.chunks_exact_mut(n).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let x = ct[j * m + i];
                *v = if accumulate { *v + x } else { x };
            }
        }
        TRANSPOSED.set(kept);
        return;
    }
    run_tasks::<T>(m, k, n, a, sa, b, sb, c, accumulate);
}

/// Whether [`gemm`] computes `Cᵀ = op(B)ᵀ · op(A)ᵀ` instead of C (then
/// copies it across): where C is narrow (at most two panels of `T::NR`
/// columns, such as a head of a few outputs) and the transposed product
/// takes fewer tiles. A tile of fewer rows costs less in proportion, one of
/// fewer columns does not, so the work is C's rows times their panels,
/// `m · ⌈n / NR⌉` as given against `n · ⌈m / NR⌉` transposed: with 10
/// columns and 256 rows, 256 tiles' rows against 160. Each element is the
/// same run of fused multiply-adds over the same terms, so the bits do not
/// change; an accumulated product is taken this way only with one block
/// of terms, where `C + Σ` is one addition either way.
///
/// On one core of an AMD EPYC with AVX2 (best of 15 runs of 2000
/// products, 256 × 256 times 256 × `n`): 10 columns 32.2 µs as given
/// against 24.5 µs transposed, 17 columns 53.4 against 34.2 µs, 24 columns
/// 53.6 against 44.4 µs; 32 columns, where the rule keeps C, 52.0 against
/// 53.0 µs.
fn transposed<T: Tile>(m: usize, k: usize, n: usize, accumulate: bool) -> bool {
    n <= 2 * T::NR
        && m >= T::NR
        && n * m.div_ceil(T::NR) < m * n.div_ceil(T::NR)
        && (!accumulate || k <= KC)
}

/// `c (+)= op(a) · op(b)`, with the operands read through `sa` and `sb`, cut
/// into tasks over rayon's threads.
#[allow(clippy::too_many_arguments)]
fn run_tasks<T: Tile>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    c: &mut [f32],
    accumulate: bool,
) {
    let o = Operands {
        k,
        a,
        sa,
        b,
        sb,
        out: Output {
            ptr: c.as_mut_ptr(),
            ld: n,
        },
        accumulate,
    };
    let panels = n.div_ceil(T::NR);
    let threads = rayon::current_num_threads();
    let work = m.saturating_mul(n).saturating_mul(k);
    let (col_tasks, row_tasks) = if threads < 2 || work < PARALLEL_MIN || own_products() {
        (1, 1)
    } else {
        split::<T>(n, m, threads)
    };
    let tasks = col_tasks * row_tasks;
    if tasks == 1 {
        PACKED.with(|packed| {
            // SAFETY: `T`'s instruction set is present (`super::gemm`
            // checks) and the ranges are the operands' shapes.
            unsafe {
                own_blocks::<T>(
                    &o,
                    0..m,
                    0..n,
                    &Progress::default(),
                    &mut packed.borrow_mut(),
                )
            }
        });
        return;
    }
    let range = |task: usize| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let cols = share(panels, col_tasks, ct);
        (
            share(m, row_tasks, rt),
            cols.start * T::NR..(cols.end * T::NR).min(n),
        )
    };
    let progress: Vec<Progress> = (0..tasks).map(|_| Progress::default()).collect();
    let run = |task: usize| {
        let (rows, cols) = range(task);
        PACKED.with(|packed| {
            let mut packed = packed.borrow_mut();
            // SAFETY: `T`'s instruction set is present (`super::gemm`
            // checks), the ranges lie within the operands' shapes, and this
            // task's block of C is its own, but for the stripes that
            // another task takes from its progress; each stripe is taken
            // once.
            unsafe {
                own_blocks::<T>(&o, rows.clone(), cols.clone(), &progress[task], &mut packed);
                // Then the stripes not yet taken of the other tasks over the
                // same columns, as long as they have any.
                let (pa, _) = Packing::of::<T>(&rows, &cols).split(&mut packed);
                for other in (0..tasks).filter(|&t| t != task && t % col_tasks == task % col_tasks)
                {
                    let (their_rows, _) = range(other);
                    others_blocks::<T>(
                        &o,
                        their_rows,
                        cols.clone(),
                        &progress[other],
                        &mut pa[..T::MR * KC],
                    );
                }
            }
        });
    };
    // The first task on the calling thread, which then polls for the rest
    // rather than sleeping until they end.
    crate::workers::join_polling(|| run(0), || (1..tasks).into_par_iter().for_each(run));
}

/// How to cut the `n` columns (in panels of `T::NR`) and `m` rows of C into
/// tasks for `threads` threads: `(column tasks, row tasks)`. Rows are cut
/// into near-equal shares (any row may start a share), columns into whole
/// panels.
///
/// The rows alone are cut when C has no more columns than rows, and in tall
/// products (at least [`ROWS_FIRST`] rows per thread). A task packs all of
/// B when the rows are cut and all of A when the columns are, so with `k`
/// terms a cut by rows packs `k · (n + m / threads)` floats per task and a
/// cut by columns `k · (m + n / threads)`: the rows pack no more when
/// `n ≤ m`. Cut by rows, each task also reads only its own rows of A and
/// writes only its own rows of C, where a cut by columns has every thread
/// write into every row of C. On two cores of an Intel Xeon the W1 step
/// (256-row products, 128 per thread) took 1.47–1.51 ms with its square
/// products cut by rows against 1.57–1.63 ms by columns (medians of
/// processes, interleaved; `benches/README.md`, round 10), and on two cores
/// of an AMD EPYC with AVX2 2.37–3.43 ms (median 2.74) against 2.78–4.20 ms
/// (median 2.94; eight processes each, timers around the tasks both ways,
/// round 19). In tall products
/// cut by columns on two cores of an AMD EPYC, 1024³ products took
/// 12.5–20.3 ms in 13 of 70 processes (10.4 ms at best), cut by rows at most
/// 12.3 ms in the 70 processes between them (round 8).
///
/// Wider products cut the columns first, as far as there are panels, and
/// the rest of the threads cut the rows; where that leaves the largest task
/// bigger than cutting the rows alone would (few panels, such as three over
/// two threads), the rows alone are cut.
fn split<T: Tile>(n: usize, m: usize, threads: usize) -> (usize, usize) {
    let stripes = m.div_ceil(T::MR);
    let by_rows = (1, threads.min(stripes));
    if n <= m || m / threads >= ROWS_FIRST {
        return by_rows;
    }
    let panels = n.div_ceil(T::NR);
    let cols = panels.min(threads);
    let by_cols = (cols, threads.div_ceil(cols).min(stripes));
    let largest = |(c, r): (usize, usize)| panels.div_ceil(c) * m.div_ceil(r);
    if largest(by_rows) < largest(by_cols) {
        by_rows
    } else {
        by_cols
    }
}

/// The operands of one product, as each task reads them.
struct Operands<'a> {
    k: usize,
    a: &'a [f32],
    sa: Strides,
    b: &'a [f32],
    sb: Strides,
    out: Output,
    accumulate: bool,
}

/// The progress of one task through its blocks (in its loop order: passes
/// of rows, blocks of terms, blocks of columns), which the tasks over the
/// same columns read to take stripes of its open block once they have
/// ended their own. A block's stripes are handed out one at a time, first
/// come first served, to the task and to the others. The task opens its
/// next block only once the stripes others took of the last one are
/// finished, so every block of terms is added to a row after the earlier
/// ones, whichever task adds it: the bits do not depend on who takes a
/// stripe. Another task reads the task's packed block of B (and its kept
/// stripes of A) while the block is open; the task packs them again only
/// after those stripes are finished.
#[derive(Default)]
#[repr(align(64))]
struct Progress {
    /// [`open`]`(block)` plus the next stripe to hand out of the open
    /// block; 0 before the first block opens, [`CLOSED`] if the task
    /// unwound.
    current: AtomicU64,
    /// Stripes of this task's blocks that other tasks took and finished.
    finished_by_others: AtomicUsize,
    /// The task's packed stripes of A (where kept for every block of
    /// columns), for the other tasks.
    pa: AtomicPtr<f32>,
    /// The task's packed block of B, for the other tasks.
    pb: AtomicPtr<f32>,
}

/// [`Progress::current`] of a task whose block `block` has just opened.
fn open(block: usize) -> u64 {
    ((block as u64) + 1) << 32
}

/// [`Progress::current`] of a task that unwound: no stripe is handed out.
const CLOSED: u64 = u64::MAX;

/// Spins between yields of a task waiting for another (whose stripe, or
/// next block, is microseconds away unless its thread was preempted).
const SPINS_PER_YIELD: u32 = 1 << 10;

impl Progress {
    /// `(block, next stripe)` of [`Progress::current`] `v`, if a block is
    /// open.
    fn decode(v: u64) -> Option<(usize, usize)> {
        (v != 0 && v != CLOSED).then(|| (((v >> 32) - 1) as usize, (v & 0xffff_ffff) as usize))
    }

    /// The next stripe of the open block, `(block, stripe)`, or `None` when
    /// none is open or all its stripes are handed out (`stripes` gives the
    /// stripes of a block).
    fn take(&self, stripes: impl Fn(usize) -> usize) -> Option<(usize, usize)> {
        // Acquire: the block's packing, written before it opened, is seen.
        let (b, s) = Self::decode(self.current.fetch_add(1, Ordering::Acquire))?;
        (s < stripes(b)).then_some((b, s))
    }
}

/// Spins (yielding now and then) until `done` is true.
fn spin_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_PER_YIELD) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Closes a task's progress if it unwinds, so that no other task waits
/// for a block that will not open.
struct CloseOnUnwind<'a>(&'a Progress);

impl Drop for CloseOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.current.store(CLOSED, Ordering::Release);
        }
    }
}

/// Counts a stripe taken from another task as finished when dropped, even
/// if it unwound, so that the task never waits for it for ever (the panic
/// then ends the product).
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// How a task of `rows` and `cols` packs A. With several blocks of
/// columns, A's stripes are packed once per block of terms and kept for
/// every block of columns, up to `T::MC` rows at a time (a pass); otherwise
/// each stripe is packed into one place just before its tiles, and all the
/// rows are one pass.
struct Packing {
    /// Whether A's stripes are kept for every block of columns.
    keep: bool,
    /// Rows of a pass.
    pass_rows: usize,
    /// Stripes of A held at once.
    held: usize,
    /// Floats of one packed stripe of A (`MR × KC`).
    stripe: usize,
    /// Columns of B packed at once (the tile's `NC`).
    nc: usize,
}

impl Packing {
    /// The packing by `T` of a task of `rows` and `cols`.
    fn of<T: Tile>(rows: &Range<usize>, cols: &Range<usize>) -> Self {
        let keep = cols.len() > T::NC;
        Packing {
            keep,
            pass_rows: if keep { T::MC } else { rows.len() },
            held: if keep {
                T::MC.min(rows.len()).div_ceil(T::MR)
            } else {
                1
            },
            stripe: T::MR * KC,
            nc: T::NC,
        }
    }

    /// The packing space of a task, `packed`, as A's stripes and B's block.
    fn split<'p>(&self, packed: &'p mut Vec<f32>) -> (&'p mut [f32], &'p mut [f32]) {
        let need = self.held * self.stripe + KC * self.nc;
        if packed.len() < need {
            packed.resize(need, 0.0);
        }
        packed.split_at_mut(self.held * self.stripe)
    }
}

/// The blocks of a task of `rows` and `cols` over `k` terms, numbered in
/// its loop order: passes of rows, then blocks of terms, then blocks of
/// columns.
struct Blocks {
    rows: Range<usize>,
    cols: Range<usize>,
    k: usize,
    packing: Packing,
    /// Rows of a stripe (the tile's `MR`).
    mr: usize,
}

/// One block of a task: the rows of its pass, its terms and its columns.
struct Block {
    pass: Range<usize>,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
}

impl Blocks {
    /// The blocks of a task of `rows` and `cols` over `k` terms, packed by `T`.
    fn of<T: Tile>(rows: Range<usize>, cols: Range<usize>, k: usize) -> Self {
        let packing = Packing::of::<T>(&rows, &cols);
        Blocks {
            rows,
            cols,
            k,
            packing,
            mr: T::MR,
        }
    }

    /// Blocks of terms and of columns in a pass.
    fn per_pass(&self) -> (usize, usize) {
        (
            self.k.div_ceil(KC),
            self.cols.len().div_ceil(self.packing.nc),
        )
    }

    /// How many blocks the task has.
    fn count(&self) -> usize {
        let (terms, cols) = self.per_pass();
        self.rows.len().div_ceil(self.packing.pass_rows) * terms * cols
    }

    /// Block `b`.
    fn at(&self, b: usize) -> Block {
        let (terms, cols) = self.per_pass();
        let (pass, p, j) = (b / (terms * cols), b / cols % terms, b % cols);
        let r0 = self.rows.start + pass * self.packing.pass_rows;
        let (p0, j0) = (p * KC, self.cols.start + j * self.packing.nc);
        Block {
            pass: r0..(r0 + self.packing.pass_rows).min(self.rows.end),
            p0,
            kc: KC.min(self.k - p0),
            j0,
            nc: self.packing.nc.min(self.cols.end - j0),
        }
    }

    /// Stripes of rows of block `b`.
    fn stripes(&self, b: usize) -> usize {
        self.at(b).pass.len().div_ceil(self.mr)
    }
}

impl Block {
    /// Stripe `s` of this block of a task of `blocks`, with the task's
    /// packed stripes of A at `pa` and its packed block of B at `pb`. A's
    /// stripe is packed into the task's kept stripe `s` where stripes are
    /// kept (on the pass's first block of columns), else into `scratch`
    /// (one stripe).
    ///
    /// # Safety
    /// As for [`own_blocks`]; `pa` and `pb` are the task's packing space,
    /// with its block of B packed for this block, and stripe `s` of this
    /// block is the caller's alone.
    unsafe fn stripe<T: Tile>(
        &self,
        o: &Operands,
        blocks: &Blocks,
        s: usize,
        (pa, pb): (*mut f32, *const f32),
        scratch: *mut f32,
    ) {
        let packing = &blocks.packing;
        let (at, pack) = if packing.keep {
            (pa.add(s * packing.stripe), self.j0 == blocks.cols.start)
        } else {
            (scratch, true)
        };
        stripe_tiles::<T>(
            o,
            self.pass.start + s * T::MR,
            self.pass.end,
            self.p0,
            self.kc,
            self.j0,
            self.nc,
            std::slice::from_raw_parts_mut(at, packing.stripe),
            std::slice::from_raw_parts(pb, KC * packing.nc),
            pack,
        );
    }
}

/// One task: rows `rows` and columns `cols` of C, over every inner term,
/// block after block, each block's stripes taken from `progress` (shared
/// with the other tasks over the same columns).
///
/// # Safety
/// `T`'s instruction set is present; `rows` and `cols` lie within C, and
/// no other thread writes their block but for stripes taken from
/// `progress`.
unsafe fn own_blocks<T: Tile>(
    o: &Operands,
    rows: Range<usize>,
    cols: Range<usize>,
    progress: &Progress,
    packed: &mut Vec<f32>,
) {
    let blocks = Blocks::of::<T>(rows, cols, o.k);
    let (pa, pb) = blocks.packing.split(packed);
    let (pa, pb) = (pa.as_mut_ptr(), pb.as_mut_ptr());
    progress.pa.store(pa, Ordering::Relaxed);
    progress.pb.store(pb, Ordering::Relaxed);
    let _close = CloseOnUnwind(progress);
    let finished = || progress.finished_by_others.load(Ordering::Acquire);
    // Stripes the other tasks took of the blocks opened so far.
    let mut taken_by_others = 0;
    for b in 0..blocks.count() {
        let block = blocks.at(b);
        // Before B's block is packed again and these rows take their next
        // block of terms.
        spin_until(|| finished() >= taken_by_others);
        T::pack_b(
            o.b,
            o.sb,
            block.p0,
            block.kc,
            block.j0,
            block.nc,
            std::slice::from_raw_parts_mut(pb, KC * blocks.packing.nc),
        );
        // Release: the packing, and the earlier blocks of these rows in C,
        // before another task takes a stripe of this block.
        progress.current.store(open(b), Ordering::Release);
        let stripes = blocks.stripes(b);
        let mut own = 0;
        while let Some((_, s)) = progress.take(|_| stripes) {
            block.stripe::<T>(o, &blocks, s, (pa, pb), pa);
            own += 1;
        }
        taken_by_others += stripes - own;
    }
    // The others' last stripes read this task's packing space.
    spin_until(|| finished() >= taken_by_others);
}

/// Stripes of another task's blocks (rows `rows`, columns `cols`, whose
/// progress is `progress`) from its open block on, until it has handed
/// out every stripe of its last block; A's stripes are packed into
/// `scratch` (one stripe) where that task does not keep them. Returns how
/// many stripes it took. Nothing is taken from a task that has not begun
/// (it does all its work itself).
///
/// # Safety
/// As for [`own_blocks`], with `progress` the other task's.
unsafe fn others_blocks<T: Tile>(
    o: &Operands,
    rows: Range<usize>,
    cols: Range<usize>,
    progress: &Progress,
    scratch: &mut [f32],
) -> usize {
    let blocks = Blocks::of::<T>(rows, cols, o.k);
    let last = blocks.count() - 1;
    let mut took = 0;
    loop {
        let now = progress.current.load(Ordering::Acquire);
        let Some((b, s)) = Progress::decode(now) else {
            return took;
        };
        if s >= blocks.stripes(b) {
            if b == last {
                return took;
            }
            // Its next block opens once its last stripes of this one end.
            spin_until(|| progress.current.load(Ordering::Acquire) != now);
            continue;
        }
        let Some((b, s)) = progress.take(|b| blocks.stripes(b)) else {
            continue;
        };
        let _finished = Finished(&progress.finished_by_others);
        let packing = (
            progress.pa.load(Ordering::Relaxed),
            progress.pb.load(Ordering::Relaxed).cast_const(),
        );
        blocks
            .at(b)
            .stripe::<T>(o, &blocks, s, packing, scratch.as_mut_ptr());
        took += 1;
    }
}

/// One stripe of rows from `i0` (up to `end`, at most `T::MR`) over terms
/// `p0..p0 + kc` and columns `j0..j0 + nc`, whose panels of B are in `pb`:
/// A's stripe is packed into `stripe` first when `pack`.
///
/// # Safety
/// As for [`block`].
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn stripe_tiles<T: Tile>(
    o: &Operands,
    i0: usize,
    end: usize,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    stripe: &mut [f32],
    pb: &[f32],
    pack: bool,
) {
    let mr = T::MR.min(end - i0);
    if pack {
        T::pack_a(o.a, o.sa, i0, mr, p0, kc, stripe);
    }
    let store = p0 == 0 && !o.accumulate;
    let panels = pb.chunks_exact(KC * T::NR).take(nc.div_ceil(T::NR));
    for (q, panel) in panels.enumerate() {
        let j = j0 + q * T::NR;
        let width = T::NR.min(j0 + nc - j);
        let dst = o.out.ptr.add(i0 * o.out.ld + j);
        T::tile(mr, kc, stripe, panel, dst, o.out.ld, width, store);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        others_blocks, own_blocks, split, transposed, Blocks, Operands, Output, Packing, Progress,
        Strides, Tile, KC, ROWS_FIRST,
    };
    use crate::kernels::{gemm_avx2::Avx2, gemm_avx512::Avx512};
    use std::sync::atomic::Ordering;

    /// `m × k` and `k × n` operands and a C to accumulate onto, with values
    /// in [-1, 1) whose sums round differently in another order, so that a
    /// stripe summed out of order shows in the bits.
    fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let draw = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + seed * 104_729) % 1999) as f32 / 997.0 - 1.0)
                .collect()
        };
        (draw(m * k, 1), draw(k * n, 2), draw(m * n, 3))
    }

    #[test]
    fn stripes_taken_from_another_task_give_the_same_bits() {
        let mut tiles = 0;
        if crate::kernels::avx512() {
            stripes_taken_across_threads::<Avx512>();
            tiles += 1;
        }
        if crate::kernels::avx2() {
            stripes_taken_across_threads::<Avx2>();
            tiles += 1;
        }
        if tiles == 0 {
            eprintln!("neither AVX-512 nor AVX2 on this CPU: the product's tasks are not used");
        }
    }

    /// Two tasks of tile `T` on two threads, the first, with far fewer
    /// rows, then taking stripes of the second's blocks from the one it has
    /// open on, give the bits of one task; where the second has several
    /// blocks, the first takes stripes of more than its last.
    fn stripes_taken_across_threads<T: Tile>() {
        // (m, k, n, rows of the first task, accumulate): several blocks of
        // terms and of columns with A's stripes kept, one block of each, a
        // last stripe shorter than MR, several blocks of terms over one
        // block of columns (each block's stripes added after the one
        // before, whoever takes them), two passes of rows.
        let shapes = [
            (600, 600, 1100, 14, false),
            (600, 600, 1100, 30, true),
            (307, 200, 100, 14, false),
            (450, 300, 530, 28, true),
            (256, 784, 256, 6, false),
            (1100, 300, 600, 14, false),
        ];
        let mut stolen = 0;
        for (m, k, n, cut, accumulate) in shapes {
            let (a, b, c0) = operands(m, k, n);
            let o = |c: &mut Vec<f32>| Operands {
                k,
                a: &a,
                sa: Strides::new(m, k, false),
                b: &b,
                sb: Strides::new(k, n, false),
                out: Output {
                    ptr: c.as_mut_ptr(),
                    ld: n,
                },
                accumulate,
            };
            // One task over every row.
            let mut want = c0.clone();
            let whole = o(&mut want);
            // SAFETY: T's instruction set is present and the ranges are the
            // shapes.
            unsafe { own_blocks::<T>(&whole, 0..m, 0..n, &Progress::default(), &mut Vec::new()) };
            let second = Blocks::of::<T>(cut..m, 0..n, k);
            let last = second.count() - 1;
            // More than the last block's stripes: some of an earlier block.
            let enough = if last > 0 {
                second.stripes(last) + 1
            } else {
                1
            };
            // Tried until the first task took enough.
            for _ in 0..50 {
                let mut got = c0.clone();
                let split_o = o(&mut got);
                let progress = [Progress::default(), Progress::default()];
                let took = std::thread::scope(|scope| {
                    let (split_o, progress) = (&split_o, &progress);
                    scope.spawn(move || {
                        // SAFETY: as above; the two tasks' rows are disjoint
                        // and each stripe is taken once.
                        unsafe {
                            own_blocks::<T>(split_o, cut..m, 0..n, &progress[1], &mut Vec::new())
                        }
                    });
                    let mut packed = Vec::new();
                    // SAFETY: as above.
                    unsafe {
                        own_blocks::<T>(split_o, 0..cut, 0..n, &progress[0], &mut packed);
                        // Until the second task opens its first block (a
                        // task in a product looks once and does not wait).
                        while progress[1].current.load(Ordering::Acquire) == 0 {
                            std::hint::spin_loop();
                        }
                        let (pa, _) = Packing::of::<T>(&(0..cut), &(0..n)).split(&mut packed);
                        others_blocks::<T>(
                            split_o,
                            cut..m,
                            0..n,
                            &progress[1],
                            &mut pa[..T::MR * KC],
                        )
                    }
                });
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{m} × {k} × {n}, cut at {cut}");
                if took >= enough {
                    stolen += 1;
                    break;
                }
            }
        }
        assert_eq!(
            stolen,
            shapes.len(),
            "every shape had enough stripes taken by the other task"
        );
    }

    #[test]
    fn narrow_products_are_computed_transposed_where_that_takes_fewer_tiles() {
        // A head of 10 outputs on 256 rows: 160 tiles' rows against 256.
        assert!(transposed::<Avx2>(256, 256, 10, false));
        assert!(transposed::<Avx512>(256, 256, 10, false));
        // 17 columns: 300 rows of 2 panels as given, 17 rows of 19 panels
        // transposed; 32 columns fill their 2 panels as given.
        assert!(transposed::<Avx2>(300, 40, 17, false));
        assert!(!transposed::<Avx2>(256, 256, 32, false));
        // Wider than two panels, or fewer rows than a panel: as given.
        assert!(!transposed::<Avx2>(1024, 256, 33, false));
        assert!(!transposed::<Avx2>(15, 256, 10, false));
        // Square: never.
        assert!(!transposed::<Avx2>(20, 20, 20, false));
        // Accumulated: only over one block of terms.
        assert!(transposed::<Avx2>(256, KC, 10, true));
        assert!(!transposed::<Avx2>(256, KC + 1, 10, true));
        assert!(transposed::<Avx2>(256, KC + 1, 10, false));
    }

    #[test]
    fn rows_are_cut_unless_c_is_wider_than_tall_and_the_columns_balance() {
        // Square or taller than wide: the rows alone.
        assert_eq!(split::<Avx512>(256, 256, 2), (1, 2));
        assert_eq!(split::<Avx512>(10, 256, 2), (1, 2));
        assert_eq!(split::<Avx512>(256, 1024, 4), (1, 4));
        // One stripe of rows: a single task when the rows are cut.
        assert_eq!(split::<Avx512>(14, 14, 2), (1, 1));
        // Wider than tall: the columns first, where they share evenly.
        assert_eq!(split::<Avx512>(512, 256, 2), (2, 1));
        assert_eq!(split::<Avx512>(320, 256, 2), (2, 1));
        assert_eq!(split::<Avx512>(256, 10, 2), (2, 1));
        // 784 columns (25 panels): 13 + 12 panels of 256 rows is more than
        // 25 panels of 128 rows.
        assert_eq!(split::<Avx512>(784, 256, 2), (1, 2));
        // 80 columns (3 panels) over 2 threads: 2 + 1 panels would leave one
        // thread idle a third of the time; 40 + 39 rows do not.
        assert_eq!(split::<Avx512>(80, 79, 2), (1, 2));
        // One stripe of rows: only the columns can be cut.
        assert_eq!(split::<Avx512>(80, 14, 2), (2, 1));
        // More threads than panels: the rest cut the rows.
        assert_eq!(split::<Avx512>(64, 60, 4), (2, 2));
        // Tall: the rows alone from ROWS_FIRST rows per thread on, even
        // where C is wider than tall.
        assert_eq!(split::<Avx512>(1024, 2 * ROWS_FIRST, 2), (1, 2));
        assert_eq!(split::<Avx512>(1024, 2 * ROWS_FIRST - 1, 2), (2, 1));
        assert_eq!(
            split::<Avx512>(8 * ROWS_FIRST, 4 * ROWS_FIRST + 3, 4),
            (1, 4)
        );
    }
}
