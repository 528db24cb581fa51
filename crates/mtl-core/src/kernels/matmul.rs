//! Matrix products through `matrixmultiply` (nalgebra's GEMM), with its
//! `threading` feature so large products use every core.
//!
//! The backend was chosen by measurement (`benches/benches/core.rs`, figures in
//! `benches/README.md`): on this project's AVX-512 machine with 2 threads,
//! `matrixmultiply` reached about 1.5x the GFLOP/s of the `gemm` crate at
//! n = 1024, whose AVX-512 kernels need a nightly compiler. The threads split
//! the output into blocks and never the inner dimension, so every element is
//! summed in the same order whatever the thread count.
//!
//! `matrixmultiply` packs the left operand in column order and the right one
//! in row order: a panel is copied a run at a time where the operand already
//! lies that way, and element by element otherwise. A large left operand
//! stored by rows (`x` in `x·Wᵀ`, `G` in `G·W`) or right operand stored by
//! columns (`Wᵀ`) is therefore first transposed by 8 × 8 AVX blocks into a
//! scratch buffer, which is several times faster than the element-wise
//! packing. The product reads the same values in the same order either way,
//! so the result is the same to the bit.

/// Operands of at least this many elements that `matrixmultiply` would pack
/// element by element are transposed first.
const TRANSPOSE_MIN: usize = 1 << 14;

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
    // Operands packed element by element are transposed first (see the
    // module docs), then read column-major (a) or row-major (b).
    let a_t;
    let a = if !trans_a && m * k >= TRANSPOSE_MIN && transpose::available() {
        a_t = transpose::transposed(&a[..m * k], m, k);
        &a_t[..]
    } else {
        a
    };
    let trans_a = trans_a || m * k >= TRANSPOSE_MIN && transpose::available();
    let b_t;
    let b = if trans_b && k * n >= TRANSPOSE_MIN && transpose::available() {
        b_t = transpose::transposed(&b[..k * n], n, k);
        &b_t[..]
    } else {
        b
    };
    let trans_b = trans_b && !(k * n >= TRANSPOSE_MIN && transpose::available());
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
    // SAFETY: the asserts above guarantee every index the strides reach lies in
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

/// Out-of-place transposition by 8 × 8 AVX blocks.
mod transpose {
    /// Whether the AVX transposition runs on this CPU.
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The `cols x rows` transpose of the row-major `rows x cols` matrix `src`.
    pub(super) fn transposed(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        assert!(src.len() >= rows * cols && available());
        let mut dst = Vec::<f32>::with_capacity(rows * cols);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX is present (asserted), `src` holds rows·cols floats and
        // `dst` has room for as many; `avx` writes every one of them (full
        // blocks, then the borders), so the length may then be set.
        unsafe {
            avx(src, rows, cols, dst.as_mut_ptr());
            dst.set_len(rows * cols);
        }
        dst
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn avx(src: &[f32], rows: usize, cols: usize, d: *mut f32) {
        use std::arch::x86_64::*;
        let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        let s = src.as_ptr();
        for i in (0..r8).step_by(8) {
            for j in (0..c8).step_by(8) {
                let r: [__m256; 8] =
                    std::array::from_fn(|t| _mm256_loadu_ps(s.add((i + t) * cols + j)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let out = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (t, v) in out.iter().enumerate() {
                    _mm256_storeu_ps(d.add((j + t) * rows + i), *v);
                }
            }
        }
        // The borders that do not fill an 8 x 8 block.
        for i in 0..rows {
            let from = if i < r8 { c8 } else { 0 };
            for j in from..cols {
                *d.add(j * rows + i) = *s.add(i * cols + j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn transposition_by_blocks_matches_the_definition() {
        if !transpose::available() {
            return;
        }
        for &(r, c) in &[(1, 1), (8, 8), (13, 29), (64, 17), (40, 96)] {
            let src: Vec<f32> = (0..r * c).map(|i| i as f32).collect();
            let t = transpose::transposed(&src, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], src[i * c + j], "{r}x{c} at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn transposed_operands_give_the_same_bits() {
        // Large enough to take the transposing path, odd sizes for the borders.
        let (m, k, n) = (131, 257, 140);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.3)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.1)
            .collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let mut c = vec![0.0; m * n];
                gemm(m, k, n, &a, ta, &b, tb, &mut c, false);
                // The same product with strides only (no transposition).
                let mut want = vec![0.0; m * n];
                let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
                let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
                // SAFETY: the slices hold the sizes the strides reach.
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
                        0.0,
                        want.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c), bits(&want), "trans_a {ta}, trans_b {tb}");
            }
        }
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
}
