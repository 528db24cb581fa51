//! SDMGrad, stochastic direction-oriented multi-objective gradient descent
//! (Xiao, Ban & Ji 2023, "Direction-oriented Multi-objective Learning:
//! Simple and Provable Stochastic Algorithms", NeurIPS; torchjd
//! `SDMGradWeighting`, LibMTL `SDMGrad`).
//!
//! The direction stays within a ball around a preference direction
//! `J w̃` (default `w̃ = 1/T`, the mean gradient); the inner weights solve
//! `min_{w ∈ Δ} ½‖Jᵀ(w + λ w̃)‖²` by `n_iter` projected SGD steps with
//! momentum on the unbiased double-sample estimate `A = J_1 J_2ᵀ`:
//!
//! ```text
//! A ← A / (mean_i √max(A_ii, 0))² + 10⁻⁸)          (scale normalisation)
//! v ← μ v + A (w + λ w̃),   w ← Π_Δ(w − lr · v)       (n_iter times, v₀ = 0)
//! weights = (w + λ w̃) / (1 + λ),   d = ½ (J_1 + J_2)ᵀ weights.
//! ```
//!
//! `w` is kept between steps (warm start, `w₀ = 1/T`). The update uses the
//! mean of both batches; LibMTL and torchjd's example draw a third batch
//! for `d`.
//!
//! * **Scale.** Mean scale: the weights lie on the simplex.
//! * **Defaults** (torchjd): `lr = 10`, `momentum = 0.5`, `n_iter = 20`,
//!   `λ = 0.3` (LibMTL: the same with `lr = 5`).

use nalgebra::DMatrix;

use serde::{Deserialize, Serialize};

use super::solver::simplex;
use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, DoubleSampleBalancer,
    DoubleSampleMethod, GradientSource, MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// The offset of the scale normalisation (`1e-8`, torchjd and LibMTL).
pub const SCALE_EPS: f64 = 1e-8;

/// SDMGrad's inner solve from the warm start `w` on `cross = J_1 J_2ᵀ`:
/// returns the new inner `w` and the output weights `(w + λw̃)/(1 + λ)`.
pub fn sdmgrad_step(
    w: &[f64],
    cross: &DMatrix<f64>,
    lr: f64,
    momentum: f64,
    n_iter: usize,
    lambda: f64,
    preference: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let t = w.len();
    let scale = (0..t).map(|i| cross[(i, i)].max(0.0).sqrt()).sum::<f64>() / t as f64;
    let a = cross / (scale * scale + SCALE_EPS);
    let mut w = w.to_vec();
    let mut velocity: Option<Vec<f64>> = None;
    for _ in 0..n_iter {
        let target: Vec<f64> = (0..t).map(|i| w[i] + lambda * preference[i]).collect();
        let grad: Vec<f64> = (0..t)
            .map(|i| (0..t).map(|j| a[(i, j)] * target[j]).sum())
            .collect();
        let v = match velocity {
            None => grad,
            Some(v) => v.iter().zip(&grad).map(|(v, g)| momentum * v + g).collect(),
        };
        let y: Vec<f64> = (0..t).map(|i| w[i] - lr * v[i]).collect();
        w = simplex::project(&y);
        velocity = Some(v);
    }
    let out = (0..t)
        .map(|i| (w[i] + lambda * preference[i]) / (1.0 + lambda))
        .collect();
    (w, out)
}

/// Configuration of [`SdmGrad`] (registry name `sdmgrad`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdmGradConfig {
    /// Learning rate of the inner projected SGD (default 10, torchjd).
    pub lr: f64,
    /// Momentum `μ ∈ [0, 1)` of the inner SGD (default 0.5).
    pub momentum: f64,
    /// Inner iterations per step (default 20).
    pub n_iter: usize,
    /// Pull `λ ≥ 0` toward the preference direction (default 0.3).
    pub lambda: f64,
    /// Preference `w̃`, one non-negative value per task (default: empty =
    /// `1/T` each, the mean gradient).
    pub preference: Vec<f64>,
}

impl Default for SdmGradConfig {
    fn default() -> Self {
        Self {
            lr: 10.0,
            momentum: 0.5,
            n_iter: 20,
            lambda: 0.3,
            preference: Vec::new(),
        }
    }
}

