//! 2-D max pooling over `[C, H, W]` planes, remembering the winning index of
//! each window for the backward pass.

/// The shape arithmetic of one pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Channels (planes).
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Window size in both directions.
    pub size: usize,
    /// Stride in both directions.
    pub stride: usize,
}

impl PoolGeometry {
    /// Output height `(H - size) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.height - self.size) / self.stride + 1
    }

    /// Output width `(W - size) / stride + 1`.
    pub fn out_w(&self) -> usize {
        (self.width - self.size) / self.stride + 1
    }
}

/// Max-pools one image `[C, H, W]` into `out` `[C, OH, OW]`, writing into
/// `argmax` the flat input index of each window's maximum (first on ties).
pub fn max_pool2d(img: &[f32], g: &PoolGeometry, out: &mut [f32], argmax: &mut [u32]) {
    if g.size == 2 && g.stride == 2 {
        return max_pool2x2(img, g, out, argmax);
    }
    let (oh, ow) = (g.out_h(), g.out_w());
    for c in 0..g.channels {
        let base = c * g.height * g.width;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = f32::NEG_INFINITY;
                let mut best_i = base + oy * g.stride * g.width + ox * g.stride;
                for ky in 0..g.size {
                    for kx in 0..g.size {
                        let i = base + (oy * g.stride + ky) * g.width + ox * g.stride + kx;
                        if img[i] > best {
                            best = img[i];
                            best_i = i;
                        }
                    }
                }
                let o = (c * oh + oy) * ow + ox;
                out[o] = img[best_i];
                argmax[o] = best_i as u32;
            }
        }
    }
}

