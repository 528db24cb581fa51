//! The f32 matrix product on AVX-512: a 14 × 32 register tile, both operands
//! packed, the work split over rayon's threads.
//!
//! The product `C (+)= op(A) · op(B)` is cut into tasks that each own a block
//! of C's rows and columns (rows alone for tall products and where C has no
//! more columns than rows; otherwise columns first, so that each task packs
//! only its own part of B, unless C has too few columns to share them
//! evenly).
//! Within a task, for each block of 256 inner terms and each block of 512
//! columns, the task's columns of B are packed into panels of 32 columns
//! (zero-padded), then for every stripe of 14 rows of A (packed the same
//! way, once per block of terms) each panel is multiplied in registers: 28
//! accumulators of 16 lanes, one fused multiply-add per term, with the
//! panel's rows prefetched into L1 a few terms ahead. The stripes of each
//! task's last block (its last block of terms and of columns) are handed
//! out one at a time, and a task that has ended its own work takes those
//! not yet started of tasks over the same columns (its packed block of B is
//! theirs too), so that the threads end together rather than one waiting
//! for the other.
//!
//! Summation order, and so every bit of the result, is fixed by the inner
//! dimension alone: each element is summed from zero by one run of fused
//! multiply-adds over each block of 256 terms (`[0, 256)`, `[256, 512)`, …),
//! and the blocks are added to C in order (the first one stored when not
//! accumulating). That is the order of `matrixmultiply`'s AVX-512 path, so
//! this product gives the same bits as the one it replaces, whatever the
//! thread count or the split into tasks.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{lanes, share};

/// Rows of the register tile.
const MR: usize = 14;
/// Columns of the register tile (two 16-lane vectors).
const NR: usize = 32;
/// Inner terms summed in registers before they are added to C.
const KC: usize = 256;
/// Columns of B packed at once (`KC × NC` floats, 512 KiB, stay in L2).
const NC: usize = 512;
/// Rows of A whose packed stripes are kept for every block of columns
/// (`MC × KC` floats, about 1 MiB), in tasks with more than `NC` columns.
const MC: usize = 74 * MR;
/// Terms ahead of the tile's current one whose row of B's panel is
/// prefetched into L1.
const PREFETCH: usize = 16;
/// Rows per thread from which a product is cut by rows alone (see [`split`]).
const ROWS_FIRST: usize = 256;
/// Multiply-adds below which the product runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// Element strides of a row-major operand, read as given or transposed:
/// element `(i, j)` of `op(X)` sits at `x[i * row + j * col]`.
#[derive(Clone, Copy)]
struct Strides {
    row: usize,
    col: usize,
}

impl Strides {
    /// `op(X)` of `rows × cols` over a row-major `X` (`cols × rows` when
    /// transposed).
    fn new(rows: usize, cols: usize, transposed: bool) -> Self {
        if transposed {
            Strides { row: 1, col: rows }
        } else {
            Strides { row: cols, col: 1 }
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
}

/// `c = op(a) · op(b)` (or `c += …` when `accumulate`), with the shapes and
/// layout of [`super::gemm`], which checks the lengths and calls this only
/// on AVX-512 and when every dimension is positive.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
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
    if n < NR / 2 && m >= NR && (!accumulate || k <= KC) {
        // A narrow C (a head of a few outputs) would fill a fraction of each
        // 32-column tile: compute Cᵀ = op(B)ᵀ · op(A)ᵀ instead, whose rows
        // are the few columns. Each element is the same run of fused
        // multiply-adds over the same terms, so the bits do not change; an
        // accumulated product is taken this way only with one block of
        // terms, where `C + Σ` is one addition either way.
        let mut ct = vec![0.0f32; n * m];
        let swap = |s: Strides| Strides {
            row: s.col,
            col: s.row,
        };
        run_tasks(n, k, m, b, swap(sb), a, swap(sa), &mut ct, false);
        for (i, row) in c.chunks_exact_mut(n).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let x = ct[j * m + i];
                *v = if accumulate { *v + x } else { x };
            }
        }
        return;
    }
    run_tasks(m, k, n, a, sa, b, sb, c, accumulate);
}

