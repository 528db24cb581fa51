//! Vectors of `f32` lanes at the two widths the hand-written kernels use: 16
//! lanes with AVX-512F ([`Zmm`]) and 8 with AVX2 and FMA ([`Ymm`]), behind
//! one trait so that a kernel is written once and compiled for each width.
//!
//! Both widths sum their lanes by the same tree: lane `i` with lane
//! `i + 8`, then with `i + 4`, then `i + 2`, then the last two. So 16
//! partial sums give the same bits as one [`Zmm`] vector and as two [`Ymm`]
//! vectors added first, on CPUs with and without AVX-512.
//!
//! A kernel written over [`Simd`] is a chain of `#[inline(always)]`
//! functions ending in one entry function per width that carries the
//! width's `#[target_feature]`: everything inlines into the entry, so each
//! intrinsic is compiled with the features it needs and none is a call.

use std::arch::x86_64::*;

/// One width of vector registers: the operations the kernels need, each one
/// instruction or a short fixed sequence.
///
/// # Safety
/// Every method runs instructions of the width's feature set: it may be
/// called only from code compiled with those features (an entry function
/// with the width's `#[target_feature]`, into which it inlines) on a CPU
/// that has them. Pointers are read or written only in the lanes a method
/// says, which must lie in one allocation.
pub(super) unsafe trait Simd {
    /// Lanes of a vector.
    const LANES: usize;
    /// A vector of `LANES` floats.
    type V: Copy;
    /// A choice of lanes, for masked loads and stores.
    type Mask: Copy;

    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self::V;
    /// `LANES` floats from `p`.
    unsafe fn load(p: *const f32) -> Self::V;
    /// The lanes of `m` from `p` (others zero and not read).
    unsafe fn load_masked(m: Self::Mask, p: *const f32) -> Self::V;
    /// Stores `v` at `p`, all lanes.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Stores the lanes of `m` of `v` at `p` (others neither read nor
    /// written).
    unsafe fn store_masked(p: *mut f32, m: Self::Mask, v: Self::V);
    /// Lanes `from..from + n` (clipped to the vector).
    unsafe fn span(from: usize, n: usize) -> Self::Mask;
    /// `a·b + c` rounded once, lane by lane.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`, lane by lane.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of the lanes by the module's fixed tree (the same bits for
    /// the same lanes, at every width).
    unsafe fn sum(v: Self::V) -> f32;

    /// [`load`](Simd::load) when `whole`, else [`load_masked`](Simd::load_masked)
    /// (`whole` is a constant where it matters, and the branch folds away).
    #[inline(always)]
    unsafe fn load_part(whole: bool, m: Self::Mask, p: *const f32) -> Self::V {
        if whole {
            Self::load(p)
        } else {
            Self::load_masked(m, p)
        }
    }

    /// The first `n` lanes (all of them when `n ≥ LANES`).
    #[inline(always)]
    unsafe fn first(n: usize) -> Self::Mask {
        Self::span(0, n)
    }
}

/// 16 lanes: AVX-512F.
pub(super) struct Zmm;