impl MethodConfig for SdmGradConfig {
    const NAME: &'static str = "sdmgrad";
    const SUMMARY: &'static str =
        "direction-oriented stochastic MGDA on two independent mini-batches (Xiao et al. 2023)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("lr", "learning rate of the inner projected SGD"),
        ("momentum", "momentum in [0, 1) of the inner SGD"),
        ("n_iter", "inner iterations per step (≥ 1)"),
        ("lambda", "pull λ ≥ 0 toward the preference direction"),
        (
            "preference",
            "one non-negative preference per task (empty = 1/T each, the mean)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        require_tasks(num_tasks)?;
        let name = Self::NAME;
        check_parameter(name, "lr", self.lr, self.lr > 0.0, "must be > 0")?;
        let m = self.momentum;
        check_parameter(
            name,
            "momentum",
            m,
            (0.0..1.0).contains(&m),
            "must be in [0, 1)",
        )?;
        check_parameter(
            name,
            "n_iter",
            self.n_iter as f64,
            self.n_iter >= 1,
            "must be ≥ 1",
        )?;
        check_parameter(
            name,
            "lambda",
            self.lambda,
            self.lambda >= 0.0,
            "must be ≥ 0",
        )?;
        if !self.preference.is_empty() && self.preference.len() != num_tasks {
            return Err(Error::CountMismatch {
                what: "sdmgrad preference weights",
                expected: num_tasks,
                got: self.preference.len(),
            });
        }
        for &u in &self.preference {
            check_parameter(name, "preference", u, u >= 0.0, "must be finite and ≥ 0")?;
        }
        DoubleSampleBalancer::boxed(
            num_tasks,
            SdmGrad {
                config: self.clone(),
                w: vec![1.0 / num_tasks as f64; num_tasks],
            },
        )
    }
}

/// SDMGrad; see the module documentation. The present tasks' inner weights
/// are updated within their own total, so absent tasks keep their share;
/// the default preference is `1/T'` over the present tasks.
#[derive(Debug, Clone)]
pub struct SdmGrad {
    config: SdmGradConfig,
    w: Vec<f64>,
}

impl MethodState for SdmGrad {
    fn state(&self) -> serde_json::Value {
        to_state(&self.w)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: Vec<f64> = parse_state(balancer, state)?;
        if loaded.len() != self.w.len() {
            return Err(Error::State {
                balancer,
                reason: format!("expected {} weights, got {}", self.w.len(), loaded.len()),
            });
        }
        self.w = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        let t = self.w.len();
        self.w = vec![1.0 / t as f64; t];
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.w
            .iter()
            .enumerate()
            .map(|(t, &w)| (format!("w[{t}]"), w as f32))
            .collect()
    }
}

impl DoubleSampleMethod for SdmGrad {
    type Config = SdmGradConfig;

    fn weights(&mut self, cross: &DMatrix<f64>, tasks: &[usize]) -> Vec<f64> {
        let mass: f64 = tasks.iter().map(|&t| self.w[t]).sum();
        let share: Vec<f64> = tasks.iter().map(|&t| self.w[t] / mass).collect();
        let present = tasks.len() as f64;
        let preference: Vec<f64> = tasks
            .iter()
            .map(|&t| {
                self.config
                    .preference
                    .get(t)
                    .copied()
                    .unwrap_or(1.0 / present)
            })
            .collect();
        let c = &self.config;
        let (inner, out) = sdmgrad_step(
            &share,
            cross,
            c.lr,
            c.momentum,
            c.n_iter,
            c.lambda,
            &preference,
        );
        for (&t, &w) in tasks.iter().zip(&inner) {
            self.w[t] = w * mass;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    #[test]
    fn one_iteration_ground_truth() {
        // A = diag(4, 0): scale = (2 + 0)/2 = 1, A/(1 + 1e-8).
        // w = (1/2, 1/2), λ = 0: grad = (2, 0)/(1+1e-8); lr = 0.25:
        // y = (1/2 − 0.5/(1+1e-8), 1/2) ⇒ Π_Δ ≈ (1/4, 3/4); with λ = 0 the
        // output weights are the inner ones.
        let a = DMatrix::from_row_slice(2, 2, &[4.0, 0.0, 0.0, 0.0]);
        let (w, out) = sdmgrad_step(&[0.5, 0.5], &a, 0.25, 0.5, 1, 0.0, &[0.5, 0.5]);
        // Both entries stay positive and shift by θ = (Σy − 1)/2.
        let y0 = 0.5 - 0.5 / (1.0 + SCALE_EPS);
        let theta = (y0 + 0.5 - 1.0) / 2.0;
        assert!((w[0] - (y0 - theta)).abs() < TOL, "{w:?}");
        assert!((w[1] - (0.5 - theta)).abs() < TOL);
        assert_eq!(w, out);
    }

    #[test]
    fn converges_to_the_min_norm_point_for_lambda_zero() {
        // G = [[1, 0], [0, 4]]: min-norm weights ∝ (4, 1) ⇒ (0.8, 0.2).
        let g = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 4.0]);
        let (w, _) = sdmgrad_step(&[0.5, 0.5], &g, 0.2, 0.5, 400, 0.0, &[0.5, 0.5]);
        assert!(
            (w[0] - 0.8).abs() < 1e-9 && (w[1] - 0.2).abs() < 1e-9,
            "{w:?}"
        );
        // λ mixes in the preference: out = (w + λ w̃)/(1 + λ) sums to 1.
        let (_, out) = sdmgrad_step(&[0.5, 0.5], &g, 0.2, 0.5, 400, 0.3, &[0.5, 0.5]);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < TOL);
    }
}
