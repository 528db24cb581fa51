//! MoDo, multi-objective gradient with double sampling (Chen, Fernando,
//! Ying & Chen 2024, "Three-Way Trade-Off in Multi-Objective Learning:
//! Optimization, Generalization and Conflict-Avoidance", JMLR; torchjd
//! `MoDoWeighting`, LibMTL `MoDo`).
//!
//! MGDA's weights follow a stochastic projected-gradient step whose
//! gradient `J_1 J_2ᵀ λ` is an unbiased estimate of `G λ` because the two
//! Jacobians come from two independent mini-batches:
//!
//! ```text
//! λ ← Π_Δ(λ − γ (J_1 J_2ᵀ λ + ρ λ)),   λ₀ = 1/T,
//! d = ½ (J_1 + J_2)ᵀ λ,
//! ```
//!
//! with `Π_Δ` the Euclidean projection onto the simplex. The update uses the
//! mean of both batches (torchjd's two-batch form, eq. 2.9b); LibMTL and
//! the official code's `three_grads` draw a third batch for `d`. The
//! returned weights are the updated `λ` (torchjd's).
//!
//! * **Scale.** Mean scale: `λ` lies on the simplex.
//! * **Defaults.** `γ = 0.1`, `ρ = 0.1` (torchjd; LibMTL uses `γ = 10⁻³`).

use nalgebra::DMatrix;

use serde::{Deserialize, Serialize};

use super::solver::simplex;
use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, DoubleSampleBalancer,
    DoubleSampleMethod, GradientSource, MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// One MoDo step `Π_Δ(λ − γ(Cλ + ρλ))` with `C = J_1 J_2ᵀ`.
pub fn modo_step(lambda: &[f64], cross: &DMatrix<f64>, gamma: f64, rho: f64) -> Vec<f64> {
    let t = lambda.len();
    let y: Vec<f64> = (0..t)
        .map(|i| {
            let g: f64 = (0..t).map(|j| cross[(i, j)] * lambda[j]).sum::<f64>() + rho * lambda[i];
            lambda[i] - gamma * g
        })
        .collect();
    simplex::project(&y)
}

/// Configuration of [`MoDo`] (registry name `modo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoDoConfig {
    /// Step size `γ > 0` of the weights (default 0.1, torchjd; LibMTL 1e-3).
    pub gamma: f64,
    /// `ℓ2` regularisation `ρ ≥ 0` of the weight step (default 0.1).
    pub rho: f64,
}

impl Default for MoDoConfig {
    fn default() -> Self {
        Self {
            gamma: 0.1,
            rho: 0.1,
        }
    }
}

impl MethodConfig for MoDoConfig {
    const NAME: &'static str = "modo";
    const SUMMARY: &'static str =
        "double-sampling stochastic MGDA on two independent mini-batches (Chen et al. 2024)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("gamma", "step size γ > 0 of the weights"),
        ("rho", "ℓ2 regularisation ρ ≥ 0 of the weight step"),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        require_tasks(num_tasks)?;
        check_parameter(
            Self::NAME,
            "gamma",
            self.gamma,
            self.gamma > 0.0,
            "must be > 0",
        )?;
        check_parameter(Self::NAME, "rho", self.rho, self.rho >= 0.0, "must be ≥ 0")?;
        DoubleSampleBalancer::boxed(
            num_tasks,
            MoDo {
                config: self.clone(),
                lambda: vec![1.0 / num_tasks as f64; num_tasks],
            },
        )
    }
}

/// MoDo; see the module documentation. The present tasks' weights are
/// updated within their own total, so absent tasks keep their share.
#[derive(Debug, Clone)]
pub struct MoDo {
    config: MoDoConfig,
    lambda: Vec<f64>,
}

impl MethodState for MoDo {
    fn state(&self) -> serde_json::Value {
        to_state(&self.lambda)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: Vec<f64> = parse_state(balancer, state)?;
        if loaded.len() != self.lambda.len() {
            return Err(Error::State {
                balancer,
                reason: format!(
                    "expected {} weights, got {}",
                    self.lambda.len(),
                    loaded.len()
                ),
            });
        }
        self.lambda = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        let t = self.lambda.len();
        self.lambda = vec![1.0 / t as f64; t];
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.lambda
            .iter()
            .enumerate()
            .map(|(t, &w)| (format!("lambda[{t}]"), w as f32))
            .collect()
    }
}

impl DoubleSampleMethod for MoDo {
    type Config = MoDoConfig;

    fn weights(&mut self, cross: &DMatrix<f64>, tasks: &[usize]) -> Vec<f64> {
        let mass: f64 = tasks.iter().map(|&t| self.lambda[t]).sum();
        let share: Vec<f64> = tasks.iter().map(|&t| self.lambda[t] / mass).collect();
        let updated = modo_step(&share, cross, self.config.gamma, self.config.rho);
        for (&t, &w) in tasks.iter().zip(&updated) {
            self.lambda[t] = w * mass;
        }
        updated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    #[test]
    fn ground_truth() {
        // C = [[2, 0], [0, 0]], λ = (1/2, 1/2), γ = 0.5, ρ = 0:
        // y = (1/2 − 0.5, 1/2) = (0, 1/2) ⇒ Π_Δ = (1/4, 3/4).
        let c = DMatrix::from_row_slice(2, 2, &[2.0, 0.0, 0.0, 0.0]);
        let l = modo_step(&[0.5, 0.5], &c, 0.5, 0.0);
        assert!(
            (l[0] - 0.25).abs() < TOL && (l[1] - 0.75).abs() < TOL,
            "{l:?}"
        );
        // ρ shrinks both equally and changes nothing after the projection.
        let l = modo_step(&[0.5, 0.5], &DMatrix::zeros(2, 2), 0.5, 1.0);
        assert!(
            (l[0] - 0.5).abs() < TOL && (l[1] - 0.5).abs() < TOL,
            "{l:?}"
        );
    }
}
