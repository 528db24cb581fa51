//! Direct convolution (stride 1, no padding) with AVX-512: the forward pass
//! of a convolution with few channels without building the patch matrix.
//!
//! With few input channels the patch matrix of `im2col` has few rows
//! (`C·kh·kw`, 25 for a 5 × 5 kernel on one channel), so the matrix product
//! spends more time packing its operands than multiplying, and the patch
//! matrix itself is `kh·kw` times the image. The direct kernel instead keeps
//! a block of outputs (up to 6 output channels × 64 positions) in registers
//! and runs over the kernel taps, each tap one broadcast weight times one run
//! of the input plane. The output channels are cut into the fewest blocks of
//! at most 6, of near-equal size (20 channels as 4 × 5), so that each run of
//! the input, loaded once per tap across a cache line, feeds as many
//! multiply-adds as the registers allow.
//!
//! Positions are taken on the input's grid: output `(y, x)` sits at `y·W + x`
//! and reads the input at `y·W + x + ky·W + kx`, so every tap is one
//! contiguous run of the input; the `kw − 1` positions per row past the
//! output's width are computed and dropped.
//!
//! Each output is summed from zero by fused multiply-adds in `(c, ky, kx)`
//! order, the order in which the matrix product sums the patch matrix's rows
//! (it sums the inner dimension in one run of fused multiply-adds up to 256
//! terms), so both paths give the same bits for patches of at most 256
//! values; the bias is added last, as there.

use super::ConvGeometry;

/// Output channels per register block, at most.
const BLOCK_O: usize = 6;
/// 16-float vectors per register block (64 positions).
const BLOCK_V: usize = 4;
/// Output channels per register block of the weight gradient, at most.
const GRAD_O: usize = 5;
/// Kernel taps per register block of the weight gradient, at most.
const GRAD_TAPS: usize = 5;

/// Whether [`conv2d_direct`] runs for geometry `g` on this CPU: stride 1, no
/// padding, and AVX-512.
pub fn conv2d_direct_applies(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.padding == 0 && super::avx512()
}

/// Positions on the input grid that cover every output (`(OH−1)·W + OW`).
fn grid_len(g: &ConvGeometry) -> usize {
    (g.out_h() - 1) * g.width + g.out_w()
}

/// One image's convolution `out [O, OH, OW] = w [O, C·kh·kw] ⋆ img [C, H, W]
/// (+ bias [O])` by the direct kernel. Each output is stored from the
/// registers with its bias added (`sum + b`, as the matrix product's path
/// adds it after the sum); the grid's columns past `OW` are not stored.
///
/// # Panics
/// When [`conv2d_direct_applies`] is false for `g`, or a slice is shorter
/// than the geometry says: callers check first.
pub fn conv2d_direct(
    img: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    o: usize,
    out: &mut [f32],
) {
    assert!(conv2d_direct_applies(g), "direct convolution: unsupported");
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(img.len() >= g.channels * g.height * g.width);
    assert!(w.len() >= o * g.patch_len());
    assert!(out.len() >= o * oh * ow);
    assert!(bias.is_none_or(|b| b.len() >= o));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (checked above); the grid's `len`
    // positions cover `OH` rows of `W` of which `OW` are kept, `O` planes of
    // `OH·OW` in `out`, and the asserts bound every index read or written.
    unsafe {
        avx512::grid(img, w, g, o, grid_len(g), ow, bias, out);
    }
}

