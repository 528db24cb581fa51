//! Matrix products: this crate's own packed product (`gemm_packed.rs`) with
//! its AVX-512 tile (`gemm_avx512.rs`) or, without AVX-512, its AVX2 tile
//! (`gemm_avx2.rs`) where the CPU has them, `matrixmultiply` (nalgebra's
//! GEMM, with its `threading` feature) elsewhere.
//!
//! Both were chosen by measurement (`benches/benches/core.rs`, figures in
//! `benches/README.md`): on an Intel Xeon `matrixmultiply` reached about 1.5x
//! the GFLOP/s of the `gemm` crate at n = 1024 (on an AMD EPYC the `gemm`
//! crate was 7-9 % faster than both there), and the packed product, which
//! packs both operands, splits the work over rayon's threads (no second
//! thread pool) and keeps a 14 × 32 tile in registers on AVX-512 (6 × 16 on
//! AVX2), is faster again on the products of a training step. It sums in
//! `matrixmultiply`'s order, so both give the same bits on a CPU with fused
//! multiply-adds. Transposed operands are read through swapped strides (the
//! packed product packs them by register transposes). The threads split the
//! output into blocks and never the inner dimension, so every element is
//! summed in the same order whatever the thread count.

/// The largest inner dimension `k` that both backends sum in one pass (each
/// blocks the terms by 256): for `1 ≤ k ≤ SINGLE_PASS_K`, [`gemm`] with
/// `accumulate` gives the bits of `c + op(a) · op(b)` with the product
/// computed on its own and added after, so a gradient can be accumulated
/// in place of a product buffer and an addition.
pub const SINGLE_PASS_K: usize = 256;

/// `c = op(a) · op(b)` (or `c += op(a) · op(b)` when `accumulate`), with
/// `op(a)` of shape `m x k` and `op(b)` of shape `k x n`, all row-major.
///
/// `a` holds `m x k` elements (`k x m` when `trans_a`), `b` holds `k x n`
/// (`n x k` when `trans_b`) and `c` holds `m x n`.
///
/// # Panics
/// When a slice is shorter than its dimensions say: callers check shapes first.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
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
    assert!(a.len() >= m * k, "gemm: lhs holds {} < {}", a.len(), m * k);
    assert!(b.len() >= k * n, "gemm: rhs holds {} < {}", b.len(), k * n);
    assert!(c.len() >= m * n, "gemm: dst holds {} < {}", c.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use super::{gemm_avx2::Avx2, gemm_avx512::Avx512, gemm_packed};
        if super::avx512() {
            gemm_packed::gemm::<Avx512>(m, k, n, a, trans_a, b, trans_b, c, accumulate);
            return;
        }
        if super::avx2() {
            gemm_packed::gemm::<Avx2>(m, k, n, a, trans_a, b, trans_b, c, accumulate);
            return;
        }
    }
    portable(m, k, n, a, trans_a, b, trans_b, c, accumulate);
}

