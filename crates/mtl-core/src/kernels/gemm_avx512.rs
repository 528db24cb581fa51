//! The f32 matrix product on AVX-512: a 12 × 32 register tile, both operands
//! packed, the work split over rayon's threads.
//!
//! The product `C (+)= op(A) · op(B)` is cut into tasks that each own a block
//! of C's rows and columns (columns first, so that each task packs only its
//! own part of B). Within a task, for each block of 256 inner terms, the
//! task's columns of B are packed into panels of 32 columns (zero-padded),
//! then for every stripe of 12 rows of A (packed the same way) each panel is
//! multiplied in registers: 24 accumulators of 16 lanes, one fused
//! multiply-add per term.
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

use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 14;
/// Columns of the register tile (two 16-lane vectors).
const NR: usize = 32;
/// Inner terms summed in registers before they are added to C.
const KC: usize = 256;
/// Columns of B packed at once (`KC × NC` floats, 512 KiB, stay in L2).
const NC: usize = 512;
/// Multiply-adds below which the product runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// Whether this CPU runs [`gemm`].
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

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
/// when [`available`] and every dimension is positive.
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
    let out = Output {
        ptr: c.as_mut_ptr(),
        ld: n,
    };
    let panels = n.div_ceil(NR);
    let stripes = m.div_ceil(MR);
    let threads = rayon::current_num_threads();
    let work = m.saturating_mul(n).saturating_mul(k);
    let (col_tasks, row_tasks) = if threads < 2 || work < PARALLEL_MIN {
        (1, 1)
    } else {
        let cols = panels.min(threads);
        (cols, threads.div_ceil(cols).min(stripes))
    };
    let run = |task: usize| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let rows = share(stripes, row_tasks, rt);
        let cols = share(panels, col_tasks, ct);
        let rows = rows.start * MR..(rows.end * MR).min(m);
        let cols = cols.start * NR..(cols.end * NR).min(n);
        PACKED.with(|packed| {
            let mut packed = packed.borrow_mut();
            // SAFETY: avx512f is present (`available`), the ranges lie within
            // the operands' shapes, and this task's block of C is its own.
            unsafe { block(k, a, sa, b, sb, out, rows, cols, accumulate, &mut packed) }
        });
    };
    let tasks = col_tasks * row_tasks;
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

/// The `part`-th of `parts` near-equal contiguous shares of `0..len`.
fn share(len: usize, parts: usize, part: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = part * base + part.min(extra);
    start..start + base + usize::from(part < extra)
}

/// One task: rows `rows` and columns `cols` of C, over every inner term.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn block(
    k: usize,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    out: Output,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    accumulate: bool,
    packed: &mut Vec<f32>,
) {
    let need = MR * KC + KC * NC;
    if packed.len() < need {
        packed.resize(need, 0.0);
    }
    let (pa, pb) = packed.split_at_mut(MR * KC);
    let mut j0 = cols.start;
    while j0 < cols.end {
        let nc = NC.min(cols.end - j0);
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            pack_b(b, sb, p0, kc, j0, nc, pb);
            let store = p0 == 0 && !accumulate;
            let mut i0 = rows.start;
            while i0 < rows.end {
                let mr = MR.min(rows.end - i0);
                pack_a(a, sa, i0, mr, p0, kc, pa);
                for (q, panel) in pb.chunks_exact(KC * NR).take(nc.div_ceil(NR)).enumerate() {
                    let j = j0 + q * NR;
                    let width = NR.min(j0 + nc - j);
                    let dst = out.ptr.add(i0 * out.ld + j);
                    tile(mr, kc, pa, panel, dst, out.ld, width, store);
                }
                i0 += mr;
            }
            p0 += kc;
        }
        j0 += nc;
    }
}

/// Packs rows `i0..i0 + mr`, terms `p0..p0 + kc` of `op(A)` as `kc` groups of
/// `MR` floats (term-major), so the tile reads one group per term.
#[inline]
fn pack_a(a: &[f32], s: Strides, i0: usize, mr: usize, p0: usize, kc: usize, pa: &mut [f32]) {
    if s.row == 1 {
        // Transposed: the rows of a term are contiguous in a.
        for (p, group) in pa.chunks_exact_mut(MR).take(kc).enumerate() {
            let start = (p0 + p) * s.col + i0;
            group[..mr].copy_from_slice(&a[start..start + mr]);
        }
    } else {
        for r in 0..mr {
            let row = &a[(i0 + r) * s.row + p0..][..kc];
            for (p, v) in row.iter().enumerate() {
                pa[p * MR + r] = *v;
            }
        }
    }
}

/// Packs terms `p0..p0 + kc`, columns `j0..j0 + nc` of `op(B)` as panels of
/// `KC × NR` floats, each `kc` rows of `NR` columns (zeros past `nc`).
#[inline]
fn pack_b(b: &[f32], s: Strides, p0: usize, kc: usize, j0: usize, nc: usize, pb: &mut [f32]) {
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
            // Transposed: each column of op(B) is contiguous in b.
            for j in 0..NR {
                if j < width {
                    let col = &b[(jq + j) * s.col + p0..][..kc];
                    for (p, v) in col.iter().enumerate() {
                        panel[p * NR + j] = *v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * NR + j] = 0.0;
                    }
                }
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
        let ap = pa.add(p * MR);
        for r in 0..R {
            let av = _mm512_set1_ps(*ap.add(r));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    let mask = |cols: usize| -> __mmask16 { ((1u32 << cols.min(16)) - 1) as __mmask16 };
    let (m0, m1) = (mask(width), mask(width.saturating_sub(16)));
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
