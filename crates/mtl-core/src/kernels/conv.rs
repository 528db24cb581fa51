//! im2col and col2im: a 2-D convolution becomes one matrix product.
//!
//! For an input `[C, H, W]` and a kernel `kh x kw`, `im2col` lays out a matrix of
//! `C·kh·kw` rows and `OH·OW` columns whose column `p` holds the receptive field of
//! output pixel `p`. The convolution is then `W [O, C·kh·kw] · cols`.
//! `col2im` is its adjoint: it scatters-adds columns back to the image, which is
//! the input gradient.

/// The shape arithmetic of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl ConvGeometry {
    /// Output height `(H + 2p - kh) / s + 1`.
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel_h) / self.stride + 1
    }

    /// Output width `(W + 2p - kw) / s + 1`.
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel_w) / self.stride + 1
    }

    /// Rows of the im2col matrix, `C · kh · kw`.
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }
}

/// The half-open range `lo..hi` of output positions `o < out` whose input
/// position `o·stride + k - padding` lies in `0..len`; empty when none does.
#[inline]
fn valid_range(out: usize, len: usize, k: usize, stride: usize, padding: usize) -> (usize, usize) {
    // o·s + k ≥ p  ⇔  o ≥ ⌈(p - k) / s⌉ when p > k.
    let lo = if padding > k {
        (padding - k).div_ceil(stride)
    } else {
        0
    };
    // o·s + k - p ≤ len - 1  ⇔  o ≤ ⌊(len - 1 + p - k) / s⌋ when len - 1 + p ≥ k.
    let hi = if len + padding > k {
        ((len - 1 + padding - k) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Writes the im2col matrix of one image `[C, H, W]` into `cols`
/// (`patch_len x out_h·out_w`, row-major).
///
/// For each kernel offset the valid output range is computed once; inside it
/// the row of the patch matrix is a run of the input row (contiguous for
/// stride 1), and only the borders are filled with zeros.
pub fn im2col(img: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (s, p) = (g.stride, g.padding);
    let plane_len = g.height * g.width;
    let mut rows = cols[..g.patch_len() * oh * ow].chunks_exact_mut(oh * ow);
    for plane in img[..g.channels * plane_len].chunks_exact(plane_len) {
        for ky in 0..g.kernel_h {
            let (y0, y1) = valid_range(oh, g.height, ky, s, p);
            for kx in 0..g.kernel_w {
                let (x0, x1) = valid_range(ow, g.width, kx, s, p);
                let dst = rows.next().expect("cols holds patch_len rows");
                dst[..y0 * ow].fill(0.0);
                dst[y1 * ow..].fill(0.0);
                if x0 == x1 {
                    dst[y0 * ow..y1 * ow].fill(0.0);
                    continue;
                }
                // Input column of output column x0.
                let ix0 = x0 * s + kx - p;
                for (oy, out_row) in dst[y0 * ow..y1 * ow].chunks_exact_mut(ow).enumerate() {
                    let iy = (y0 + oy) * s + ky - p;
                    let src = &plane[iy * g.width..(iy + 1) * g.width];
                    out_row[..x0].fill(0.0);
                    out_row[x1..].fill(0.0);
                    let out_run = &mut out_row[x0..x1];
                    if s == 1 {
                        out_run.copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                    } else {
                        for (o, v) in out_run.iter_mut().zip(src[ix0..].iter().step_by(s)) {
                            *o = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns `cols` (`patch_len x out_h·out_w`) back into the image
/// gradient `img` `[C, H, W]`: the adjoint of [`im2col`].
///
/// Every image element receives its contributions in the order of the kernel
/// offsets `(ky, kx)`, as in a plain element-by-element scatter, so the sums
/// are the same to the bit; only the valid runs are visited.
pub fn col2im(cols: &[f32], g: &ConvGeometry, img: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (s, p) = (g.stride, g.padding);
    let plane_len = g.height * g.width;
    let mut rows = cols[..g.patch_len() * oh * ow].chunks_exact(oh * ow);
    for plane in img[..g.channels * plane_len].chunks_exact_mut(plane_len) {
        for ky in 0..g.kernel_h {
            let (y0, y1) = valid_range(oh, g.height, ky, s, p);
            for kx in 0..g.kernel_w {
                let (x0, x1) = valid_range(ow, g.width, kx, s, p);
                let src = rows.next().expect("cols holds patch_len rows");
                if x0 == x1 {
                    continue;
                }
                let ix0 = x0 * s + kx - p;
                for (oy, src_row) in src[y0 * ow..y1 * ow].chunks_exact(ow).enumerate() {
                    let iy = (y0 + oy) * s + ky - p;
                    let dst = &mut plane[iy * g.width..(iy + 1) * g.width];
                    let src_run = &src_row[x0..x1];
                    if s == 1 {
                        for (d, v) in dst[ix0..ix0 + src_run.len()].iter_mut().zip(src_run) {
                            *d += *v;
                        }
                    } else {
                        for (d, v) in dst[ix0..].iter_mut().step_by(s).zip(src_run) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> = <x, col2im(y)> for any x, y.
        let g = ConvGeometry {
            channels: 2,
            height: 5,
            width: 4,
            kernel_h: 3,
            kernel_w: 2,
            stride: 2,
            padding: 1,
        };
        let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let n = g.patch_len() * g.out_h() * g.out_w();
        let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.71).cos()).collect();
        let mut cols = vec![0.0; n];
        im2col(&x, &g, &mut cols);
        let mut back = vec![0.0; 40];
        col2im(&y, &g, &mut back);
        let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    /// Element-by-element im2col: the definition the fast kernel must match.
    fn im2col_reference(img: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let (h, w, p) = (g.height as isize, g.width as isize, g.padding as isize);
        let mut row = 0;
        for c in 0..g.channels {
            for ky in 0..g.kernel_h {
                for kx in 0..g.kernel_w {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.stride + ky) as isize - p;
                            let ix = (ox * g.stride + kx) as isize - p;
                            cols[(row * oh + oy) * ow + ox] =
                                if iy < 0 || iy >= h || ix < 0 || ix >= w {
                                    0.0
                                } else {
                                    img[(c * g.height + iy as usize) * g.width + ix as usize]
                                };
                        }
                    }
                    row += 1;
                }
            }
        }
    }

    /// Element-by-element col2im, accumulating in `(c, ky, kx, oy, ox)` order.
    fn col2im_reference(cols: &[f32], g: &ConvGeometry, img: &mut [f32]) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let (h, w, p) = (g.height as isize, g.width as isize, g.padding as isize);
        let mut row = 0;
        for c in 0..g.channels {
            for ky in 0..g.kernel_h {
                for kx in 0..g.kernel_w {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.stride + ky) as isize - p;
                            let ix = (ox * g.stride + kx) as isize - p;
                            if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                img[(c * g.height + iy as usize) * g.width + ix as usize] +=
                                    cols[(row * oh + oy) * ow + ox];
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }

    #[test]
    fn im2col_and_col2im_match_the_reference_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut cases = 0;
        for stride in 1..=2 {
            for padding in 0..=2 {
                for _ in 0..40 {
                    let g = ConvGeometry {
                        channels: rng.gen_range(1..4),
                        height: rng.gen_range(1..12),
                        width: rng.gen_range(1..12),
                        kernel_h: rng.gen_range(1..6),
                        kernel_w: rng.gen_range(1..6),
                        stride,
                        padding,
                    };
                    if g.kernel_h > g.height + 2 * padding || g.kernel_w > g.width + 2 * padding {
                        continue;
                    }
                    cases += 1;
                    let in_len = g.channels * g.height * g.width;
                    let n = g.patch_len() * g.out_h() * g.out_w();
                    let img: Vec<f32> = (0..in_len).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    // Stale values in the buffer must be overwritten everywhere.
                    let mut fast = vec![f32::NAN; n];
                    let mut slow = vec![0.0; n];
                    im2col(&img, &g, &mut fast);
                    im2col_reference(&img, &g, &mut slow);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fast), bits(&slow), "im2col {g:?}");

                    // Values of mixed magnitude so that a changed summation
                    // order would show in the low bits.
                    let cols: Vec<f32> = (0..n)
                        .map(|_| rng.gen_range(-1.0f32..1.0) * 10f32.powi(rng.gen_range(-3..4)))
                        .collect();
                    let start: Vec<f32> = (0..in_len).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let mut fast = start.clone();
                    let mut slow = start;
                    col2im(&cols, &g, &mut fast);
                    col2im_reference(&cols, &g, &mut slow);
                    assert_eq!(bits(&fast), bits(&slow), "col2im {g:?}");
                }
            }
        }
        assert!(cases > 100, "only {cases} geometries tested");
    }
}