/// [`max_pool2d`] for 2 × 2 windows at stride 2, row by row: the same
/// comparisons in the same order (first maximum on ties), without index
/// arithmetic per tap.
fn max_pool2x2(img: &[f32], g: &PoolGeometry, out: &mut [f32], argmax: &mut [u32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(img.len() >= g.channels * g.height * g.width);
    assert!(out.len() >= g.channels * oh * ow && argmax.len() >= g.channels * oh * ow);
    #[cfg(target_arch = "x86_64")]
    if super::avx512() {
        // SAFETY: AVX-512F is present, and the asserts above bound every
        // index the kernel reads or writes.
        unsafe { avx512::max_pool2x2(img, g, out, argmax) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::avx2() {
        // SAFETY: AVX2 and FMA are present, and the asserts above bound
        // every index the kernel reads or writes.
        unsafe { avx2::max_pool2x2(img, g, out, argmax) };
        return;
    }
    rows2x2(img, g, out, argmax);
}

/// The portable [`max_pool2x2`], one window at a time: the four taps in
/// scalar order, `>`, so the first maximum wins on ties and a NaN never
/// does.
fn rows2x2(img: &[f32], g: &PoolGeometry, out: &mut [f32], argmax: &mut [u32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (h, w) = (g.height, g.width);
    for c in 0..g.channels {
        let base = c * h * w;
        let plane = &img[base..base + h * w];
        let outs = out[c * oh * ow..(c + 1) * oh * ow].chunks_exact_mut(ow);
        let args = argmax[c * oh * ow..(c + 1) * oh * ow].chunks_exact_mut(ow);
        for (oy, (orow, arow)) in outs.zip(args).enumerate() {
            let r0 = &plane[2 * oy * w..2 * oy * w + 2 * ow];
            let r1 = &plane[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
            for (ox, (o, a)) in orow.iter_mut().zip(arow.iter_mut()).enumerate() {
                let i0 = base + 2 * oy * w + 2 * ox;
                let taps = [
                    (r0[2 * ox], i0),
                    (r0[2 * ox + 1], i0 + 1),
                    (r1[2 * ox], i0 + w),
                    (r1[2 * ox + 1], i0 + w + 1),
                ];
                let (mut best, mut value, mut at) = (f32::NEG_INFINITY, taps[0].0, i0);
                for (v, i) in taps {
                    if v > best {
                        (best, value, at) = (v, v, i);
                    }
                }
                *o = value;
                *a = at as u32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::PoolGeometry;
    use crate::kernels::simd::{Simd, Ymm};

    /// [`super::max_pool2x2`] 8 windows at a time, masking loads and stores
    /// only at the ends of `img` and of the outputs: the even and odd
    /// columns of 16 floats of each row are separated by a shuffle and a
    /// permute, and the four taps are compared in the scalar order (`>`, so
    /// the first maximum wins on ties and a NaN never does), selecting value
    /// and index lane by lane.
    ///
    /// # Safety
    /// AVX2 and FMA are present (FMA for [`Ymm`]'s contract); `img` holds
    /// `C·H·W` floats, `out` and `argmax` `C·OH·OW` each.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn max_pool2x2(
        img: &[f32],
        g: &PoolGeometry,
        out: &mut [f32],
        argmax: &mut [u32],
    ) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let (h, w) = (g.height, g.width);
        // Lane l of a window vector reads columns 2l and 2l + 1.
        let even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let (one, down) = (_mm256_set1_epi32(1), _mm256_set1_epi32(w as i32));
        for c in 0..g.channels {
            let base = c * h * w;
            for oy in 0..oh {
                let r0 = img.as_ptr().add(base + 2 * oy * w);
                let r1 = r0.add(w);
                let o = out.as_mut_ptr().add((c * oh + oy) * ow);
                let a = argmax.as_mut_ptr().add((c * oh + oy) * ow);
                let mut ox = 0;
                while ox < ow {
                    // Up to 8 windows, from 2n floats of each row (within the
                    // row's first 2·OW ≤ W). Lanes past the n windows are
                    // never kept, so their floats may be read wherever they
                    // lie within `img` (the rest of the row, the next row);
                    // otherwise they are masked and not read.
                    let n = (ow - ox).min(8);
                    let past = base + (2 * oy + 1) * w + 2 * ox + 16 <= img.len();
                    let whole = if past { 2 } else { n / 4 };
                    let (m0, m1) = (Ymm::first(2 * n), Ymm::first((2 * n).saturating_sub(8)));
                    let (t0, t1) = columns(r0.add(2 * ox), whole, m0, m1);
                    let (t2, t3) = columns(r1.add(2 * ox), whole, m0, m1);
                    let i0 = _mm256_add_epi32(
                        _mm256_set1_epi32((base + 2 * oy * w + 2 * ox) as i32),
                        even,
                    );
                    let i2 = _mm256_add_epi32(i0, down);
                    let taps = [
                        (t0, i0),
                        (t1, _mm256_add_epi32(i0, one)),
                        (t2, i2),
                        (t3, _mm256_add_epi32(i2, one)),
                    ];
                    let (mut best, mut value, mut at) = (_mm256_set1_ps(f32::NEG_INFINITY), t0, i0);
                    for (v, i) in taps {
                        let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
                        best = _mm256_blendv_ps(best, v, gt);
                        value = _mm256_blendv_ps(value, v, gt);
                        at = _mm256_castps_si256(_mm256_blendv_ps(
                            _mm256_castsi256_ps(at),
                            _mm256_castsi256_ps(i),
                            gt,
                        ));
                    }
                    // Lanes past the n windows land on the windows stored
                    // after these (rows are stored in order), so a whole
                    // store is right wherever it stays within the outputs.
                    if (c * oh + oy) * ow + ox + 8 <= out.len().min(argmax.len()) {
                        _mm256_storeu_ps(o.add(ox), value);
                        _mm256_storeu_si256(a.add(ox) as *mut __m256i, at);
                    } else {
                        let keep = Ymm::first(n);
                        _mm256_maskstore_ps(o.add(ox), keep, value);
                        _mm256_maskstore_epi32(a.add(ox) as *mut i32, keep, at);
                    }
                    ox += n;
                }
            }
        }
    }

    /// The even and odd columns of the floats at `r` kept by `m0` (the first
    /// 8) and `m1` (the next 8), zeros elsewhere; the first `whole` (0 to 2)
    /// runs of 8 are kept whole and loaded without a mask.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns(r: *const f32, whole: usize, m0: __m256i, m1: __m256i) -> (__m256, __m256) {
        let (x0, x1) = (
            Ymm::load_part(whole >= 1, m0, r),
            Ymm::load_part(whole >= 2, m1, r.wrapping_add(8)),
        );
        // Per 128-bit half: columns 0 2 8 10 | 4 6 12 14 (and the odd ones),
        // then the middle 64-bit pairs swapped into order.
        let even = _mm256_shuffle_ps::<0b10_00_10_00>(x0, x1);
        let odd = _mm256_shuffle_ps::<0b11_01_11_01>(x0, x1);
        let order = |v: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        (order(even), order(odd))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::PoolGeometry;
    use crate::kernels::lanes;

    /// [`super::max_pool2x2`] 16 windows at a time: the even and odd columns
    /// of each pair of rows are separated by two permutes, and the four taps
    /// are compared in the scalar order (`>`, so the first maximum wins on
    /// ties and a NaN never does), selecting value and index lane by lane.
    ///
    /// # Safety
    /// AVX-512F is present; `img` holds `C·H·W` floats, `out` and `argmax`
    /// `C·OH·OW` each.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_pool2x2(
        img: &[f32],
        g: &PoolGeometry,
        out: &mut [f32],
        argmax: &mut [u32],
    ) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let (h, w) = (g.height, g.width);
        // Lane l of a window vector reads columns 2l and 2l + 1.
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        // Index steps to a window's second column and second row.
        let (one, down) = (_mm512_set1_epi32(1), _mm512_set1_epi32(w as i32));
        for c in 0..g.channels {
            let base = c * h * w;
            for oy in 0..oh {
                let r0 = img.as_ptr().add(base + 2 * oy * w);
                let r1 = r0.add(w);
                let o = out.as_mut_ptr().add((c * oh + oy) * ow);
                let a = argmax.as_mut_ptr().add((c * oh + oy) * ow);
                let mut ox = 0;
                while ox < ow {
                    let n = (ow - ox).min(16);
                    let keep = lanes(n);
                    // The 2n floats of each row under these windows.
                    let m0 = ((1u64 << (2 * n).min(16)) - 1) as __mmask16;
                    let m1 = ((1u64 << (2 * n).saturating_sub(16)) - 1) as __mmask16;
                    let (t0, t1) = columns(r0.add(2 * ox), m0, m1, even, odd);
                    let (t2, t3) = columns(r1.add(2 * ox), m0, m1, even, odd);
                    let i0 = _mm512_add_epi32(
                        _mm512_set1_epi32((base + 2 * oy * w + 2 * ox) as i32),
                        even,
                    );
                    let taps = [
                        (t0, i0),
                        (t1, _mm512_add_epi32(i0, one)),
                        (t2, _mm512_add_epi32(i0, down)),
                        (t3, _mm512_add_epi32(_mm512_add_epi32(i0, down), one)),
                    ];
                    let (mut best, mut value, mut at) = (_mm512_set1_ps(f32::NEG_INFINITY), t0, i0);
                    for (v, i) in taps {
                        let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                        best = _mm512_mask_mov_ps(best, gt, v);
                        value = _mm512_mask_mov_ps(value, gt, v);
                        at = _mm512_mask_mov_epi32(at, gt, i);
                    }
                    _mm512_mask_storeu_ps(o.add(ox), keep, value);
                    _mm512_mask_storeu_epi32(a.add(ox) as *mut i32, keep, at);
                    ox += n;
                }
            }
        }
    }

    /// The even and odd columns of the floats at `r` kept by `m0` (the first
    /// 16) and `m1` (the next 16).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn columns(
        r: *const f32,
        m0: __mmask16,
        m1: __mmask16,
        even: __m512i,
        odd: __m512i,
    ) -> (__m512, __m512) {
        let x0 = _mm512_maskz_loadu_ps(m0, r);
        let x1 = _mm512_maskz_loadu_ps(m1, r.wrapping_add(16));
        (
            _mm512_permutex2var_ps(x0, even, x1),
            _mm512_permutex2var_ps(x0, odd, x1),
        )
    }
}

/// Routes the output gradient of one image to the winning inputs: adds
/// `grad_out[o]` at `argmax[o] - base` of `grad_in` (`argmax` holds indices
/// into the whole batch, `base` is the image's first one).
pub fn max_pool2d_backward(grad_out: &[f32], argmax: &[u32], base: usize, grad_in: &mut [f32]) {
    for (&g, &i) in grad_out.iter().zip(argmax) {
        grad_in[i as usize - base] += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The general loop of [`max_pool2d`], for any window.
    fn reference(img: &[f32], g: &PoolGeometry, out: &mut [f32], argmax: &mut [u32]) {
        let (oh, ow) = (g.out_h(), g.out_w());
        for c in 0..g.channels {
            let base = c * g.height * g.width;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = f32::NEG_INFINITY;
                    let mut best_i = base + oy * g.stride * g.width + ox * g.stride;
                    for ky in 0..g.size {
                        for kx in 0..g.size {
                            let i = base + (oy * g.stride + ky) * g.width + ox * g.stride + kx;
                            if img[i] > best {
                                best = img[i];
                                best_i = i;
                            }
                        }
                    }
                    out[(c * oh + oy) * ow + ox] = img[best_i];
                    argmax[(c * oh + oy) * ow + ox] = best_i as u32;
                }
            }
        }
    }

    /// A 2-D max pooling into values and winning indices.
    type Pool = fn(&[f32], &PoolGeometry, &mut [f32], &mut [u32]);

    #[test]
    fn two_by_two_path_matches_the_general_loop() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let g = PoolGeometry {
                channels: rng.gen_range(1..4),
                height: rng.gen_range(2..11),
                width: rng.gen_range(2..71),
                size: 2,
                stride: 2,
            };
            let n = g.channels * g.height * g.width;
            // Few distinct values (ties), NaN and -inf included.
            let img: Vec<f32> = (0..n)
                .map(|_| match rng.gen_range(0..8) {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    v => v as f32 - 4.0,
                })
                .collect();
            let m = g.channels * g.out_h() * g.out_w();
            let (mut want, mut want_at) = (vec![0.0; m], vec![0; m]);
            reference(&img, &g, &mut want, &mut want_at);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // The path this CPU takes, the portable rows, and the AVX2
            // kernel wherever the CPU has AVX2 (also on AVX-512 CPUs, which
            // take the wider kernel).
            let mut paths: Vec<(&str, Pool)> = vec![("dispatched", max_pool2d), ("rows", rows2x2)];
            #[cfg(target_arch = "x86_64")]
            if crate::kernels::avx2() {
                paths.push(("avx2", |img, g, out, at| {
                    // SAFETY: AVX2 and FMA are present; the slices hold the
                    // geometry.
                    unsafe { avx2::max_pool2x2(img, g, out, at) }
                }));
            }
            for (name, pool) in paths {
                let (mut got, mut got_at) = (vec![0.0; m], vec![0; m]);
                pool(&img, &g, &mut got, &mut got_at);
                assert_eq!(bits(&got), bits(&want), "{name}, {g:?}");
                assert_eq!(got_at, want_at, "{name}, {g:?}");
            }
        }
    }
}
