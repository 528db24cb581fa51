//! The two passes over the task Jacobian that every Gramian-based balancer needs.
//!
//! The Jacobian `J ∈ R^{T×P}` arrives as `T` rows of `P` `f32` values stored one
//! after the other (row-major). Gradient-manipulation balancers reduce it to
//!
//! * the Gram matrix `G = J Jᵀ` (`G_ij = g_i·g_j`, `T(T+1)/2` dot products of
//!   length `P`), computed by [`gram`] in **one pass** over `J`, and
//! * the combined direction `d = Jᵀ w = Σ_i w_i g_i`, computed by [`combine_rows`]
//!   in **one pass** over `J`.
//!
//! A `P × P` matrix is never formed. Both kernels walk the columns in fixed
//! blocks small enough that the `T` row slices of a block stay in cache while
//! every pair of rows is multiplied, so each value of `J` is read from memory
//! once. Products are accumulated in `f64`.
//!
//! # Determinism
//!
//! The column range is cut into chunks whose boundaries depend only on `T` and
//! `P`; each chunk is reduced on its own and the partial results are added in
//! chunk order. The result is therefore bit-identical whether the chunks run on
//! one thread or many, and whatever the size of the rayon pool. Rayon is used
//! only when `T·P ≥` [`PARALLEL_MIN_VALUES`].

use std::ops::Range;

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::GradRows;
use crate::error::{Error, Result};

/// Below this many Jacobian entries (`T·P`) both kernels run on the calling
/// thread. On two cores of an Intel Xeon, the Gram matrix of two rows of
/// 65 536 values (2¹⁷) took 21 µs on one thread and the combination 23 µs;
/// in the W1 `T = 2` MGDA-UB step (`benches/peer`) the balancer took 48–52
/// µs with the threshold at 2¹⁶, against 69–73 µs at 2¹⁸, where both ran on
/// one thread. Below 2¹⁶ values a pass takes a few microseconds, about what
/// handing half of it to another thread costs.
pub const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// Number of `f32` values of `J` (all rows together) in one cache block:
/// 64 KiB, half of a typical L2 slice, so the `T` row slices of a block are
/// re-read from cache for every pair of rows.
const BLOCK_VALUES: usize = 1 << 14;

/// Columns per parallel chunk for the Gram kernel. A chunk is reduced
/// sequentially block after block; chunks are combined in order.
const CHUNK_COLUMNS: usize = 1 << 15;

/// Independent `f64` accumulators in the dot-product kernel (lets the compiler
/// keep several vector lanes busy without reassociating a single sum).
const LANES: usize = 8;

/// Columns per block for `tasks` rows: a multiple of [`LANES`], at least 64.
fn block_columns(tasks: usize) -> usize {
    let columns = BLOCK_VALUES / tasks.max(1);
    (columns / LANES * LANES).max(64)
}

