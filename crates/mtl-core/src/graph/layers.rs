//! Layer ops: convolution, max pooling, dropout, layer and batch normalisation.

use rand::Rng;
use rayon::prelude::*;

use super::{Graph, Op, Var};
use crate::error::{CoreError, Result};
use crate::kernels::{self, ConvGeometry, PoolGeometry};
use crate::Tensor;

/// Images per work item in the parallel convolution passes. Fixed (not derived
/// from the thread count) so the summation order of weight gradients, and hence
/// every bit of the result, is the same whatever the number of threads.
pub(crate) const CONV_CHUNK: usize = 8;

/// Batch statistics of one batch-normalisation step in training mode: the
/// per-channel mean and unbiased variance, for updating running estimates.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStatistics {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Unbiased variance per channel.
    pub var: Vec<f32>,
}

fn image_dims(op: &'static str, shape: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match shape {
        [n, c, h, w] => Ok((*n, *c, *h, *w)),
        _ => Err(CoreError::InvalidShape {
            op,
            shape: shape.to_vec(),
            reason: "expected [batch, channels, height, width]".into(),
        }),
    }
}

/// `(N, C, S)` of a `[N, C]` or `[N, C, H, W]` tensor, `S` the spatial size.
fn channel_dims(op: &'static str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match shape {
        [n, c] => Ok((*n, *c, 1)),
        [n, c, h, w] => Ok((*n, *c, h * w)),
        _ => Err(CoreError::InvalidShape {
            op,
            shape: shape.to_vec(),
            reason: "expected [batch, channels] or [batch, channels, height, width]".into(),
        }),
    }
}

impl Graph {
    /// 2-D convolution of `x` `[N, C, H, W]` with kernel `w` `[O, C, kh, kw]`,
    /// optional `bias` `[O]`: by the direct kernel where it applies (stride 1,
    /// no padding, AVX-512 or AVX2 with FMA; the same bits), otherwise by
    /// im2col and one matrix product per image.
    pub fn conv2d(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        stride: usize,
        padding: usize,
    ) -> Result<Var> {
        self.check(&[x, w])?;
        let (n, c, h, wd) = image_dims("conv2d", self.shape(x)?)?;
        let wshape = self.shape(w)?.to_vec();
        let (o, kc, kh, kw) = image_dims("conv2d kernel", &wshape)?;
        if kc != c || kh > h + 2 * padding || kw > wd + 2 * padding || stride == 0 {
            return Err(CoreError::ShapeMismatch {
                op: "conv2d",
                lhs: self.shape(x)?.to_vec(),
                rhs: wshape,
            });
        }
        if let Some(b) = bias {
            let bs = self.shape(b)?;
            if bs.iter().product::<usize>() != o {
                return Err(CoreError::ShapeMismatch {
                    op: "conv2d bias",
                    lhs: wshape,
                    rhs: bs.to_vec(),
                });
            }
        }
        let geometry = ConvGeometry {
            channels: c,
            height: h,
            width: wd,
            kernel_h: kh,
            kernel_w: kw,
            stride,
            padding,
        };
        let (oh, ow) = (geometry.out_h(), geometry.out_w());
        let (in_len, out_len) = (c * h * wd, o * oh * ow);
        // Every element is written below (gemm without accumulation, or the
        // direct kernel), so a recycled buffer needs no zero fill.
        let mut out = self.buffer(n * out_len);
        let xv = self.value(x)?.data();
        let wv = self.value(w)?.data();
        let bv = match bias {
            Some(b) => Some(self.value(b)?.data()),
            None => None,
        };
        let direct = kernels::conv2d_direct_applies(&geometry);
        out.par_chunks_mut(out_len * CONV_CHUNK)
            .zip(xv.par_chunks(in_len * CONV_CHUNK))
            .for_each(|(out_chunk, x_chunk)| {
                if direct {
                    for (y, img) in out_chunk.chunks_mut(out_len).zip(x_chunk.chunks(in_len)) {
                        kernels::conv2d_direct(img, wv, bv, &geometry, o, y);
                    }
                    return;
                }
                let mut cols = vec![0.0f32; geometry.patch_len() * oh * ow];
                for (y, img) in out_chunk.chunks_mut(out_len).zip(x_chunk.chunks(in_len)) {
                    kernels::im2col(img, &geometry, &mut cols);
                    kernels::gemm(
                        o,
                        geometry.patch_len(),
                        oh * ow,
                        wv,
                        false,
                        &cols,
                        false,
                        y,
                        false,
                    );
                    if let Some(bv) = bv {
                        for (plane, &b) in y.chunks_mut(oh * ow).zip(bv) {
                            plane.iter_mut().for_each(|v| *v += b);
                        }
                    }
                }
            });
        let value = Tensor::from_vec(out, &[n, o, oh, ow])?;
        Ok(self.push(
            value,
            Op::Conv2d {
                x,
                w,
                bias,
                geometry,
            },
        ))
    }

