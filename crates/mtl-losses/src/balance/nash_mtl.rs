//! Nash-MTL, multi-task learning as a bargaining game (Navon, Shamsian,
//! Achituve, Maron, Kawaguchi, Chechik, Fetaya 2022, ICML).
//!
//! ```text
//! max_{Δθ ∈ B_ε} Σ_i log(Δθ·g_i)   ⇒   Δθ = Σ_i α_i g_i,   G α = 1/α  (α > 0)
//! ```
//!
//! so `g_i·d = 1/α_i > 0` and `‖d‖² = T`. `α` is found by damped Newton on
//! `½αᵀGα − Σ log α_i` ([`solver::nash_bargaining`](super::solver::nash_bargaining)),
//! warm-started from the previous step's `α`, instead of the paper's sequence
//! of conic programs. As in the official code the shared update is then
//! clipped to norm `max_norm` (default 1; `0` disables), which for `T ≥ 2`
//! always rescales it to length `max_norm`, and `α` is recomputed every
//! `update_weights_every` steps (reused in between).
//!
//! * **Non-conflicting:** yes (`g_i·d > 0` for all `i`).
//! * **Scaling:** invariant to per-task loss scaling (`g_i → k g_i` divides
//!   `α_i` by `k`; `d` unchanged). The weights are not on the mean scale: they
//!   are the clipped `α` (`‖d‖ = max_norm`).
//! * **T = 1:** `α = 1/‖g_1‖`, `d = g_1/‖g_1‖` (norm 1 ≤ any clip).
//! * **Pareto-stationary inputs** (`0` in the convex hull of the gradients,
//!   including a zero gradient row): `Gα = 1/α` has no solution; the method
//!   returns zero weights (no update), keeps its warm start, and reports
//!   `stationary = 1` in [`Balancer::learnable`], instead of the reference
//!   code's silent fallback to the previous `α`.
//! * Near such points Newton may stall above its tolerance; the best `α` is
//!   used and its residual `max_i |α_i(Gα)_i − 1|` is reported as `residual`
//!   in [`Balancer::learnable`].

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::solver::nash_bargaining::{self, NashOutcome};
use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, GradientSource, GramBalancer,
    GramMethod, GramStep, MethodConfig, MethodState,
};
use crate::error::Result;

/// Configuration of [`NashMtl`] (registry name `nash-mtl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NashMtlConfig {
    /// Clip the shared update to this norm (default 1.0 as in the official
    /// code; 0 = no clipping, `‖d‖ = √T`).
    pub max_norm: f64,
    /// Recompute `α` every this many steps and reuse it in between (default 1).
    pub update_weights_every: u64,
}

impl Default for NashMtlConfig {
    fn default() -> Self {
        Self {
            max_norm: 1.0,
            update_weights_every: 1,
        }
    }
}

impl MethodConfig for NashMtlConfig {
    const NAME: &'static str = "nash-mtl";
    const SUMMARY: &'static str =
        "Nash bargaining solution G alpha = 1/alpha over the task gradients (Navon et al. 2022)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "max_norm",
            "clip the shared update to this norm (0 = no clipping)",
        ),
        (
            "update_weights_every",
            "recompute the weights every this many steps",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, NashMtl::new(num_tasks, self.clone())?)
    }
}

/// The persistent state of [`NashMtl`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct NashState {
    /// Last solution `α` (unclipped), the warm start.
    alpha: Option<Vec<f64>>,
    /// Steps taken.
    steps: u64,
    /// Whether the last solve found the inputs Pareto-stationary.
    stationary: bool,
    /// `max_i |α_i (Gα)_i − 1|` of the last solve.
    #[serde(default)]
    residual: f64,
}

/// Nash-MTL; see the module documentation.
#[derive(Debug, Clone)]
pub struct NashMtl {
    num_tasks: usize,
    config: NashMtlConfig,
    state: NashState,
}

impl NashMtl {
    /// Nash-MTL for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks); [`Error::InvalidParameter`](crate::Error::InvalidParameter)
    /// for `max_norm < 0` or `update_weights_every = 0`.
    pub fn new(num_tasks: usize, config: NashMtlConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = NashMtlConfig::NAME;
        check_parameter(
            name,
            "max_norm",
            config.max_norm,
            config.max_norm >= 0.0,
            "must be ≥ 0",
        )?;
        let every = config.update_weights_every as f64;
        check_parameter(
            name,
            "update_weights_every",
            every,
            every >= 1.0,
            "must be ≥ 1",
        )?;
        Ok(Self {
            num_tasks,
            config,
            state: NashState::default(),
        })
    }

