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

/// Routes the output gradient of one image to the winning inputs (adds into `grad_in`).
pub fn max_pool2d_backward(grad_out: &[f32], argmax: &[u32], grad_in: &mut [f32]) {
    for (&g, &i) in grad_out.iter().zip(argmax) {
        grad_in[i as usize] += g;
    }
}