    /// 2-D max pooling of `x` `[N, C, H, W]` with a square window.
    pub fn max_pool2d(&mut self, x: Var, size: usize, stride: usize) -> Result<Var> {
        let (n, c, h, w) = image_dims("max_pool2d", self.shape(x)?)?;
        if size == 0 || stride == 0 || size > h || size > w {
            return Err(CoreError::InvalidArgument {
                what: "max_pool2d".into(),
                reason: format!("window {size} stride {stride} does not fit a {h}x{w} image"),
            });
        }
        let geometry = PoolGeometry {
            channels: c,
            height: h,
            width: w,
            size,
            stride,
        };
        let (oh, ow) = (geometry.out_h(), geometry.out_w());
        let (in_len, out_len) = (c * h * w, c * oh * ow);
        let mut out = self.buffer(n * out_len);
        let xv = self.value(x)?.data();
        let mut argmax = vec![0u32; n * out_len];
        out.par_chunks_mut(out_len)
            .zip(argmax.par_chunks_mut(out_len))
            .zip(xv.par_chunks(in_len))
            .enumerate()
            .for_each(|(i, ((o, a), img))| {
                kernels::max_pool2d(img, &geometry, o, a);
                let base = (i * in_len) as u32;
                a.iter_mut().for_each(|v| *v += base);
            });
        let value = Tensor::from_vec(out, &[n, c, oh, ow])?;
        Ok(self.push(
            value,
            Op::MaxPool2d {
                x,
                geometry,
                argmax,
            },
        ))
    }