/// `c (+)= op(a) · op(b)`, with the operands read through `sa` and `sb`, cut
/// into tasks over rayon's threads.
#[allow(clippy::too_many_arguments)]
fn run_tasks(
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
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    let work = m.saturating_mul(n).saturating_mul(k);
    let (col_tasks, row_tasks) = if threads < 2 || work < PARALLEL_MIN {
        (1, 1)
    } else {
        split(n, m, threads)
    };
    let tasks = col_tasks * row_tasks;
    if tasks == 1 {
        PACKED.with(|packed| {
            // SAFETY: avx512f is present (`super::gemm` checks) and the
            // ranges are the operands' shapes.
            unsafe {
                block(
                    &o,
                    0..m,
                    0..n,
                    &LastBlock::default(),
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
            cols.start * NR..(cols.end * NR).min(n),
        )
    };
    let last_blocks: Vec<LastBlock> = (0..tasks).map(|_| LastBlock::default()).collect();
    let run = |task: usize| {
        let (rows, cols) = range(task);
        PACKED.with(|packed| {
            let mut packed = packed.borrow_mut();
            // SAFETY: avx512f is present (`super::gemm` checks), the ranges
            // lie within the operands' shapes, and this task's block of C is
            // its own, but for the stripes of its last block that another
            // task takes; each stripe is taken once.
            unsafe {
                block(
                    &o,
                    rows.clone(),
                    cols.clone(),
                    &last_blocks[task],
                    &mut packed,
                );
                // Then the stripes not yet taken of the other tasks over the
                // same columns, whose last block of B is the one just packed.
                let (pa, pb) = Packing::of(&rows, &cols).split(&mut packed);
                for other in (0..tasks).filter(|&t| t != task && t % col_tasks == task % col_tasks)
                {
                    let (their_rows, _) = range(other);
                    last_stripes(
                        &o,
                        their_rows,
                        cols.clone(),
                        &last_blocks[other],
                        &mut pa[..MR * KC],
                        pb,
                    );
                }
            }
        });
    };
    // The first task on the calling thread, which then polls for the rest
    // rather than sleeping until they end.
    crate::workers::join_polling(|| run(0), || (1..tasks).into_par_iter().for_each(run));
}

/// How to cut the `n` columns (in panels of [`NR`]) and `m` rows of C into
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
/// processes, interleaved; `benches/README.md`, round 10). In tall products
/// cut by columns on two cores of an AMD EPYC, 1024³ products took
/// 12.5–20.3 ms in 13 of 70 processes (10.4 ms at best), cut by rows at most
/// 12.3 ms in the 70 processes between them (round 8).
///
/// Wider products cut the columns first, as far as there are panels, and
/// the rest of the threads cut the rows; where that leaves the largest task
/// bigger than cutting the rows alone would (few panels, such as three over
/// two threads), the rows alone are cut.
fn split(n: usize, m: usize, threads: usize) -> (usize, usize) {
    let stripes = m.div_ceil(MR);
    let by_rows = (1, threads.min(stripes));
    if n <= m || m / threads >= ROWS_FIRST {
        return by_rows;
    }
    let panels = n.div_ceil(NR);
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

/// The stripes of a task's last block of work (its last rows of A, last
/// block of terms and last block of columns), handed out one at a time:
/// first to the task itself, then, once it has started that block, to
/// tasks over the same columns that have ended theirs. By then every
/// earlier block of those rows is in C, so whichever task adds the last
/// block to a row adds it in the same place of the sum: the bits do not
/// depend on which task takes a stripe.
#[derive(Default)]
#[repr(align(64))]
struct LastBlock {
    /// Set by the task when it starts its last block.
    open: AtomicBool,
    /// Stripes of the last block handed out so far.
    taken: AtomicUsize,
}

impl LastBlock {
    /// The next stripe of `stripes` not yet taken, if any.
    fn take(&self, stripes: usize) -> Option<usize> {
        let s = self.taken.fetch_add(1, Ordering::Relaxed);
        (s < stripes).then_some(s)
    }
}

/// How a task of `rows` and `cols` packs A. With several blocks of
/// columns, A's stripes are packed once per block of terms and kept for
/// every block of columns, up to [`MC`] rows at a time (a pass); otherwise
/// each stripe is packed into one place just before its tiles, and all the
/// rows are one pass.
struct Packing {
    /// Whether A's stripes are kept for every block of columns.
    keep: bool,
    /// Rows of a pass.
    pass_rows: usize,
    /// Stripes of A held at once.
    held: usize,
}

impl Packing {
    /// The packing of a task of `rows` and `cols`.
    fn of(rows: &std::ops::Range<usize>, cols: &std::ops::Range<usize>) -> Self {
        let keep = cols.len() > NC;
        Packing {
            keep,
            pass_rows: if keep { MC } else { rows.len() },
            held: if keep {
                MC.min(rows.len()).div_ceil(MR)
            } else {
                1
            },
        }
    }

    /// The packing space of a task, `packed`, as A's stripes and B's block.
    fn split<'p>(&self, packed: &'p mut Vec<f32>) -> (&'p mut [f32], &'p mut [f32]) {
        let need = self.held * MR * KC + KC * NC;
        if packed.len() < need {
            packed.resize(need, 0.0);
        }
        packed.split_at_mut(self.held * MR * KC)
    }

    /// Where the last block of a task of `rows` and `cols` over `k` terms
    /// lies: the start of its last pass of rows and of its last blocks of
    /// terms and of columns.
    fn last_block(
        &self,
        rows: &std::ops::Range<usize>,
        k: usize,
        cols: &std::ops::Range<usize>,
    ) -> (usize, usize, usize) {
        (
            rows.start + (rows.len() - 1) / self.pass_rows * self.pass_rows,
            (k - 1) / KC * KC,
            cols.start + (cols.len() - 1) / NC * NC,
        )
    }
}

/// One task: rows `rows` and columns `cols` of C, over every inner term;
/// the stripes of its last block are taken from `last`.
#[target_feature(enable = "avx512f")]
unsafe fn block(
    o: &Operands,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    last: &LastBlock,
    packed: &mut Vec<f32>,
) {
    let packing = Packing::of(&rows, &cols);
    let (pa, pb) = packing.split(packed);
    let final_block = packing.last_block(&rows, o.k, &cols);
    let mut r0 = rows.start;
    while r0 < rows.end {
        let pass = r0..(r0 + packing.pass_rows).min(rows.end);
        let stripes = pass.len().div_ceil(MR);
        let mut p0 = 0;
        while p0 < o.k {
            let kc = KC.min(o.k - p0);
            let mut j0 = cols.start;
            while j0 < cols.end {
                let nc = NC.min(cols.end - j0);
                pack_b(o.b, o.sb, p0, kc, j0, nc, pb);
                let mut each = |s: usize| {
                    let slot = if packing.keep { s } else { 0 };
                    let stripe = &mut pa[slot * MR * KC..][..MR * KC];
                    let pack = j0 == cols.start;
                    stripe_tiles(
                        o,
                        pass.start + s * MR,
                        pass.end,
                        p0,
                        kc,
                        j0,
                        nc,
                        stripe,
                        pb,
                        pack,
                    );
                };
                if (pass.start, p0, j0) == final_block {
                    // Release: the earlier blocks of these rows are in C
                    // before another task may add the last one.
                    last.open.store(true, Ordering::Release);
                    while let Some(s) = last.take(stripes) {
                        each(s);
                    }
                } else {
                    (0..stripes).for_each(&mut each);
                }
                j0 += nc;
            }
            p0 += kc;
        }
        r0 = pass.end;
    }
}

/// The stripes of another task's last block (rows `rows`, columns `cols`)
/// not yet taken, once that task has started the block; returns how many
/// it took. `pb` holds, as [`block`] left it, B's part of that last block
/// (the same columns and terms); A's stripes are packed into `stripe`.
#[target_feature(enable = "avx512f")]
unsafe fn last_stripes(
    o: &Operands,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    last: &LastBlock,
    stripe: &mut [f32],
    pb: &[f32],
) -> usize {
    if !last.open.load(Ordering::Acquire) {
        return 0;
    }
    let packing = Packing::of(&rows, &cols);
    let (r0, p0, j0) = packing.last_block(&rows, o.k, &cols);
    let end = (r0 + packing.pass_rows).min(rows.end);
    let (kc, nc) = (KC.min(o.k - p0), NC.min(cols.end - j0));
    let mut took = 0;
    while let Some(s) = last.take((end - r0).div_ceil(MR)) {
        stripe_tiles(o, r0 + s * MR, end, p0, kc, j0, nc, stripe, pb, true);
        took += 1;
    }
    took
}

/// One stripe of rows from `i0` (up to `end`, at most [`MR`]) over terms
/// `p0..p0 + kc` and columns `j0..j0 + nc`, whose panels of B are in `pb`:
/// A's stripe is packed into `stripe` first when `pack`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn stripe_tiles(
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
    let mr = MR.min(end - i0);
    if pack {
        pack_a(o.a, o.sa, i0, mr, p0, kc, stripe);
    }
    let store = p0 == 0 && !o.accumulate;
    for (q, panel) in pb.chunks_exact(KC * NR).take(nc.div_ceil(NR)).enumerate() {
        let j = j0 + q * NR;
        let width = NR.min(j0 + nc - j);
        let dst = o.out.ptr.add(i0 * o.out.ld + j);
        tile(mr, kc, stripe, panel, dst, o.out.ld, width, store);
    }
}

/// Packs rows `i0..i0 + mr`, terms `p0..p0 + kc` of `op(A)` as `kc` groups of
/// `MR` floats (term-major), so the tile reads one group per term.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(
    a: &[f32],
    s: Strides,
    i0: usize,
    mr: usize,
    p0: usize,
    kc: usize,
    pa: &mut [f32],
) {
    if s.row == 1 {
        // Transposed: the rows of a term are contiguous in a, one masked
        // vector each (a call to copy so few floats costs more than the copy).
        assert!(
            (p0 + kc - 1) * s.col + i0 + mr <= a.len() && kc * MR <= pa.len(),
            "pack_a within bounds"
        );
        let keep = lanes(mr);
        for p in 0..kc {
            // SAFETY: the mr floats of term p0 + p lie within `a` and its
            // group within `pa` (asserted above); masked-off lanes are
            // neither read nor written.
            let group = _mm512_maskz_loadu_ps(keep, a.as_ptr().add((p0 + p) * s.col + i0));
            _mm512_mask_storeu_ps(pa.as_mut_ptr().add(p * MR), keep, group);
        }
    } else {
        // Each row's terms are contiguous: transpose them into the groups.
        let last = (i0 + mr - 1) * s.row + p0 + kc;
        assert!(
            last <= a.len() && kc * MR <= pa.len(),
            "pack_a within bounds"
        );
        // SAFETY: rows i0..i0 + mr hold terms p0..p0 + kc within `a`, and
        // the kc groups of MR floats lie within `pa` (both asserted above).
        transpose_into(
            a.as_ptr().add(i0 * s.row + p0),
            s.row,
            mr,
            kc,
            pa.as_mut_ptr(),
            MR,
            lanes(mr),
        );
    }
}

/// Writes `dst[q * ld_dst + r] = src[r * ld_src + q]` for `q < len` and the
/// lanes `r` of `keep` (at most 16), with zeros for the lanes `r >= rows`:
/// a transpose of `rows` contiguous source runs of `len` floats, 16 terms at
/// a time in registers (compilers otherwise vectorise this loop as scatter
/// stores, which are slow).
///
/// # Safety
///
/// AVX-512F is present; `src` holds `rows` runs of `len` floats at stride
/// `ld_src`; `dst` holds `len` runs at stride `ld_dst` of the lanes in `keep`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_into(
    src: *const f32,
    ld_src: usize,
    rows: usize,
    len: usize,
    dst: *mut f32,
    ld_dst: usize,
    keep: __mmask16,
) {
    let mut q0 = 0;
    while q0 < len {
        let n = 16.min(len - q0);
        let load = lanes(n);
        // All 16 rows and columns, masked off past `rows` and `n`, so that
        // the loops unroll and the block stays in registers. A lane masked
        // off is neither read nor written, so the addresses past the
        // operands (formed with `wrapping_add`) are never touched.
        let r: [__m512; 16] = std::array::from_fn(|i| {
            let mask = if i < rows { load } else { 0 };
            _mm512_maskz_loadu_ps(mask, src.wrapping_add(i * ld_src + q0))
        });
        let cols = transpose16(r);
        for (q, col) in cols.iter().enumerate() {
            let mask = if q < n { keep } else { 0 };
            _mm512_mask_storeu_ps(dst.wrapping_add((q0 + q) * ld_dst), mask, *col);
        }
        q0 += n;
    }
}

