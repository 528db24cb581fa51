//! Auto-Lambda, task weights learned by a one-step look-ahead on validation
//! losses (Liu, James, Davison & Johns 2022, "Auto-Lambda: Disentangling
//! Dynamic Task Relationships", TMLR; official code `lorenmt/auto-lambda`).
//!
//! The weights `λ` are meta-parameters. Each step the shared parameters take
//! a virtual SGD step with the current weights, and `λ` descends the
//! validation loss of the primary tasks `P` after that step:
//!
//! ```text
//! θ' = θ − η Σ_t λ_t g_t,           g_t = ∇_θ L_t^train(θ),
//! ∂/∂λ_t Σ_{s∈P} L_s^val(θ') = −η g_tᵀ v,   v = Σ_{s∈P} ∇_θ L_s^val(θ'),
//! λ ← Adam(λ, −η g_tᵀ v).
//! ```
//!
//! The derivative is exact for the one-step look-ahead: `θ'` is linear in
//! `λ` because the training gradients `g_t` are taken at `θ`. The official
//! code obtains the same quantity by a finite difference of the training
//! losses along `v` (its Hessian-vector product is `∂_λ ∇_θ Σλ_t L_t · v =
//! g_tᵀv`). The network then trains on `Σ_t λ_t L_t` with the updated `λ`.
//!
//! * **Look-ahead.** The virtual step moves the shared parameters only (the
//!   task heads stay at `θ`), with the trainer's learning rate `η`.
//! * **Scale.** `λ` starts at `1/T` each (mean scale; the official code
//!   starts at 0.1, configurable with `init`) and is not constrained.
//! * **Defaults.** Adam with learning rate `10⁻⁴` on `λ` (the official
//!   code's `autol_lr` for dense prediction); every task primary.

use serde::{Deserialize, Serialize};

use super::{
    check_parameter, gram, parse_state, require_tasks, to_state, BalanceInput, Balanced, Balancer,
    GradientSource, MethodConfig, StateAdam,
};
use crate::error::{Error, Result};

/// The meta-gradient `−η g_tᵀ v` of every task, from the training rows
/// `g_t` and the summed validation gradient `v` at the look-ahead point.
pub fn meta_gradient<'a>(
    train_rows: impl Iterator<Item = &'a [f32]>,
    v: &[f64],
    lr: f64,
) -> Vec<f64> {
    train_rows
        .map(|g| {
            -lr * g
                .iter()
                .zip(v)
                .map(|(&a, &b)| f64::from(a) * b)
                .sum::<f64>()
        })
        .collect()
}

/// Configuration of [`AutoLambda`] (registry name `auto-lambda`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoLambdaConfig {
    /// Adam learning rate on `λ` (default 1e-4).
    pub lr: f64,
    /// Initial weights, one per task (default: empty = `1/T` each).
    pub init: Vec<f64>,
    /// The primary tasks whose validation loss is minimised (default:
    /// empty = every task).
    pub primary: Vec<usize>,
}

impl Default for AutoLambdaConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            init: Vec::new(),
            primary: Vec::new(),
        }
    }
}

impl MethodConfig for AutoLambdaConfig {
    const NAME: &'static str = "auto-lambda";
    const SUMMARY: &'static str =
        "weights learned by a one-step look-ahead on the validation loss (Liu et al. 2022)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("lr", "Adam learning rate on the weights"),
        ("init", "initial weight of each task (empty = 1/T each)"),
        (
            "primary",
            "indices of the tasks whose validation loss counts (empty = all)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(AutoLambda::new(num_tasks, self.clone())?))
    }
}

/// The saved state of [`AutoLambda`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AutoLambdaState {
    lambda: Vec<f64>,
    adam: StateAdam,
}

/// Auto-Lambda; see the module documentation. Absent tasks keep their
/// weight and Adam moments, get weight 0 for the step, and do not count as
/// primary.
#[derive(Debug, Clone)]
pub struct AutoLambda {
    config: AutoLambdaConfig,
    primary: Vec<bool>,
    state: AutoLambdaState,
}

impl AutoLambda {
    /// Auto-Lambda for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for `lr ≤ 0`, a
    /// non-finite initial weight or a primary index out of range;
    /// [`Error::CountMismatch`] for `init` of the wrong length.
    pub fn new(num_tasks: usize, config: AutoLambdaConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = AutoLambdaConfig::NAME;
        check_parameter(name, "lr", config.lr, config.lr > 0.0, "must be > 0")?;
        if !config.init.is_empty() && config.init.len() != num_tasks {
            return Err(Error::CountMismatch {
                what: "auto-lambda initial weights",
                expected: num_tasks,
                got: config.init.len(),
            });
        }
        for &w in &config.init {
            check_parameter(name, "init", w, true, "must be finite")?;
        }
        let mut primary = vec![config.primary.is_empty(); num_tasks];
        for &t in &config.primary {
            check_parameter(
                name,
                "primary",
                t as f64,
                t < num_tasks,
                "must be a task index",
            )?;
            primary[t] = true;
        }
        let state = Self::fresh(num_tasks, &config);
        Ok(Self {
            config,
            primary,
            state,
        })
    }