/// The weight gradient of `count` images for the direct kernel's
/// geometries: `dw [O, C·kh·kw] = Σ_n Σ_(y, x) gy_n[o, y, x] · img_n[c, y + ky, x + kx]`
/// (written, not added), for images `imgs` `[count, C, H, W]` and output
/// gradients `gys` `[count, O, OH, OW]`.
///
/// Each weight's sum runs over the images and positions in 16 interleaved
/// partial sums (one per vector lane) that are added by a fixed tree at the
/// end, so the result depends on `count` and the geometry only.
///
/// # Panics
/// When [`conv2d_direct_applies`] is false for `g`, or a slice is shorter
/// than the geometry says.
pub fn conv2d_direct_weight_grad(
    imgs: &[f32],
    gys: &[f32],
    g: &ConvGeometry,
    o: usize,
    count: usize,
    dw: &mut [f32],
) {
    assert!(conv2d_direct_applies(g), "direct convolution: unsupported");
    let (oh, ow) = (g.out_h(), g.out_w());
    let len = grid_len(g);
    assert!(imgs.len() >= count * g.channels * g.height * g.width);
    assert!(gys.len() >= count * o * oh * ow);
    assert!(dw.len() >= o * g.patch_len());
    // The output gradients on the input grid, zero past each row's width,
    // each grid starting on a cache line (`lead` floats apart, a multiple of
    // 16) so that the kernel's loads of them do not straddle two lines.
    let lead = len.next_multiple_of(16);
    let mut space = vec![0.0f32; count * o * lead + 15];
    let skip = space.as_ptr().align_offset(64).min(15);
    let grids = &mut space[skip..skip + count * o * lead];
    for (grid, plane) in grids
        .chunks_exact_mut(lead)
        .zip(gys[..count * o * oh * ow].chunks_exact(oh * ow))
    {
        for (y, row) in plane.chunks_exact(ow).enumerate() {
            grid[y * g.width..y * g.width + ow].copy_from_slice(row);
        }
    }
    let plane = g.height * g.width;
    let taps: Vec<usize> = (0..g.channels)
        .flat_map(|c| {
            (0..g.kernel_h)
                .flat_map(move |ky| (0..g.kernel_w).map(move |kx| c * plane + ky * g.width + kx))
        })
        .collect();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (checked above); `taps` and the asserts
    // bound every index the kernel reads or writes.
    unsafe {
        avx512::weight_grad(imgs, grids, &taps, g, o, count, len, lead, dw);
    }
}