    /// Solves (or reuses) `α` for this step and returns the unclipped `α`
    /// (zeros at a Pareto-stationary point).
    ///
    /// # Errors
    /// A Newton failure (not expected on finite data).
    pub fn alpha_from_gram(&mut self, gram: &DMatrix<f64>) -> Result<Vec<f64>> {
        let tasks: Vec<usize> = (0..gram.nrows()).collect();
        self.alpha_for(gram, &tasks)
    }

    /// [`alpha_from_gram`](Self::alpha_from_gram) for the tasks `tasks`
    /// (rows of `gram`): the warm start and the reused `α` are restricted to
    /// them, and only their entries of the kept `α` are updated.
    fn alpha_for(&mut self, gram: &DMatrix<f64>, tasks: &[usize]) -> Result<Vec<f64>> {
        let step = self.state.steps;
        self.state.steps += 1;
        let reuse = !step.is_multiple_of(self.config.update_weights_every);
        let kept: Option<Vec<f64>> = self
            .state
            .alpha
            .as_ref()
            .map(|a| tasks.iter().map(|&t| a[t]).collect());
        if let (true, Some(alpha)) = (reuse, &kept) {
            return Ok(alpha.clone());
        }
        let warm = kept.map(DVector::from_vec);
        match nash_bargaining::solve(gram, warm.as_ref())? {
            NashOutcome::Solved {
                alpha, residual, ..
            } => {
                self.state.residual = residual;
                let alpha: Vec<f64> = alpha.iter().copied().collect();
                if tasks.len() == self.num_tasks {
                    self.state.alpha = Some(alpha.clone());
                } else if let Some(stored) = &mut self.state.alpha {
                    for (&t, &a) in tasks.iter().zip(&alpha) {
                        stored[t] = a;
                    }
                }
                self.state.stationary = false;
                Ok(alpha)
            }
            NashOutcome::Stationary => {
                self.state.stationary = true;
                Ok(vec![0.0; gram.nrows()])
            }
        }
    }

    /// The weights of one step: `α`, scaled so that `‖Jᵀα‖ ≤ max_norm`.
    ///
    /// # Errors
    /// A Newton failure (not expected on finite data).
    pub fn weights_from_gram(&mut self, gram: &DMatrix<f64>) -> Result<Vec<f64>> {
        let tasks: Vec<usize> = (0..gram.nrows()).collect();
        self.weights_for(gram, &tasks)
    }

    fn weights_for(&mut self, gram: &DMatrix<f64>, tasks: &[usize]) -> Result<Vec<f64>> {
        let alpha = self.alpha_for(gram, tasks)?;
        let a = DVector::from_column_slice(&alpha);
        let norm = a.dot(&(gram * &a)).max(0.0).sqrt();
        let max = self.config.max_norm;
        let factor = if max > 0.0 && norm > max {
            max / norm
        } else {
            1.0
        };
        Ok(alpha.iter().map(|x| x * factor).collect())
    }
}

impl MethodState for NashMtl {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let saved: NashState = parse_state(balancer, state)?;
        if saved
            .alpha
            .as_ref()
            .is_some_and(|a| a.len() != self.num_tasks)
        {
            return Err(crate::Error::State {
                balancer,
                reason: format!("saved alpha does not have {} entries", self.num_tasks),
            });
        }
        self.state = saved;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = NashState::default();
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        let mut out: Vec<(String, f32)> = self
            .state
            .alpha
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| (format!("alpha[{i}]"), *a as f32))
            .collect();
        out.push((
            "stationary".into(),
            if self.state.stationary { 1.0 } else { 0.0 },
        ));
        out.push(("residual".into(), self.state.residual as f32));
        out
    }
}

impl GramMethod for NashMtl {
    type Config = NashMtlConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        self.weights_for(gram, step.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_reused_between_updates() {
        let config = NashMtlConfig {
            max_norm: 0.0,
            update_weights_every: 3,
        };
        let mut nash = NashMtl::new(2, config).unwrap();
        let a = DMatrix::from_row_slice(2, 2, &[4.0, 0.0, 0.0, 1.0]);
        let b = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]);
        let first = nash.weights_from_gram(&a).unwrap();
        assert!((first[0] - 0.5).abs() < 1e-9 && (first[1] - 1.0).abs() < 1e-9);
        assert_eq!(nash.weights_from_gram(&b).unwrap(), first);
        assert_eq!(nash.weights_from_gram(&b).unwrap(), first);
        let fourth = nash.weights_from_gram(&b).unwrap();
        assert!((fourth[0] - 1.0).abs() < 1e-9 && (fourth[1] - 1.0).abs() < 1e-9);
    }
}
