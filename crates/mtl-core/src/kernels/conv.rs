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

/// Writes the im2col matrix of one image `[C, H, W]` into `cols`
/// (`patch_len x out_h·out_w`, row-major).
pub fn im2col(img: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (h, w) = (g.height as isize, g.width as isize);
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &img[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                let dst = &mut cols[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                    let out_row = &mut dst[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.width..(iy as usize + 1) * g.width];
                    for (ox, o) in out_row.iter_mut().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.padding as isize;
                        *o = if ix < 0 || ix >= w {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds the columns `cols` (`patch_len x out_h·out_w`) back into the image
/// gradient `img` `[C, H, W]`: the adjoint of [`im2col`].
pub fn col2im(cols: &[f32], g: &ConvGeometry, img: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (h, w) = (g.height as isize, g.width as isize);
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &mut img[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                let src = &cols[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                    if iy < 0 || iy >= h {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix = (ox * g.stride + kx) as isize - g.padding as isize;
                        if ix >= 0 && ix < w {
                            plane[iy as usize * g.width + ix as usize] += src[oy * ow + ox];
                        }
                    }
                }
                row += 1;
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
}