/// The transpose of a 16 × 16 block held as 16 row vectors: element `q` of
/// output `r` is element `r` of input `q`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // Pairs of rows interleaved: per 128-bit lane L, t[2i] = (r2i[4L], r2i+1[4L], r2i[4L+1], r2i+1[4L+1]).
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + c]: rows 4g..4g + 4 of column 4L + c, in lane L.
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = ps(_mm512_unpacklo_pd(pd(t0), pd(t2)));
        u[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(t0), pd(t2)));
        u[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(t1), pd(t3)));
        u[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(t1), pd(t3)));
    }
    // Then whole 128-bit lanes: gather the four row groups of each column.
    let mut v = [_mm512_setzero_ps(); 16];
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        v[c] = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        v[4 + c] = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
        v[8 + c] = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        v[12 + c] = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
    }
    for c in 0..4 {
        out[c] = _mm512_shuffle_f32x4::<0x88>(v[c], v[8 + c]);
        out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(v[c], v[8 + c]);
        out[4 + c] = _mm512_shuffle_f32x4::<0x88>(v[4 + c], v[12 + c]);
        out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(v[4 + c], v[12 + c]);
    }
    out
}

/// Packs terms `p0..p0 + kc`, columns `j0..j0 + nc` of `op(B)` as panels of
/// `KC × NR` floats, each `kc` rows of `NR` columns (zeros past `nc`).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(
    b: &[f32],
    s: Strides,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    pb: &mut [f32],
) {
    for (q, panel) in pb
        .chunks_exact_mut(KC * NR)
        .take(nc.div_ceil(NR))
        .enumerate()
    {
        let jq = j0 + q * NR;
        let width = NR.min(j0 + nc - jq);
        if s.col == 1 {
            for (p, row) in panel.chunks_exact_mut(NR).take(kc).enumerate() {
                let start = (p0 + p) * s.row + jq;
                if width == NR {
                    // A copy of constant length: a few vector moves, no call.
                    let full: &[f32; NR] = b[start..start + NR].try_into().expect("NR floats");
                    row.copy_from_slice(full);
                } else {
                    row[..width].copy_from_slice(&b[start..start + width]);
                    row[width..].fill(0.0);
                }
            }
        } else {
            // Transposed: each column of op(B) is contiguous in b; 16
            // columns at a time are transposed into the panel's rows.
            let last = (jq + width - 1) * s.col + p0 + kc;
            assert!(
                last <= b.len() && kc * NR <= panel.len(),
                "pack_b within bounds"
            );
            for half in 0..NR / 16 {
                let rows = width.saturating_sub(half * 16).min(16);
                // SAFETY: columns jq + 16 half.. + rows hold terms p0..p0 + kc
                // within `b` (asserted above, and not read when rows = 0);
                // the panel holds kc rows of NR floats.
                transpose_into(
                    b.as_ptr()
                        .add((jq + half * 16).min(jq + width - 1) * s.col + p0),
                    s.col,
                    rows,
                    kc,
                    panel.as_mut_ptr().add(half * 16),
                    NR,
                    lanes(16),
                );
            }
        }
    }
}