    fn fresh(t: usize, config: &AutoLambdaConfig) -> AutoLambdaState {
        let lambda = if config.init.is_empty() {
            vec![1.0 / t as f64; t]
        } else {
            config.init.clone()
        };
        AutoLambdaState {
            lambda,
            adam: StateAdam::new(t, config.lr),
        }
    }
}

impl Balancer for AutoLambda {
    fn name(&self) -> &'static str {
        AutoLambdaConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.primary.len()
    }

    fn needs(&self) -> GradientSource {
        AutoLambdaConfig::NEEDS
    }

    fn lookahead_weights(&self) -> Option<Vec<f32>> {
        Some(self.state.lambda.iter().map(|&w| w as f32).collect())
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        let t = self.num_tasks();
        input.validate(t)?;
        let grads = input.require_grads(self.name(), self.needs())?;
        gram::check_diagonal(&gram::checked_gram(&grads)?)?;
        let look = input.lookahead.ok_or(Error::MissingGradients {
            balancer: self.name(),
            needs: "validation look-ahead (losses and gradients at θ')",
        })?;
        BalanceInput::from_losses(look.losses)
            .with_grads(look.grads)
            .validate(t)?;
        if look.grads.cols() != grads.cols() {
            return Err(Error::CountMismatch {
                what: "look-ahead gradient columns",
                expected: grads.cols(),
                got: look.grads.cols(),
            });
        }
        check_parameter(
            self.name(),
            "look-ahead lr",
            look.lr,
            look.lr >= 0.0,
            "must be ≥ 0",
        )?;
        let present: Vec<bool> = (0..t).map(|i| input.is_present(i)).collect();
        let mut v = vec![0.0f64; grads.cols()];
        for (s, row) in look.grads.iter().enumerate() {
            if self.primary[s] && present[s] {
                for (acc, &g) in v.iter_mut().zip(row) {
                    *acc += f64::from(g);
                }
            }
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(Error::NonFiniteGradient {
                task: 0,
                norm: f64::INFINITY,
            });
        }
        let mut h = meta_gradient(grads.iter(), &v, look.lr);
        for (x, &p) in h.iter_mut().zip(&present) {
            if !p {
                *x = 0.0;
            }
        }
        let st = &mut self.state;
        st.adam.step_active(&mut st.lambda, &h, Some(&present));
        let weights: Vec<f64> = (0..t)
            .map(|i| if present[i] { st.lambda[i] } else { 0.0 })
            .collect();
        Ok(Balanced::Direction {
            direction: gram::direction(&grads, &weights),
            weights: weights.iter().map(|&w| w as f32).collect(),
        })
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let loaded: AutoLambdaState = parse_state(self.name(), state)?;
        if loaded.lambda.len() != self.num_tasks() {
            return Err(Error::State {
                balancer: self.name(),
                reason: format!(
                    "expected {} weights, got {}",
                    self.num_tasks(),
                    loaded.lambda.len()
                ),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = Self::fresh(self.num_tasks(), &self.config);
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.state
            .lambda
            .iter()
            .enumerate()
            .map(|(t, &w)| (format!("lambda[{t}]"), w as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth() {
        // g_1 = (1, 0), g_2 = (0, 2), v = (3, −1), η = 0.1:
        // −0.1·3 = −0.3 and −0.1·(−2) = 0.2.
        let rows: [&[f32]; 2] = [&[1.0, 0.0], &[0.0, 2.0]];
        let h = meta_gradient(rows.iter().copied(), &[3.0, -1.0], 0.1);
        assert!(
            (h[0] + 0.3).abs() < 1e-15 && (h[1] - 0.2).abs() < 1e-15,
            "{h:?}"
        );
    }

    #[test]
    fn matches_a_finite_difference_of_a_quadratic_validation_loss() {
        // L^val(θ) = ½‖θ − c‖², θ' = θ − η Σ λ_t g_t; d/dλ_t L^val(θ') = −η g_tᵀ(θ' − c).
        let theta = [0.5f64, -1.0, 2.0];
        let c = [1.0f64, 1.0, 0.0];
        let rows = [[0.3f32, -0.2, 1.0], [-1.0f32, 0.4, 0.1]];
        let (eta, lambda) = (0.05, [0.6f64, 0.4]);
        let val = |l: &[f64; 2]| {
            (0..3)
                .map(|k| {
                    let step: f64 = (0..2).map(|t| l[t] * f64::from(rows[t][k])).sum();
                    let x = theta[k] - eta * step - c[k];
                    0.5 * x * x
                })
                .sum::<f64>()
        };
        let prime: Vec<f64> = (0..3)
            .map(|k| {
                let step: f64 = (0..2).map(|t| lambda[t] * f64::from(rows[t][k])).sum();
                theta[k] - eta * step - c[k]
            })
            .collect();
        let h = meta_gradient(rows.iter().map(|r| &r[..]), &prime, eta);
        for t in 0..2 {
            let (mut up, mut down) = (lambda, lambda);
            up[t] += 1e-6;
            down[t] -= 1e-6;
            let fd = (val(&up) - val(&down)) / 2e-6;
            assert!((fd - h[t]).abs() < 1e-9, "task {t}: {fd} vs {}", h[t]);
        }
    }
}