// SAFETY: every method is one AVX-512F instruction, or the sum's fixed
// sequence of AVX-512F and AVX instructions, on the lanes it names.
unsafe impl Simd for Zmm {
    const LANES: usize = 16;
    type V = __m512;
    type Mask = __mmask16;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_masked(m: __mmask16, p: *const f32) -> __m512 {
        _mm512_maskz_loadu_ps(m, p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, m: __mmask16, v: __m512) {
        _mm512_mask_storeu_ps(p, m, v)
    }
    #[inline(always)]
    unsafe fn span(from: usize, n: usize) -> __mmask16 {
        let all = ((1u32 << n.min(16)) - 1) << from.min(16);
        all as u16
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sum(v: __m512) -> f32 {
        // Lanes 8..16 onto 0..8, then the 8-lane tree.
        let high = _mm512_shuffle_f32x4::<0b11_10_11_10>(v, v);
        Ymm::sum(_mm512_castps512_ps256(_mm512_add_ps(v, high)))
    }
}

/// 8 lanes: AVX2 and FMA.
pub(super) struct Ymm;

// SAFETY: every method is AVX or AVX2 and FMA instructions on the lanes it
// names; `vmaskmovps` neither reads nor writes (nor faults on) masked lanes.
unsafe impl Simd for Ymm {
    const LANES: usize = 8;
    type V = __m256;
    type Mask = __m256i;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_masked(m: __m256i, p: *const f32) -> __m256 {
        _mm256_maskload_ps(p, m)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, m: __m256i, v: __m256) {
        _mm256_maskstore_ps(p, m, v)
    }
    #[inline(always)]
    unsafe fn span(from: usize, n: usize) -> __m256i {
        let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let (from, end) = (from.min(8) as i32, (from + n).min(8) as i32);
        // index < end, and not index < from.
        _mm256_andnot_si256(
            _mm256_cmpgt_epi32(_mm256_set1_epi32(from), index),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(end), index),
        )
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sum(v: __m256) -> f32 {
        // Halves, then pairs, then the last two lanes.
        let four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        let one = _mm_add_ss(two, _mm_movehdup_ps(two));
        _mm_cvtss_f32(one)
    }
}

/// The sum's tree in scalar arithmetic, for tests: lane `i` plus lane
/// `i + n/2`, halving until one lane is left (`n` a power of two).
#[cfg(test)]
pub(super) fn tree(lanes: &[f32]) -> f32 {
    let mut v = lanes.to_vec();
    while v.len() > 1 {
        let half = v.len() / 2;
        v = (0..half).map(|i| v[i] + v[i + half]).collect();
    }
    v[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The masks and the fixed-tree sum of a width, checked lane by lane
    /// against scalar arithmetic.
    ///
    /// # Safety
    /// The CPU has `S`'s features, and the caller is compiled with them.
    #[inline(always)]
    unsafe fn check<S: Simd>() {
        let src: Vec<f32> = (0..S::LANES).map(|i| (i * i) as f32 + 0.25).collect();
        for from in 0..=S::LANES {
            for n in 0..=S::LANES + 1 {
                let mut out = vec![-1.0f32; S::LANES];
                let v = S::load_masked(S::span(from, n), src.as_ptr());
                S::store_masked(out.as_mut_ptr(), S::span(from, n), v);
                for (i, (&o, &s)) in out.iter().zip(&src).enumerate() {
                    let inside = i >= from && i < from + n;
                    assert_eq!(o, if inside { s } else { -1.0 }, "{from}+{n}, lane {i}");
                }
            }
        }
        // Values whose sum depends on the order of the additions: the
        // vector's sum must be the halving tree's, bit for bit.
        let mixed: Vec<f32> = (0..S::LANES)
            .map(|i| {
                (1.0 + i as f32 / 7.0)
                    * 10f32.powi(i as i32 % 5 - 2)
                    * if i % 3 == 0 { -1.0 } else { 1.0 }
            })
            .collect();
        let got = S::sum(S::load(mixed.as_ptr()));
        assert_eq!(got.to_bits(), tree(&mixed).to_bits(), "{} lanes", S::LANES);
        assert_ne!(
            tree(&mixed).to_bits(),
            mixed.iter().sum::<f32>().to_bits(),
            "the values tell the tree from a running sum"
        );
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn check_zmm() {
        check::<Zmm>()
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn check_ymm() {
        check::<Ymm>();
    }

    #[test]
    fn masks_and_sums_of_each_width_the_cpu_has() {
        if super::super::avx512() {
            // SAFETY: AVX-512F is present.
            unsafe { check_zmm() };
        }
        if super::super::avx2() {
            // SAFETY: AVX2 and FMA are present.
            unsafe { check_ymm() };
        }
    }
}
