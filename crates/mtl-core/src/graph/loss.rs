//! Fused loss ops. Each returns a scalar mean and keeps what its backward needs,
//! so that numerically delicate steps (log-softmax, log-sigmoid) are computed
//! once, stably.

use super::{Graph, Op, Var};
use crate::error::{CoreError, Result};
use crate::kernels;
use crate::Tensor;

fn same_shape(op: &'static str, pred: &Tensor, targets: &Tensor) -> Result<()> {
    if pred.shape() != targets.shape() {
        return Err(CoreError::ShapeMismatch {
            op,
            lhs: pred.shape().to_vec(),
            rhs: targets.shape().to_vec(),
        });
    }
    if pred.is_empty() {
        return Err(CoreError::InvalidShape {
            op,
            shape: pred.shape().to_vec(),
            reason: "a loss needs at least one element".into(),
        });
    }
    Ok(())
}

/// `log(1 + e^x)` without overflow.
pub(crate) fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl Graph {
    /// Mean cross-entropy of `logits` `[B, K]` against class indices, through a
    /// fused, stable log-softmax, with PyTorch's conventions:
    ///
    /// `ℓ_i = (1−ε)·w_{y_i}·(−log p_{i,y_i}) + (ε/K)·Σ_k w_k·(−log p_{i,k})`,
    /// reduced as `Σ_i ℓ_i / Σ_i w_{y_i}` (`w ≡ 1` without class weights, giving
    /// the plain mean). `ε` is the label smoothing (Szegedy et al., 2016).
    pub fn cross_entropy(
        &mut self,
        logits: Var,
        targets: &[usize],
        class_weights: Option<&[f32]>,
        smoothing: f32,
    ) -> Result<Var> {
        let lv = self.value(logits)?;
        let (b, k) = match lv.shape() {
            [b, k] if *k > 0 => (*b, *k),
            s => {
                return Err(CoreError::InvalidShape {
                    op: "cross_entropy",
                    shape: s.to_vec(),
                    reason: "expected logits [batch, classes]".into(),
                })
            }
        };
        if targets.len() != b || b == 0 {
            return Err(CoreError::ShapeMismatch {
                op: "cross_entropy targets",
                lhs: lv.shape().to_vec(),
                rhs: vec![targets.len()],
            });
        }
        if let Some(&bad) = targets.iter().find(|&&t| t >= k) {
            return Err(CoreError::Index {
                op: "cross_entropy target",
                index: bad,
                len: k,
            });
        }
        if let Some(w) = class_weights {
            if w.len() != k {
                return Err(CoreError::ShapeMismatch {
                    op: "cross_entropy class weights",
                    lhs: lv.shape().to_vec(),
                    rhs: vec![w.len()],
                });
            }
        }
        if !(0.0..1.0).contains(&smoothing) {
            return Err(CoreError::InvalidArgument {
                what: "label smoothing".into(),
                reason: format!("{smoothing} is not in [0, 1)"),
            });
        }
        let (mut logp, mut probs) = (vec![0.0; lv.len()], vec![0.0; lv.len()]);
        kernels::log_softmax_and_probs(lv.data(), k, &mut logp, &mut probs);
        let probs = Tensor::from_vec(probs, lv.shape())?;
        let weight = |c: usize| class_weights.map_or(1.0, |w| w[c]) as f64;
        let mut total = 0.0f64;
        let mut denom = 0.0f64;
        for (row, &y) in logp.chunks(k).zip(targets) {
            let mut l = (1.0 - smoothing as f64) * weight(y) * -(row[y] as f64);
            if smoothing > 0.0 {
                let s: f64 = row
                    .iter()
                    .enumerate()
                    .map(|(c, &lp)| weight(c) * -(lp as f64))
                    .sum();
                l += smoothing as f64 / k as f64 * s;
            }
            total += l;
            denom += weight(y);
        }
        if denom <= 0.0 {
            return Err(CoreError::InvalidArgument {
                what: "cross_entropy class weights".into(),
                reason: "the weights of the batch's targets sum to zero".into(),
            });
        }
        let value = Tensor::scalar((total / denom) as f32);
        Ok(self.push(
            value,
            Op::CrossEntropy {
                logits,
                targets: targets.to_vec(),
                class_weights: class_weights.map(<[f32]>::to_vec),
                smoothing,
                probs,
            },
        ))
    }

    /// Mean binary cross-entropy with logits, `max(z,0) − z·t + log(1 + e^−|z|)`,
    /// stable for any `z`.
    pub fn bce_with_logits(&mut self, logits: Var, targets: &Tensor) -> Result<Var> {
        let lv = self.value(logits)?;
        same_shape("bce_with_logits", lv, targets)?;
        let total: f64 = lv
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&z, &t)| (softplus(z) - z * t) as f64)
            .sum();
        let value = Tensor::scalar((total / lv.len() as f64) as f32);
        Ok(self.push(
            value,
            Op::BceWithLogits {
                logits,
                targets: targets.clone(),
            },
        ))
    }

    /// Mean squared error `mean((p − t)²)`.
    pub fn mse(&mut self, pred: Var, targets: &Tensor) -> Result<Var> {
        let pv = self.value(pred)?;
        same_shape("mse", pv, targets)?;
        let total: f64 = pv
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&p, &t)| ((p - t) as f64).powi(2))
            .sum();
        let value = Tensor::scalar((total / pv.len() as f64) as f32);
        Ok(self.push(
            value,
            Op::Mse {
                pred,
                targets: targets.clone(),
            },
        ))
    }

    /// Mean absolute error `mean(|p − t|)`.
    pub fn l1(&mut self, pred: Var, targets: &Tensor) -> Result<Var> {
        let pv = self.value(pred)?;
        same_shape("l1", pv, targets)?;
        let total: f64 = pv
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&p, &t)| (p - t).abs() as f64)
            .sum();
        let value = Tensor::scalar((total / pv.len() as f64) as f32);
        Ok(self.push(
            value,
            Op::L1 {
                pred,
                targets: targets.clone(),
            },
        ))
    }

    /// Mean Huber loss (Huber, 1964; PyTorch's `HuberLoss`): `½d²` for `|d| < δ`,
    /// `δ(|d| − ½δ)` beyond, with `d = p − t`.
    pub fn huber(&mut self, pred: Var, targets: &Tensor, delta: f32) -> Result<Var> {
        if delta.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(CoreError::InvalidArgument {
                what: "huber delta".into(),
                reason: format!("{delta} must be positive"),
            });
        }
        let pv = self.value(pred)?;
        same_shape("huber", pv, targets)?;
        let total: f64 = pv
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&p, &t)| {
                let d = (p - t).abs();
                if d < delta {
                    0.5 * d * d
                } else {
                    delta * (d - 0.5 * delta)
                }
            } as f64)
            .sum();
        let value = Tensor::scalar((total / pv.len() as f64) as f32);
        Ok(self.push(
            value,
            Op::Huber {
                pred,
                targets: targets.clone(),
                delta,
            },
        ))
    }

    /// Student-t soft assignment (Xie, Girshick & Farhadi, 2016, "DEC") of
    /// embeddings `z` `[B, D]` to centroids `mu` `[K, D]`:
    /// `q_ij = (1 + ‖z_i − μ_j‖²/α)^(−(α+1)/2) / Σ_k (1 + ‖z_i − μ_k‖²/α)^(−(α+1)/2)`.
    pub fn student_t(&mut self, z: Var, mu: Var, alpha: f32) -> Result<Var> {
        if alpha.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(CoreError::InvalidArgument {
                what: "student_t alpha".into(),
                reason: format!("{alpha} must be positive"),
            });
        }
        let (zv, mv) = (self.value(z)?, self.value(mu)?);
        let ((b, d), (k, d2)) = match (zv.shape(), mv.shape()) {
            ([b, d], [k, d2]) => ((*b, *d), (*k, *d2)),
            _ => (
                (0, 0),
                (0, 1), // forces the mismatch below
            ),
        };
        if d != d2 || k == 0 || zv.rank() != 2 || mv.rank() != 2 {
            return Err(CoreError::ShapeMismatch {
                op: "student_t",
                lhs: zv.shape().to_vec(),
                rhs: mv.shape().to_vec(),
            });
        }
        let exponent = -(alpha + 1.0) / 2.0;
        let mut q = vec![0.0f32; b * k];
        for i in 0..b {
            let zi = &zv.data()[i * d..(i + 1) * d];
            let row = &mut q[i * k..(i + 1) * k];
            for (j, r) in row.iter_mut().enumerate() {
                let mj = &mv.data()[j * d..(j + 1) * d];
                let dist: f32 = zi.iter().zip(mj).map(|(a, c)| (a - c) * (a - c)).sum();
                *r = (1.0 + dist / alpha).powf(exponent);
            }
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|r| *r /= s);
        }
        let value = Tensor::from_vec(q, &[b, k])?;
        Ok(self.push(value, Op::StudentT { z, mu, alpha }))
    }
}