    /// Inverted dropout with drop probability `p` in training mode; the identity
    /// in evaluation mode. Masks come from the graph's seeded generator.
    pub fn dropout(&mut self, a: Var, p: f32) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(CoreError::InvalidArgument {
                what: "dropout p".into(),
                reason: format!("{p} is not in [0, 1)"),
            });
        }
        self.check(&[a])?;
        if !self.is_training() || p == 0.0 {
            return Ok(a);
        }
        let len = self.value(a)?.len();
        let keep = 1.0 / (1.0 - p);
        let rng = self.rng_mut();
        let mask: Vec<f32> = (0..len)
            .map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep })
            .collect();
        let mut value = self.value(a)?.clone();
        value
            .data_mut()
            .iter_mut()
            .zip(&mask)
            .for_each(|(v, m)| *v *= m);
        Ok(self.push(value, Op::Dropout { a, mask }))
    }

    /// Layer normalisation over the last axis (Ba, Kiros & Hinton, 2016):
    /// `y = (x − μ) / sqrt(σ² + eps) · γ + β` with per-row `μ`, biased `σ²`.
    pub fn layer_norm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        self.check(&[x, gamma, beta])?;
        let xv = self.value(x)?;
        let d = *xv.shape().last().unwrap_or(&0);
        if d == 0 || self.value(gamma)?.len() != d || self.value(beta)?.len() != d {
            return Err(CoreError::ShapeMismatch {
                op: "layer_norm",
                lhs: xv.shape().to_vec(),
                rhs: self.shape(gamma)?.to_vec(),
            });
        }
        let mut xhat = xv.clone();
        let mut rstd = Vec::with_capacity(xv.len() / d);
        for row in xhat.data_mut().chunks_mut(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let r = (1.0 / (var + eps as f64).sqrt()) as f32;
            row.iter_mut().for_each(|v| *v = (*v - mean as f32) * r);
            rstd.push(r);
        }
        let mut y = xhat.clone();
        let (g, b) = (self.value(gamma)?.data(), self.value(beta)?.data());
        for row in y.data_mut().chunks_mut(d) {
            for ((v, &g), &b) in row.iter_mut().zip(g).zip(b) {
                *v = *v * g + b;
            }
        }
        Ok(self.push(
            y,
            Op::LayerNorm {
                x,
                gamma,
                beta,
                xhat,
                rstd,
            },
        ))
    }

    /// Batch normalisation per channel (Ioffe & Szegedy, 2015) of `[N, C]` or
    /// `[N, C, H, W]`.
    ///
    /// In training mode the batch's own mean and biased variance normalise, and
    /// the batch statistics (mean and unbiased variance) are returned so the
    /// caller can update its running estimates. In evaluation mode `running`
    /// `(mean, var)` normalise and nothing is returned.
    pub fn batch_norm(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f32,
        running: (&[f32], &[f32]),
    ) -> Result<(Var, Option<BatchStatistics>)> {
        self.check(&[x, gamma, beta])?;
        let xv = self.value(x)?;
        let (n, c, s) = channel_dims("batch_norm", xv.shape())?;
        if self.value(gamma)?.len() != c
            || self.value(beta)?.len() != c
            || running.0.len() != c
            || running.1.len() != c
        {
            return Err(CoreError::ShapeMismatch {
                op: "batch_norm",
                lhs: xv.shape().to_vec(),
                rhs: self.shape(gamma)?.to_vec(),
            });
        }
        let training = self.is_training();
        let count = n * s;
        if training && count < 2 {
            return Err(CoreError::InvalidShape {
                op: "batch_norm",
                shape: xv.shape().to_vec(),
                reason: "training needs at least two values per channel".into(),
            });
        }
        let mut mean = vec![0.0f32; c];
        let mut rstd = vec![0.0f32; c];
        let mut stats = None;
        if training {
            let mut var_unbiased = vec![0.0f32; c];
            for ch in 0..c {
                let vals =
                    (0..n).flat_map(|i| xv.data()[(i * c + ch) * s..(i * c + ch + 1) * s].iter());
                let m = vals.clone().map(|&v| v as f64).sum::<f64>() / count as f64;
                let ss = vals.map(|&v| (v as f64 - m).powi(2)).sum::<f64>();
                mean[ch] = m as f32;
                rstd[ch] = (1.0 / (ss / count as f64 + eps as f64).sqrt()) as f32;
                var_unbiased[ch] = (ss / (count - 1) as f64) as f32;
            }
            stats = Some(BatchStatistics {
                mean: mean.clone(),
                var: var_unbiased,
            });
        } else {
            mean.copy_from_slice(running.0);
            for (r, &v) in rstd.iter_mut().zip(running.1) {
                *r = 1.0 / (v + eps).sqrt();
            }
        }
        let mut xhat = xv.clone();
        let (g, b) = (
            self.value(gamma)?.data().to_vec(),
            self.value(beta)?.data().to_vec(),
        );
        let mut y = xv.clone();
        for (k, (xh, yv)) in xhat
            .data_mut()
            .chunks_mut(s)
            .zip(y.data_mut().chunks_mut(s))
            .enumerate()
        {
            let ch = k % c;
            for (a, o) in xh.iter_mut().zip(yv.iter_mut()) {
                *a = (*a - mean[ch]) * rstd[ch];
                *o = *a * g[ch] + b[ch];
            }
        }
        let var = self.push(
            y,
            Op::BatchNorm {
                x,
                gamma,
                beta,
                xhat,
                rstd,
                batch_statistics: training,
            },
        );
        Ok((var, stats))
    }
}