/// The input gradient of `count` images for the direct kernel's geometries:
/// `dx [count, C, H, W]` (written, not added) from the output gradients
/// `gys` `[count, O, OH, OW]` and the kernel `w` `[O, C·kh·kw]`.
///
/// It is the direct convolution of the output gradient, zero-padded by
/// `kh − 1` rows and `kw − 1` columns, with the kernel flipped and its two
/// channel axes swapped; each input gradient is one run of fused
/// multiply-adds over `(o, ky, kx)`, zero terms included.
///
/// The output gradient is laid on the input's width `W`, each row followed
/// by `W − OW = kw − 1` zeros, so that the zeros past one row serve as the
/// padding before the next: input position `(y, x)` is then position
/// `y·W + x` of the direct kernel's grid, and every position of the grid is
/// an input gradient (no column is computed and dropped).
///
/// # Panics
/// When [`conv2d_direct_applies`] is false for `g`, or a slice is shorter
/// than the geometry says.
pub fn conv2d_direct_input_grad(
    gys: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    o: usize,
    count: usize,
    dx: &mut [f32],
) {
    assert!(conv2d_direct_applies(g), "direct convolution: unsupported");
    let (oh, ow) = (g.out_h(), g.out_w());
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let plane = g.height * g.width;
    let in_len = g.channels * plane;
    assert!(gys.len() >= count * o * oh * ow);
    assert!(w.len() >= o * g.patch_len());
    assert!(dx.len() >= count * in_len);
    // Each output-gradient plane on the input's width, after
    // `(kh − 1)·W + kw − 1` zeros (the reach of the flipped kernel) and
    // before `kh` rows of zeros (the reach past the last row).
    let padded = ConvGeometry {
        channels: o,
        height: oh + 2 * kh - 1,
        width: g.width,
        kernel_h: kh,
        kernel_w: kw,
        stride: 1,
        padding: 0,
    };
    let front = (kh - 1) * g.width + kw - 1;
    let padded_plane = padded.height * padded.width;
    // flipped[c, k, ky, kx] = w[k, c, kh − 1 − ky, kw − 1 − kx]
    let taps = kh * kw;
    let mut flipped = vec![0.0f32; g.channels * o * taps];
    for k in 0..o {
        for c in 0..g.channels {
            let src = &w[(k * g.channels + c) * taps..][..taps];
            let dst = &mut flipped[(c * o + k) * taps..][..taps];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    let mut gp = vec![0.0f32; o * padded_plane];
    for (gy, dxi) in gys
        .chunks_exact(o * oh * ow)
        .zip(dx.chunks_exact_mut(in_len))
        .take(count)
    {
        for (pp, src) in gp
            .chunks_exact_mut(padded_plane)
            .zip(gy.chunks_exact(oh * ow))
        {
            for (y, row) in src.chunks_exact(ow).enumerate() {
                let at = front + y * g.width;
                pp[at..at + ow].copy_from_slice(row);
            }
        }
        // The kernel reads plane k up to `k·padded_plane + front + H·W − 1`
        // (its last position plus the flipped kernel's reach), within the
        // plane since `front + H·W < (OH + 2·kh − 1)·W`, and writes the
        // `C·H·W` values of `dxi` (every column of each row kept).
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F is present (checked above); `gp` holds `o` planes
        // of `padded`, `flipped` holds `C` rows of `o·kh·kw` weights, and
        // `dxi` holds `C` planes of `H·W`, which bound every index read or
        // written (see above).
        unsafe {
            avx512::grid(
                &gp, &flipped, &padded, g.channels, plane, g.width, None, dxi,
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{ConvGeometry, BLOCK_O, BLOCK_V, GRAD_O, GRAD_TAPS};
    use crate::kernels::{lanes, share};

    /// The convolution on the input grid, positions `q < len` of `W` per
    /// row, of which the first `keep` of each row are stored: output `k` at
    /// grid position `q` goes to `out[k·P + (q / W)·keep + q % W]` (plus
    /// `bias[k]`), with `P = ⌈len / W⌉·keep` the values of a plane.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn grid(
        img: &[f32],
        w: &[f32],
        g: &ConvGeometry,
        o: usize,
        len: usize,
        keep: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let to = Stores {
            out: out.as_mut_ptr(),
            plane: len.div_ceil(g.width) * keep,
            width: g.width,
            keep,
            len,
            bias,
        };
        let blocks = o.div_ceil(BLOCK_O);
        for part in 0..blocks {
            let outs = share(o, blocks, part);
            let ob = outs.start;
            let mut q = 0;
            while q < len {
                match outs.len() {
                    6 => block::<6>(img, w, g, ob, q, &to),
                    5 => block::<5>(img, w, g, ob, q, &to),
                    4 => block::<4>(img, w, g, ob, q, &to),
                    3 => block::<3>(img, w, g, ob, q, &to),
                    2 => block::<2>(img, w, g, ob, q, &to),
                    _ => block::<1>(img, w, g, ob, q, &to),
                }
                q += 16 * BLOCK_V;
            }
        }
    }

    /// Where [`grid`]'s blocks store their sums.
    struct Stores<'a> {
        out: *mut f32,
        plane: usize,
        width: usize,
        keep: usize,
        len: usize,
        bias: Option<&'a [f32]>,
    }

    /// Calls `store(at, mask)` for each run of the vector of grid positions
    /// `q0..q0 + 16` (up to the grid's length) that is stored: per row the
    /// vector touches, the offset in the plane of its lane 0 (which may lie
    /// before the plane: only the masked lanes are written) and the mask of
    /// its lanes in that row that are kept.
    #[inline(always)]
    fn each_run(to: &Stores<'_>, q0: usize, mut store: impl FnMut(isize, u16)) {
        if q0 >= to.len {
            return;
        }
        let count = (to.len - q0).min(16);
        let (mut row, mut col) = (q0 / to.width, q0 % to.width);
        let mut lane = 0;
        while lane < count {
            let here = (to.width - col).min(count - lane);
            let kept = to.keep.saturating_sub(col).min(here);
            if kept > 0 {
                let at = (row * to.keep + col) as isize - lane as isize;
                store(at, lanes(kept) << lane);
            }
            lane += here;
            row += 1;
            col = 0;
        }
    }

    /// `dw[o, t] = Σ_n Σ_q grids[n, o, q] · imgs[n, taps[t] + q]` over `q < len`,
    /// with the grids `lead` floats apart.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn weight_grad(
        imgs: &[f32],
        grids: &[f32],
        taps: &[usize],
        g: &ConvGeometry,
        o: usize,
        count: usize,
        len: usize,
        lead: usize,
        dw: &mut [f32],
    ) {
        let (o_blocks, t_blocks) = (o.div_ceil(GRAD_O), taps.len().div_ceil(GRAD_TAPS));
        for op in 0..o_blocks {
            let outs = share(o, o_blocks, op);
            for tp in 0..t_blocks {
                let ts = share(taps.len(), t_blocks, tp);
                // Blocks hold at most `GRAD_O` channels and `GRAD_TAPS` taps.
                macro_rules! grad {
                    ($a:literal, $b:literal) => {
                        grad_block::<$a, $b>(
                            imgs, grids, taps, g, o, count, len, lead, outs.start, ts.start, dw,
                        )
                    };
                }
                macro_rules! by_taps {
                    ($a:literal) => {
                        match ts.len() {
                            1 => grad!($a, 1),
                            2 => grad!($a, 2),
                            3 => grad!($a, 3),
                            4 => grad!($a, 4),
                            _ => grad!($a, 5),
                        }
                    };
                }
                match outs.len() {
                    1 => by_taps!(1),
                    2 => by_taps!(2),
                    3 => by_taps!(3),
                    4 => by_taps!(4),
                    _ => by_taps!(5),
                }
            }
        }
    }

    /// Weights `(ob..ob + OB, t..t + NT)` of [`weight_grad`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn grad_block<const OB: usize, const NT: usize>(
        imgs: &[f32],
        grids: &[f32],
        taps: &[usize],
        g: &ConvGeometry,
        o: usize,
        count: usize,
        len: usize,
        lead: usize,
        ob: usize,
        t: usize,
        dw: &mut [f32],
    ) {
        let in_len = g.channels * g.height * g.width;
        let plen = taps.len();
        let mut acc = [[_mm512_setzero_ps(); NT]; OB];
        for n in 0..count {
            let img = imgs.as_ptr().add(n * in_len);
            let grid = grids.as_ptr().add((n * o + ob) * lead);
            let mut q = 0;
            while q < len {
                let m = lanes(len - q);
                let mut x = [_mm512_setzero_ps(); NT];
                for (j, x) in x.iter_mut().enumerate() {
                    *x = _mm512_maskz_loadu_ps(m, img.add(taps[t + j] + q));
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let gv = _mm512_maskz_loadu_ps(m, grid.add(i * lead + q));
                    for j in 0..NT {
                        acc[j] = _mm512_fmadd_ps(gv, x[j], acc[j]);
                    }
                }
                q += 16;
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (j, a) in acc.iter().enumerate() {
                dw[(ob + i) * plen + t + j] = _mm512_reduce_add_ps(*a);
            }
        }
    }

    /// Output channels `ob..ob + OB` at positions `q..q + 64` (masked at the
    /// grid's length), stored as [`grid`] says.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const OB: usize>(
        img: &[f32],
        w: &[f32],
        g: &ConvGeometry,
        ob: usize,
        q: usize,
        to: &Stores<'_>,
    ) {
        let plen = g.patch_len();
        let plane = g.height * g.width;
        let mut mask = [0u16; BLOCK_V];
        for (v, m) in mask.iter_mut().enumerate() {
            *m = lanes(to.len.saturating_sub(q + 16 * v));
        }
        let mut acc = [[_mm512_setzero_ps(); BLOCK_V]; OB];
        let wp = w.as_ptr().add(ob * plen);
        let mut tap = 0;
        for c in 0..g.channels {
            for ky in 0..g.kernel_h {
                let row = img.as_ptr().add(c * plane + ky * g.width + q);
                for kx in 0..g.kernel_w {
                    let src = row.add(kx);
                    let mut x = [_mm512_setzero_ps(); BLOCK_V];
                    for v in 0..BLOCK_V {
                        // Masked lanes are not read, so a run may end at the
                        // image's last element.
                        x[v] = _mm512_maskz_loadu_ps(mask[v], src.wrapping_add(16 * v));
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*wp.add(i * plen + tap));
                        for v in 0..BLOCK_V {
                            acc[v] = _mm512_fmadd_ps(wv, x[v], acc[v]);
                        }
                    }
                    tap += 1;
                }
            }
        }
        if let Some(b) = to.bias {
            for (i, acc) in acc.iter_mut().enumerate() {
                let bv = _mm512_set1_ps(b[ob + i]);
                acc.iter_mut().for_each(|a| *a = _mm512_add_ps(*a, bv));
            }
        }
        for v in 0..BLOCK_V {
            each_run(to, q + 16 * v, |at, keep| {
                for (i, acc) in acc.iter().enumerate() {
                    let dst = to.out.add((ob + i) * to.plane).wrapping_offset(at);
                    _mm512_mask_storeu_ps(dst, keep, acc[v]);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{gemm, im2col};
    use rand::{Rng, SeedableRng};

    /// `n` values drawn uniformly from `[-1, 1)`.
    fn uniform(rng: &mut impl Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// The bit patterns of `v`, to compare results exactly.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn direct_convolution_matches_im2col_and_gemm_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut cases = 0;
        for _ in 0..60 {
            let g = ConvGeometry {
                channels: rng.gen_range(1..6),
                height: rng.gen_range(1..40),
                width: rng.gen_range(1..40),
                kernel_h: rng.gen_range(1..6),
                kernel_w: rng.gen_range(1..6),
                stride: 1,
                padding: 0,
            };
            if g.kernel_h > g.height || g.kernel_w > g.width || !conv2d_direct_applies(&g) {
                continue;
            }
            cases += 1;
            let o = rng.gen_range(1..11);
            let img = uniform(&mut rng, g.channels * g.height * g.width);
            let w = uniform(&mut rng, o * g.patch_len());
            let b = uniform(&mut rng, o);
            let n = g.out_h() * g.out_w();
            let mut cols = vec![0.0; g.patch_len() * n];
            im2col(&img, &g, &mut cols);
            let mut want = vec![0.0; o * n];
            gemm(
                o,
                g.patch_len(),
                n,
                &w,
                false,
                &cols,
                false,
                &mut want,
                false,
            );
            for (plane, bias) in want.chunks_mut(n).zip(&b) {
                plane.iter_mut().for_each(|v| *v += bias);
            }
            let mut got = vec![f32::NAN; o * n];
            conv2d_direct(&img, &w, Some(&b), &g, o, &mut got);
            assert_eq!(bits(&got), bits(&want), "{g:?}, {o} outputs");
        }
        // Without AVX-512 the direct kernel never runs, so there is nothing to compare.
        if super::super::avx512() {
            assert!(cases > 20, "only {cases} geometries tested");
        }
    }

    #[test]
    fn weight_gradient_bits_do_not_depend_on_the_blocks_of_channels() {
        if !super::super::avx512() {
            eprintln!("no AVX-512 on this CPU: the direct kernel never runs");
            return;
        }
        // All output channels at once (blocks of up to 5, of near-equal
        // size) against each channel alone (blocks of 1), bit for bit.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        for (channels, size, kernel, o, count) in [
            (1, 20, 5, 10, 3),
            (3, 12, 3, 7, 2),
            (2, 9, 4, 13, 4),
            (4, 8, 1, 6, 1),
        ] {
            let g = ConvGeometry {
                channels,
                height: size,
                width: size + 1,
                kernel_h: kernel,
                kernel_w: kernel,
                stride: 1,
                padding: 0,
            };
            let n = g.out_h() * g.out_w();
            let in_len = channels * g.height * g.width;
            let imgs = uniform(&mut rng, count * in_len);
            let gys = uniform(&mut rng, count * o * n);
            let mut all = vec![f32::NAN; o * g.patch_len()];
            conv2d_direct_weight_grad(&imgs, &gys, &g, o, count, &mut all);
            for k in 0..o {
                let one: Vec<f32> = gys
                    .chunks(o * n)
                    .flat_map(|image| image[k * n..(k + 1) * n].iter().copied())
                    .collect();
                let mut dw = vec![f32::NAN; g.patch_len()];
                conv2d_direct_weight_grad(&imgs, &one, &g, 1, count, &mut dw);
                let got = &all[k * g.patch_len()..(k + 1) * g.patch_len()];
                assert_eq!(bits(got), bits(&dw), "{g:?}, channel {k} of {o}");
            }
        }
    }

    #[test]
    fn input_gradient_is_one_run_of_fused_multiply_adds_per_value() {
        if !super::super::avx512() {
            eprintln!("no AVX-512 on this CPU: the direct kernel never runs");
            return;
        }
        // dx[c, y, x] summed from zero over (o, ky, kx) of the flipped
        // kernel, one `mul_add` per term, zero terms of the padding included:
        // the kernel's order, bit for bit.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        for (channels, height, width, kh, kw, o, count) in [
            (10, 16, 16, 5, 5, 20, 2),
            (1, 36, 36, 5, 5, 10, 1),
            (3, 7, 11, 3, 2, 4, 3),
            (2, 5, 4, 1, 4, 9, 2),
            (4, 6, 6, 6, 6, 3, 1),
        ] {
            let g = ConvGeometry {
                channels,
                height,
                width,
                kernel_h: kh,
                kernel_w: kw,
                stride: 1,
                padding: 0,
            };
            let (oh, ow) = (g.out_h(), g.out_w());
            let gys = uniform(&mut rng, count * o * oh * ow);
            let w = uniform(&mut rng, o * g.patch_len());
            let mut dx = vec![f32::NAN; count * channels * height * width];
            conv2d_direct_input_grad(&gys, &w, &g, o, count, &mut dx);
            let gy_at = |n: usize, k: usize, y: isize, x: isize| -> f32 {
                if (0..oh as isize).contains(&y) && (0..ow as isize).contains(&x) {
                    gys[((n * o + k) * oh + y as usize) * ow + x as usize]
                } else {
                    0.0
                }
            };
            for n in 0..count {
                for c in 0..channels {
                    for y in 0..height {
                        for x in 0..width {
                            let mut want = 0.0f32;
                            for k in 0..o {
                                for fy in 0..kh {
                                    for fx in 0..kw {
                                        let (ky, kx) = (kh - 1 - fy, kw - 1 - fx);
                                        let wv = w[((k * channels + c) * kh + ky) * kw + kx];
                                        let (sy, sx) =
                                            (y as isize - ky as isize, x as isize - kx as isize);
                                        let gv = gy_at(n, k, sy, sx);
                                        want = wv.mul_add(gv, want);
                                    }
                                }
                            }
                            let got = dx[((n * channels + c) * height + y) * width + x];
                            assert_eq!(got.to_bits(), want.to_bits(), "{g:?} at {n} {c} {y} {x}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn direct_gradients_match_im2col_and_col2im() {
        use crate::kernels::col2im;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut cases = 0;
        for _ in 0..40 {
            let g = ConvGeometry {
                channels: rng.gen_range(1..5),
                height: rng.gen_range(1..24),
                width: rng.gen_range(1..24),
                kernel_h: rng.gen_range(1..6),
                kernel_w: rng.gen_range(1..6),
                stride: 1,
                padding: 0,
            };
            if g.kernel_h > g.height || g.kernel_w > g.width || !conv2d_direct_applies(&g) {
                continue;
            }
            cases += 1;
            let (o, count) = (rng.gen_range(1..8), rng.gen_range(1..4));
            let in_len = g.channels * g.height * g.width;
            let n = g.out_h() * g.out_w();
            let imgs = uniform(&mut rng, count * in_len);
            let gys = uniform(&mut rng, count * o * n);
            let w = uniform(&mut rng, o * g.patch_len());
            let mut want_dw = vec![0.0; o * g.patch_len()];
            let mut want_dx = vec![0.0; count * in_len];
            let mut cols = vec![0.0; g.patch_len() * n];
            for i in 0..count {
                let gy = &gys[i * o * n..(i + 1) * o * n];
                im2col(&imgs[i * in_len..], &g, &mut cols);
                gemm(
                    o,
                    n,
                    g.patch_len(),
                    gy,
                    false,
                    &cols,
                    true,
                    &mut want_dw,
                    true,
                );
                gemm(g.patch_len(), o, n, &w, true, gy, false, &mut cols, false);
                col2im(&cols, &g, &mut want_dx[i * in_len..(i + 1) * in_len]);
            }
            let mut dw = vec![f32::NAN; o * g.patch_len()];
            conv2d_direct_weight_grad(&imgs, &gys, &g, o, count, &mut dw);
            let mut dx = vec![f32::NAN; count * in_len];
            conv2d_direct_input_grad(&gys, &w, &g, o, count, &mut dx);
            for (got, want) in [(&dw, &want_dw), (&dx, &want_dx)] {
                for (a, b) in got.iter().zip(want.iter()) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}, {g:?}");
                }
            }
        }
        if super::super::avx512() {
            assert!(cases > 10, "only {cases} geometries tested");
        }
    }
}