/// The product through `matrixmultiply`, for [`gemm`] once the lengths are
/// checked and every dimension is positive.
#[allow(clippy::too_many_arguments)]
fn portable(
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
    // Row-major strides: element (i, j) of a at a[i * rs + j * cs].
    let (a_rs, a_cs) = if trans_a {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if trans_b {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: `gemm`'s asserts guarantee every index the strides reach lies in
    // the slices; `c` is borrowed mutably and does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_rs,
            a_cs,
            b.as_ptr(),
            b_rs,
            b_cs,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operands `a` (`m × k`), `b` (`k × n`) and a starting `c` (`m × n`)
    /// of a product, of both signs, each scaled by its entry of `scale`.
    fn operands(m: usize, k: usize, n: usize, scale: [f32; 3]) -> [Vec<f32>; 3] {
        let value = |i: usize, salt: usize| ((i * 7 + salt) % 23) as f32 / 11.0 - 1.0;
        let fill = |len: usize, salt: usize, s: f32| (0..len).map(|i| value(i, salt) * s).collect();
        [
            fill(m * k, 1, scale[0]),
            fill(k * n, 5, scale[1]),
            fill(m * n, 9, scale[2]),
        ]
    }

    /// The bit patterns of `v`, for exact comparisons.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn naive(m: usize, k: usize, n: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let x = if ta { a[p * m + i] } else { a[i * k + p] };
                    let y = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += x as f64 * y as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn all_transpose_combinations_match_the_naive_product() {
        // Odd sizes, large enough to be split over threads, to hit edge kernels.
        for &(m, k, n) in &[(3, 5, 7), (67, 129, 65)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                .collect();
            for ta in [false, true] {
                for tb in [false, true] {
                    let mut c = vec![1.0; m * n];
                    gemm(m, k, n, &a, ta, &b, tb, &mut c, false);
                    let want = naive(m, k, n, &a, ta, &b, tb);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
                    }
                    let mut acc = vec![1.0; m * n];
                    gemm(m, k, n, &a, ta, &b, tb, &mut acc, true);
                    for (x, y) in acc.iter().zip(&want) {
                        assert!((x - (y + 1.0)).abs() < 1e-4 * (1.0 + y.abs()));
                    }
                }
            }
        }
    }

    #[test]
    fn a_single_pass_accumulation_equals_the_product_added_after() {
        // Shapes across the tile edges and narrow products, with k up to the
        // one-pass limit; the sums use both signs so rounding shows.
        let shapes = [
            (1, 1, 1),
            (5, 256, 7),
            (256, 10, 256),
            (10, 256, 256),
            (40, 100, 3),
            (33, 17, 65),
        ];
        for &(m, k, n) in &shapes {
            assert!(k <= SINGLE_PASS_K);
            let [a, b, start] = operands(m, k, n, [1.7, 0.3, 3.1]);
            for ta in [false, true] {
                for tb in [false, true] {
                    let mut product = vec![0.0; m * n];
                    gemm(m, k, n, &a, ta, &b, tb, &mut product, false);
                    let sum: Vec<f32> = start.iter().zip(&product).map(|(c, p)| c + p).collect();
                    let mut got = start.clone();
                    gemm(m, k, n, &a, ta, &b, tb, &mut got, true);
                    assert!(bits(&got) == bits(&sum), "{m}x{k}x{n}, ta {ta}, tb {tb}");
                    let mut got = start.clone();
                    portable(m, k, n, &a, ta, &b, tb, &mut got, true);
                    assert!(
                        bits(&got) == bits(&sum),
                        "portable {m}x{k}x{n}, ta {ta}, tb {tb}"
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_split_of_the_avx512_product_gives_the_bits_of_the_portable_one() {
        if !super::super::avx512() {
            eprintln!("no AVX-512 on this CPU: its tile is not used");
            return;
        }
        packed_products_match_the_portable_one::<super::super::gemm_avx512::Avx512>();
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_split_of_the_avx2_product_gives_the_bits_of_the_portable_one() {
        if !super::super::avx2() {
            eprintln!("no AVX2 with FMA on this CPU: its tile is not used");
            return;
        }
        packed_products_match_the_portable_one::<super::super::gemm_avx2::Avx2>();
    }

    /// The packed product with tile `T` gives `matrixmultiply`'s bits.
    #[cfg(target_arch = "x86_64")]
    fn packed_products_match_the_portable_one<T: super::super::gemm_packed::Tile>() {
        // Shapes across the tile edges (14 × 32 on AVX-512, 6 × 16 on
        // AVX2), the packing blocks (512 or 256 columns), the inner blocks
        // (256 terms), narrow products (computed transposed, but not when
        // accumulating over several blocks of terms), few column
        // panels (cut by rows) and tall products (cut by rows into shares
        // that end inside a stripe), and a task with more than one block of
        // columns and more rows than A's stripes kept at once (1036 or
        // 1008), on 1, 2 and 3 threads, as given and transposed, stored and
        // accumulated.
        let shapes = [
            (1, 1, 1),
            (5, 300, 7),
            (13, 257, 33),
            (37, 784, 100),
            (256, 256, 10),
            (100, 513, 300),
            (300, 40, 17),
            (20, 300, 600),
            (40, 300, 3),
            (200, 64, 80),
            (777, 300, 40),
            (300, 600, 12),
            (1050, 260, 530),
        ];
        for &(m, k, n) in &shapes {
            let [a, b, start] = operands(m, k, n, [1.0, 0.3, 1.0]);
            for ta in [false, true] {
                for tb in [false, true] {
                    for accumulate in [false, true] {
                        let mut want = start.clone();
                        portable(m, k, n, &a, ta, &b, tb, &mut want, accumulate);
                        for threads in [1, 2, 3] {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(threads)
                                .build()
                                .unwrap();
                            let mut got = start.clone();
                            pool.install(|| {
                                super::super::gemm_packed::gemm::<T>(
                                    m, k, n, &a, ta, &b, tb, &mut got, accumulate,
                                )
                            });
                            assert!(
                                bits(&got) == bits(&want),
                                "{m}x{k}x{n}, ta {ta}, tb {tb}, accumulate {accumulate}, {threads} threads"
                            );
                        }
                    }
                }
            }
        }
    }
}