/// Upper triangle (row by row, `i ≤ j`) of `Σ_{k ∈ columns} g_ik g_jk`,
/// compiled for AVX-512 where the CPU has it (8 `f64` lanes per operation
/// instead of SSE's 2), else for AVX2 where it has that (4 lanes). The
/// kernel uses only correctly rounded IEEE operations in an order fixed by
/// the code (Rust never contracts or reassociates them), so every build
/// gives the same bits.
fn gram_chunk(
    rows: &[f32],
    tasks: usize,
    cols: usize,
    columns: Range<usize>,
    pairs: Pairs,
) -> Vec<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { gram_chunk_avx512(rows, tasks, cols, columns, pairs) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { gram_chunk_avx2(rows, tasks, cols, columns, pairs) };
    }
    gram_chunk_portable::<false>(rows, tasks, cols, columns, pairs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gram_chunk_avx2(
    rows: &[f32],
    tasks: usize,
    cols: usize,
    columns: Range<usize>,
    pairs: Pairs,
) -> Vec<f64> {
    gram_chunk_portable::<false>(rows, tasks, cols, columns, pairs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gram_chunk_avx512(
    rows: &[f32],
    tasks: usize,
    cols: usize,
    columns: Range<usize>,
    pairs: Pairs,
) -> Vec<f64> {
    gram_chunk_portable::<true>(rows, tasks, cols, columns, pairs)
}

/// Dot products the AVX-512 pass computes together ([`dots_avx512`]):
/// independent sums, so that the additions of one do not wait for those of
/// another.
const GROUP: usize = 4;

/// `Σ_k a_k b_k` in `f64` with [`LANES`] interleaved accumulators combined in
/// a fixed order.
#[inline(always)]
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let pairs = a.chunks_exact(LANES).zip(b.chunks_exact(LANES));
    for (x, y) in pairs {
        for k in 0..LANES {
            acc[k] += f64::from(x[k]) * f64::from(y[k]);
        }
    }
    let tail_start = a.len() / LANES * LANES;
    let mut tail = 0.0f64;
    for (x, y) in a[tail_start..].iter().zip(&b[tail_start..]) {
        tail += f64::from(*x) * f64::from(*y);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `[dot_f64(a[g], b[g]); G]` on AVX-512, the `G` sums interleaved: each
/// sum's eight lanes in one register, multiplied and added as separate
/// correctly rounded operations (no fused multiply-add) as [`dot_f64`] does
/// lane by lane, and combined in its order, so the bits are the same.
///
/// # Safety
///
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dots_avx512<const G: usize>(a: [&[f32]; G], b: [&[f32]; G]) -> [f64; G] {
    use std::arch::x86_64::*;
    let len = a[0].len();
    let full = len / LANES * LANES;
    assert!(
        a.iter().chain(&b).all(|s| s.len() == len),
        "dots: equal lengths"
    );
    let mut acc = [_mm512_setzero_pd(); G];
    for k in (0..full).step_by(LANES) {
        for g in 0..G {
            // SAFETY: k + LANES <= full <= len, the length of every slice.
            let x = _mm512_cvtps_pd(_mm256_loadu_ps(a[g].as_ptr().add(k)));
            let y = _mm512_cvtps_pd(_mm256_loadu_ps(b[g].as_ptr().add(k)));
            acc[g] = _mm512_add_pd(acc[g], _mm512_mul_pd(x, y));
        }
    }
    std::array::from_fn(|g| {
        let mut lanes = [0.0f64; LANES];
        // SAFETY: `lanes` holds the register's eight f64.
        _mm512_storeu_pd(lanes.as_mut_ptr(), acc[g]);
        let mut tail = 0.0f64;
        for (x, y) in a[g][full..].iter().zip(&b[g][full..]) {
            tail += f64::from(*x) * f64::from(*y);
        }
        ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
            + tail
    })
}

/// The body of [`gram_chunk`]: block by block, the block's pairs of rows in
/// slot order: [`GROUP`] dot products at a time by [`dots_avx512`] when
/// `AVX512` (set only by a function compiled for it), else one at a time by
/// [`dot_f64`].
#[inline(always)]
fn gram_chunk_portable<const AVX512: bool>(
    rows: &[f32],
    tasks: usize,
    cols: usize,
    columns: Range<usize>,
    pairs: Pairs,
) -> Vec<f64> {
    let block = block_columns(tasks);
    let mut upper = vec![0.0f64; tasks * (tasks + 1) / 2];
    // (slot, i, j) of every entry the pass computes.
    let mut wanted = Vec::with_capacity(upper.len());
    let mut slot = 0;
    for i in 0..tasks {
        for j in i..tasks {
            if j == i || pairs == Pairs::All {
                wanted.push((slot, i, j));
            }
            slot += 1;
        }
    }
    let mut start = columns.start;
    while start < columns.end {
        let end = (start + block).min(columns.end);
        let row = |i: usize| &rows[i * cols + start..i * cols + end];
        let mut groups = wanted.chunks_exact(GROUP);
        for group in &mut groups {
            add_group::<GROUP, AVX512>(&mut upper, group, &row);
        }
        let rest = groups.remainder();
        match rest.len() {
            3 => add_group::<3, AVX512>(&mut upper, rest, &row),
            2 => add_group::<2, AVX512>(&mut upper, rest, &row),
            1 => add_group::<1, AVX512>(&mut upper, rest, &row),
            _ => {}
        }
        start = end;
    }
    upper
}

/// Adds the dot products of the `G` pairs of `group` (`(slot, i, j)`) to
/// their slots.
#[inline(always)]
fn add_group<'a, const G: usize, const AVX512: bool>(
    upper: &mut [f64],
    group: &[(usize, usize, usize)],
    row: &impl Fn(usize) -> &'a [f32],
) {
    let a = std::array::from_fn(|g| row(group[g].1));
    let b = std::array::from_fn(|g| row(group[g].2));
    #[cfg(target_arch = "x86_64")]
    let sums = if AVX512 {
        // SAFETY: `AVX512` is set only by `gram_chunk_avx512`, which runs
        // where the CPU has AVX-512F.
        unsafe { dots_avx512::<G>(a, b) }
    } else {
        std::array::from_fn(|g| dot_f64(a[g], b[g]))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let sums: [f64; G] = std::array::from_fn(|g| dot_f64(a[g], b[g]));
    for (&(slot, _, _), sum) in group.iter().zip(sums) {
        upper[slot] += sum;
    }
}

/// Fixed chunk boundaries of `range`, independent of the thread count.
fn chunks_of(range: Range<usize>, size: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(range.len().div_ceil(size.max(1)));
    let mut start = range.start;
    while start < range.end {
        let end = (start + size).min(range.end);
        out.push(start..end);
        start = end;
    }
    out
}

/// Gram matrix `G = J Jᵀ` of the rows of `J`, restricted to the columns in
/// `columns` (use `0..cols` for the whole matrix; a sub-range gives the Gram of
/// one parameter group).
///
/// `rows` holds `tasks` rows of `cols` values each. One pass over the selected
/// columns; `f64` accumulation; deterministic (see the module docs).
///
/// # Panics
///
/// If `rows.len() != tasks * cols` or `columns` is not inside `0..cols`;
/// callers validate user input before calling (an internal invariant).
pub fn gram_of_columns(
    rows: &[f32],
    tasks: usize,
    cols: usize,
    columns: Range<usize>,
) -> DMatrix<f64> {
    gram_pairs(rows, tasks, cols, columns, Pairs::All)
}

/// Which entries of the Gram matrix a pass computes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pairs {
    /// Every `g_i·g_j`.
    All,
    /// Only the squared norms `g_i·g_i` (the rest left zero).
    Diagonal,
}

/// [`gram_of_columns`] of the entries in `pairs`, each with the bits it has
/// in the full matrix (the same blocks, chunks and order).
fn gram_pairs(
    rows: &[f32],
    tasks: usize,
    cols: usize,
    columns: Range<usize>,
    pairs: Pairs,
) -> DMatrix<f64> {
    assert_eq!(rows.len(), tasks * cols, "gram: buffer is not tasks x cols");
    assert!(columns.end <= cols, "gram: column range outside the rows");
    let chunks = chunks_of(columns.clone(), CHUNK_COLUMNS);
    let partials: Vec<Vec<f64>> = if tasks * columns.len() >= PARALLEL_MIN_VALUES {
        chunks
            .into_par_iter()
            .map(|c| gram_chunk(rows, tasks, cols, c, pairs))
            .collect()
    } else {
        chunks
            .into_iter()
            .map(|c| gram_chunk(rows, tasks, cols, c, pairs))
            .collect()
    };
    let mut upper = vec![0.0f64; tasks * (tasks + 1) / 2];
    for partial in &partials {
        for (u, p) in upper.iter_mut().zip(partial) {
            *u += p;
        }
    }
    let mut g = DMatrix::zeros(tasks, tasks);
    let mut slot = 0;
    for i in 0..tasks {
        for j in i..tasks {
            g[(i, j)] = upper[slot];
            g[(j, i)] = upper[slot];
            slot += 1;
        }
    }
    g
}

/// Gram matrix `G = J Jᵀ` of all columns; see [`gram_of_columns`].
pub fn gram(rows: &[f32], tasks: usize, cols: usize) -> DMatrix<f64> {
    gram_of_columns(rows, tasks, cols, 0..cols)
}

/// Writes `d_k = Σ_i w_i g_ik` for the columns in `columns` into
/// `out[columns]` (one pass over those columns of `J`; per-column `f64`
/// accumulation in task order, so the result does not depend on threads).
///
/// # Panics
///
/// On inconsistent lengths (an internal invariant, see [`gram_of_columns`]).
pub fn combine_columns(
    rows: &[f32],
    cols: usize,
    weights: &[f64],
    columns: Range<usize>,
    out: &mut [f32],
) {
    let tasks = weights.len();
    assert_eq!(
        rows.len(),
        tasks * cols,
        "combine: buffer is not tasks x cols"
    );
    assert_eq!(out.len(), cols, "combine: output is not cols long");
    assert!(
        columns.end <= cols,
        "combine: column range outside the rows"
    );
    let block = block_columns(tasks);
    let offset = columns.start;
    let target = &mut out[columns.clone()];
    let work = |(b, chunk): (usize, &mut [f32])| {
        let start = offset + b * block;
        combine_block(rows, cols, weights, start, chunk);
    };
    if tasks * columns.len() >= PARALLEL_MIN_VALUES {
        target.par_chunks_mut(block).enumerate().for_each(work);
    } else {
        target.chunks_mut(block).enumerate().for_each(work);
    }
}

/// `chunk[k] = Σ_i w_i g_i,start+k` accumulated in `f64` in task order,
/// compiled for AVX-512 or AVX2 where the CPU has it (the same bits, as
/// for [`gram_chunk`]).
fn combine_block(rows: &[f32], cols: usize, weights: &[f64], start: usize, chunk: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        unsafe { combine_block_avx512(rows, cols, weights, start, chunk) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { combine_block_avx2(rows, cols, weights, start, chunk) };
        return;
    }
    combine_block_portable(rows, cols, weights, start, chunk);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn combine_block_avx2(
    rows: &[f32],
    cols: usize,
    weights: &[f64],
    start: usize,
    chunk: &mut [f32],
) {
    combine_block_portable(rows, cols, weights, start, chunk);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn combine_block_avx512(
    rows: &[f32],
    cols: usize,
    weights: &[f64],
    start: usize,
    chunk: &mut [f32],
) {
    combine_block_portable(rows, cols, weights, start, chunk);
}

/// The body of [`combine_block`].
#[inline(always)]
fn combine_block_portable(
    rows: &[f32],
    cols: usize,
    weights: &[f64],
    start: usize,
    chunk: &mut [f32],
) {
    // Sums of a few hundred columns at a time, in registers or L1.
    const COLUMNS: usize = 256;
    let mut sums = [0.0f64; COLUMNS];
    for (s, out) in chunk.chunks_mut(COLUMNS).enumerate() {
        let acc = &mut sums[..out.len()];
        acc.fill(0.0);
        let first = start + s * COLUMNS;
        for (i, w) in weights.iter().enumerate() {
            let g = &rows[i * cols + first..i * cols + first + out.len()];
            for (a, x) in acc.iter_mut().zip(g) {
                *a += w * f64::from(*x);
            }
        }
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = *a as f32;
        }
    }
}

/// `d = Jᵀ w = Σ_i w_i g_i` over all columns, written into `out` (length `cols`).
pub fn combine_rows(rows: &[f32], cols: usize, weights: &[f64], out: &mut [f32]) {
    combine_columns(rows, cols, weights, 0..cols, out);
}

/// [`gram`] of validated gradient rows: a NaN or infinite entry shows up on
/// the diagonal and is reported as [`Error::NonFiniteGradient`] naming the
/// first bad task (the pass over `J` is the Gram pass itself).
///
/// # Errors
///
/// [`Error::NonFiniteGradient`].
pub fn checked_gram(grads: &GradRows<'_>) -> Result<DMatrix<f64>> {
    let g = gram(grads.as_slice(), grads.rows(), grads.cols());
    check_diagonal(&g)?;
    Ok(g)
}

/// The diagonal of [`checked_gram`] (the squared norms of the rows, the same
/// bits) in a matrix whose other entries are zero, for methods that read
/// only the norms: `T` dot products instead of `T(T+1)/2`.
///
/// # Errors
///
/// [`Error::NonFiniteGradient`], as [`checked_gram`].
pub fn checked_gram_diagonal(grads: &GradRows<'_>) -> Result<DMatrix<f64>> {
    let (t, cols) = (grads.rows(), grads.cols());
    let g = gram_pairs(grads.as_slice(), t, cols, 0..cols, Pairs::Diagonal);
    check_diagonal(&g)?;
    Ok(g)
}

/// Rejects a Gram matrix with a non-finite diagonal entry (a non-finite
/// gradient row, or one whose squared norm overflows `f64`).
///
/// # Errors
///
/// [`Error::NonFiniteGradient`] naming the first bad task.
pub fn check_diagonal(g: &DMatrix<f64>) -> Result<()> {
    match (0..g.nrows()).find(|&i| !g[(i, i)].is_finite()) {
        Some(task) => Err(Error::NonFiniteGradient {
            task,
            norm: g[(task, task)].sqrt(),
        }),
        None => Ok(()),
    }
}

/// `d = Jᵀ w` for gradient rows, as a new vector (see [`combine_rows`]).
pub fn direction(grads: &GradRows<'_>, weights: &[f64]) -> Vec<f32> {
    let mut d = vec![0.0f32; grads.cols()];
    combine_rows(grads.as_slice(), grads.cols(), weights, &mut d);
    d
}

/// The Gram matrix of the rows in `tasks` only: `G[tasks, tasks]`.
pub fn restrict(g: &DMatrix<f64>, tasks: &[usize]) -> DMatrix<f64> {
    DMatrix::from_fn(tasks.len(), tasks.len(), |i, j| g[(tasks[i], tasks[j])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// f32 inputs, f64 accumulation: the kernel differs from a naive f64 loop
    /// only by summation order, ~1e-12 relative for these sizes.
    const SUM_ORDER_TOL: f64 = 1e-10;

    /// The Gram pass block by block and pair by pair with [`dot_f64`]: the
    /// order the grouped AVX-512 kernel must keep.
    fn pairwise_gram(rows: &[f32], tasks: usize, cols: usize, pairs: Pairs) -> Vec<f64> {
        let mut upper = vec![0.0f64; tasks * (tasks + 1) / 2];
        for chunk in chunks_of(0..cols, CHUNK_COLUMNS) {
            let mut part = vec![0.0f64; upper.len()];
            for block in chunks_of(chunk, block_columns(tasks)) {
                let mut slot = 0;
                for i in 0..tasks {
                    for j in i..tasks {
                        if i == j || pairs == Pairs::All {
                            let row =
                                |t: usize| &rows[t * cols + block.start..t * cols + block.end];
                            part[slot] += dot_f64(row(i), row(j));
                        }
                        slot += 1;
                    }
                }
            }
            upper.iter_mut().zip(&part).for_each(|(u, p)| *u += p);
        }
        upper
    }

    #[test]
    fn grouped_dot_products_give_the_bits_of_one_pair_at_a_time() {
        // 1 to 9 tasks: 1 to 45 pairs, every remainder of the groups of 4;
        // lengths with and without a tail of the 8 lanes, one or more blocks
        // and chunks.
        for tasks in 1..=9 {
            for cols in [1, 7, 8, 61, 2048, 8195, 40_001] {
                let rows = random_rows(tasks, cols, (tasks * 100_000 + cols) as u64);
                for pairs in [Pairs::All, Pairs::Diagonal] {
                    let g = gram_pairs(&rows, tasks, cols, 0..cols, pairs);
                    let want = pairwise_gram(&rows, tasks, cols, pairs);
                    let mut slot = 0;
                    for i in 0..tasks {
                        for j in i..tasks {
                            assert_eq!(
                                g[(i, j)].to_bits(),
                                want[slot].to_bits(),
                                "T {tasks}, P {cols}, {pairs:?}, ({i}, {j})"
                            );
                            slot += 1;
                        }
                    }
                }
            }
        }
    }

    fn random_rows(tasks: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..tasks * cols)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect()
    }

    fn naive_gram(rows: &[f32], tasks: usize, cols: usize) -> DMatrix<f64> {
        DMatrix::from_fn(tasks, tasks, |i, j| {
            (0..cols)
                .map(|k| f64::from(rows[i * cols + k]) * f64::from(rows[j * cols + k]))
                .sum()
        })
    }

    #[test]
    fn gram_matches_naive_on_small_and_parallel_sizes() {
        for &(tasks, cols) in &[(1, 3), (2, 5), (3, 1000), (5, 70_001)] {
            let rows = random_rows(tasks, cols, 7);
            let g = gram(&rows, tasks, cols);
            let n = naive_gram(&rows, tasks, cols);
            let scale = n.amax().max(1.0);
            assert!((g - n).amax() / scale < SUM_ORDER_TOL, "{tasks}x{cols}");
        }
    }

    #[test]
    fn the_avx512_and_avx2_gram_and_combine_kernels_give_the_bits_of_the_portable_ones() {
        for &(tasks, cols) in &[(1, 13), (3, 1003), (8, 40_007)] {
            let rows = random_rows(tasks, cols, 11);
            let portable = gram_chunk_portable::<false>(&rows, tasks, cols, 1..cols, Pairs::All);
            let chosen = gram_chunk(&rows, tasks, cols, 1..cols, Pairs::All);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&chosen), bits(&portable), "{tasks}x{cols}");
        }
        let (tasks, cols) = (5, 3001);
        let rows = random_rows(tasks, cols, 12);
        let weights = [0.3, -1.25, 2.0, 1e-3, 0.7];
        let mut portable = vec![0.0f32; 1000];
        let mut chosen = vec![0.0f32; 1000];
        combine_block_portable(&rows, cols, &weights, 7, &mut portable);
        combine_block(&rows, cols, &weights, 7, &mut chosen);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&chosen), bits(&portable));
        if !std::arch::is_x86_feature_detected!("avx512f")
            && !std::arch::is_x86_feature_detected!("avx2")
        {
            eprintln!("neither AVX-512 nor AVX2 on this CPU: both calls ran the portable kernel");
        }
    }

    #[test]
    fn the_diagonal_pass_gives_the_bits_of_the_full_gram_diagonal() {
        for &(tasks, cols) in &[(1, 5), (3, 1000), (8, 70_001)] {
            let rows = random_rows(tasks, cols, 17);
            let grads = GradRows::new(&rows, tasks, cols).unwrap();
            let full = checked_gram(&grads).unwrap();
            let diag = checked_gram_diagonal(&grads).unwrap();
            for i in 0..tasks {
                for j in 0..tasks {
                    let want = if i == j { full[(i, j)] } else { 0.0 };
                    assert_eq!(
                        diag[(i, j)].to_bits(),
                        want.to_bits(),
                        "{tasks}x{cols} ({i}, {j})"
                    );
                }
            }
        }
        let mut rows = random_rows(3, 10, 1);
        rows[14] = f32::NAN;
        let grads = GradRows::new(&rows, 3, 10).unwrap();
        assert!(matches!(
            checked_gram_diagonal(&grads),
            Err(Error::NonFiniteGradient { task: 1, .. })
        ));
    }

    #[test]
    fn gram_is_bit_identical_across_pool_sizes() {
        let (tasks, cols) = (4, 200_003);
        let rows = random_rows(tasks, cols, 3);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let a = one.install(|| gram(&rows, tasks, cols));
        let b = three.install(|| gram(&rows, tasks, cols));
        assert_eq!(a.as_slice(), b.as_slice());
    }

    #[test]
    fn column_groups_add_up_to_the_whole_gram() {
        let (tasks, cols) = (3, 1000);
        let rows = random_rows(tasks, cols, 11);
        let whole = gram(&rows, tasks, cols);
        let parts = gram_of_columns(&rows, tasks, cols, 0..400)
            + gram_of_columns(&rows, tasks, cols, 400..1000);
        assert!((whole - parts).amax() < SUM_ORDER_TOL * 1e3);
    }

    #[test]
    fn combine_matches_naive_and_is_deterministic() {
        let (tasks, cols) = (3, 100_003);
        let rows = random_rows(tasks, cols, 5);
        let w = [0.5, -2.0, 1.25];
        let mut d = vec![0.0f32; cols];
        combine_rows(&rows, cols, &w, &mut d);
        for k in (0..cols).step_by(997) {
            let expect: f64 = (0..tasks)
                .map(|i| w[i] * f64::from(rows[i * cols + k]))
                .sum();
            assert_eq!(d[k], expect as f32, "column {k}");
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let mut e = vec![0.0f32; cols];
        pool.install(|| combine_rows(&rows, cols, &w, &mut e));
        assert_eq!(d, e);
    }

    #[test]
    fn combine_of_a_column_range_leaves_the_rest_untouched() {
        let rows = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [9.0f32; 3];
        combine_columns(&rows, 3, &[1.0, 2.0], 1..3, &mut out);
        assert_eq!(out, [9.0, 12.0, 15.0]);
    }
}