/// One register tile of `mr` rows (at most `MR`) and `width` columns (at
/// most `NR`): dispatches to the tile with `mr` fixed at compile time.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn tile(
    mr: usize,
    kc: usize,
    pa: &[f32],
    pb: &[f32],
    c: *mut f32,
    ldc: usize,
    width: usize,
    store: bool,
) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match mr {
                $($r => tile_rows::<$r>(kc, pa.as_ptr(), pb.as_ptr(), c, ldc, width, store),)*
                _ => unreachable!("tile of {mr} rows"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);
}

/// `R` rows × `width` columns of C: sums `kc` terms from zero in registers,
/// then stores them (`store`) or adds them to C.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile_rows<const R: usize>(
    kc: usize,
    pa: *const f32,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
    width: usize,
    store: bool,
) {
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(pb.add(p * NR));
        let b1 = _mm512_loadu_ps(pb.add(p * NR + 16));
        // The panel streams from L2 while A's stripe stays in L1; past the
        // panel's end this reaches into the next panel, or past the packing
        // space, where a prefetch reads nothing and cannot fault.
        let ahead = pb.wrapping_add((p + PREFETCH) * NR);
        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16) as *const i8);
        let ap = pa.add(p * MR);
        for r in 0..R {
            let av = _mm512_set1_ps(*ap.add(r));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    let (m0, m1) = (lanes(width), lanes(width.saturating_sub(16)));
    for r in 0..R {
        let row = c.add(r * ldc);
        let row_hi = row.wrapping_add(16);
        if store {
            _mm512_mask_storeu_ps(row, m0, lo[r]);
            _mm512_mask_storeu_ps(row_hi, m1, hi[r]);
        } else {
            let c0 = _mm512_maskz_loadu_ps(m0, row);
            let c1 = _mm512_maskz_loadu_ps(m1, row_hi);
            _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(c0, lo[r]));
            _mm512_mask_storeu_ps(row_hi, m1, _mm512_add_ps(c1, hi[r]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        block, last_stripes, split, transpose_into, LastBlock, Operands, Output, Packing, Strides,
        KC, MR, ROWS_FIRST,
    };
    use crate::kernels::lanes;
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
        if !super::super::avx512() {
            eprintln!("no AVX-512 on this CPU: the product's tasks are not used");
            return;
        }
        // (m, k, n, rows of the first task, accumulate): several blocks of
        // terms and of columns with A's stripes kept, one block of each, a
        // last stripe shorter than MR.
        let mut stolen = 0;
        for (m, k, n, cut, accumulate) in [
            (600, 600, 1100, 14, false),
            (600, 600, 1100, 30, true),
            (307, 200, 100, 14, false),
            (450, 300, 530, 28, true),
        ] {
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
            // SAFETY: avx512f is present and the ranges are the shapes.
            unsafe { block(&whole, 0..m, 0..n, &LastBlock::default(), &mut Vec::new()) };
            // Two tasks on two threads: the first, with far fewer rows, then
            // takes what it can of the second's last block. Tried until it
            // took some (the second is far from done when the first ends).
            for _ in 0..50 {
                let mut got = c0.clone();
                let split_o = o(&mut got);
                let lasts = [LastBlock::default(), LastBlock::default()];
                let took = std::thread::scope(|scope| {
                    let (split_o, lasts) = (&split_o, &lasts);
                    scope.spawn(move || {
                        // SAFETY: as above; the two tasks' rows are disjoint
                        // and each stripe of the last block is taken once.
                        unsafe { block(split_o, cut..m, 0..n, &lasts[1], &mut Vec::new()) }
                    });
                    let mut packed = Vec::new();
                    // SAFETY: as above.
                    unsafe {
                        block(split_o, 0..cut, 0..n, &lasts[0], &mut packed);
                        // Until the second task starts its last block (a task
                        // in a product looks once and does not wait).
                        while !lasts[1].open.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        let (pa, pb) = Packing::of(&(0..cut), &(0..n)).split(&mut packed);
                        last_stripes(split_o, cut..m, 0..n, &lasts[1], &mut pa[..MR * KC], pb)
                    }
                });
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{m} × {k} × {n}, cut at {cut}");
                if took > 0 {
                    stolen += 1;
                    break;
                }
            }
        }
        assert_eq!(stolen, 4, "every shape had stripes taken by the other task");
    }

    #[test]
    fn a_transposed_block_writes_its_lanes_and_nothing_else() {
        if !super::super::avx512() {
            eprintln!("no AVX-512 on this CPU: the register transpose is not used");
            return;
        }
        // (source rows, run length, lanes kept): partial and whole blocks of
        // 16, runs spanning several blocks, more lanes kept than rows.
        for (rows, len, kept) in [
            (3, 5, 3),
            (16, 16, 16),
            (14, 37, 14),
            (1, 17, 16),
            (9, 40, 12),
        ] {
            let ld_src = len + 3;
            let src: Vec<f32> = (0..rows * ld_src).map(|i| i as f32 + 0.5).collect();
            let ld_dst = 19;
            let mut dst = vec![-1.0f32; len * ld_dst];
            // SAFETY: avx512f is present; `src` holds `rows` runs of `len`
            // floats at stride `ld_src`, `dst` `len` runs of `ld_dst` ≥ 16.
            unsafe {
                transpose_into(
                    src.as_ptr(),
                    ld_src,
                    rows,
                    len,
                    dst.as_mut_ptr(),
                    ld_dst,
                    lanes(kept),
                );
            }
            for q in 0..len {
                for r in 0..ld_dst {
                    let want = match (r < kept, r < rows) {
                        (true, true) => src[r * ld_src + q],
                        (true, false) => 0.0,
                        (false, _) => -1.0,
                    };
                    assert_eq!(
                        dst[q * ld_dst + r],
                        want,
                        "rows {rows}, len {len}, ({q}, {r})"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_are_cut_unless_c_is_wider_than_tall_and_the_columns_balance() {
        // Square or taller than wide: the rows alone.
        assert_eq!(split(256, 256, 2), (1, 2));
        assert_eq!(split(10, 256, 2), (1, 2));
        assert_eq!(split(256, 1024, 4), (1, 4));
        // One stripe of rows: a single task when the rows are cut.
        assert_eq!(split(14, 14, 2), (1, 1));
        // Wider than tall: the columns first, where they share evenly.
        assert_eq!(split(512, 256, 2), (2, 1));
        assert_eq!(split(320, 256, 2), (2, 1));
        assert_eq!(split(256, 10, 2), (2, 1));
        // 784 columns (25 panels): 13 + 12 panels of 256 rows is more than
        // 25 panels of 128 rows.
        assert_eq!(split(784, 256, 2), (1, 2));
        // 80 columns (3 panels) over 2 threads: 2 + 1 panels would leave one
        // thread idle a third of the time; 40 + 39 rows do not.
        assert_eq!(split(80, 79, 2), (1, 2));
        // One stripe of rows: only the columns can be cut.
        assert_eq!(split(80, 14, 2), (2, 1));
        // More threads than panels: the rest cut the rows.
        assert_eq!(split(64, 60, 4), (2, 2));
        // Tall: the rows alone from ROWS_FIRST rows per thread on, even
        // where C is wider than tall.
        assert_eq!(split(1024, 2 * ROWS_FIRST, 2), (1, 2));
        assert_eq!(split(1024, 2 * ROWS_FIRST - 1, 2), (2, 1));
        assert_eq!(split(8 * ROWS_FIRST, 4 * ROWS_FIRST + 3, 4), (1, 4));
    }
}
