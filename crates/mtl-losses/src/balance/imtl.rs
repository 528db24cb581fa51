//! IMTL, impartial multi-task learning (Liu, Li, Kuang, Xue, Chen, Yang,
//! Liao, Zhang 2021, "Towards Impartial Multi-task Learning", ICLR).
//!
//! * **IMTL-G** (gradient balance): `d = Σ α_i g_i` with `Σα = 1` and equal
//!   projections on the unit gradients, `d·u_i = d·u_j`. Gram form (the
//!   paper's closed form `α_{2:T} = g_1Uᵀ(DUᵀ)⁻¹` is the same on full-rank
//!   inputs): `v = N⁻¹C⁺1` with `N = diag‖g_i‖` and the cosine matrix
//!   `C = N⁻¹GN⁻¹` (equal to `G⁺n`, `n_i = ‖g_i‖`, on full-rank inputs),
//!   `α = v/Σv`, since `(Cy)_i = 1` means `u_i·Jᵀv = 1` for every `i`. The
//!   pseudo-inverse is cut on `C`, not `G`, so a task with a tiny gradient
//!   keeps its equal share of the projection (on `G` it fell below the rank
//!   cut and was dropped). Zero rows get weight 0; when the unit gradients
//!   cancel (`g`, `−g`) the weights are `1/T`.
//! * **IMTL-L** (loss balance): learnable scales, loss `e^{s_t}L_t − s_t`,
//!   `∂/∂s_t = e^{s_t}L_t − 1`, stationary at `s* = −log L` (every scaled loss
//!   driven to 1). `s` starts at 0 and is updated by the balancer's own
//!   optimiser after each step.
//! * **IMTL** (hybrid, paper Alg. 1, default): IMTL-G on the gradients of the
//!   scaled losses `e^{s_t}g_t`; the weights on the raw rows are
//!   `α_t e^{s_t}`, and `s` is updated as in IMTL-L. Departure: with this
//!   crate's single weight vector the heads receive `α_t e^{s_t}∇L_t`, while
//!   the paper trains heads on the unweighted scaled loss.
//!
//! **Sign policy.** `Σv = 1ᵀG⁺n` can be negative when gradients conflict
//! strongly (T ≥ 3, balancers.md IM-6); then `α = v/Σv` makes every
//! projection the same negative number and `−d` increases every loss.
//! `negative_sum = flip` (default) uses `α = v/|Σv|`, so `d·u_i = 1/|Σv| > 0`
//! always; `mean` falls back to `1/T`; `keep` reproduces the reference code.
//!
//! * **Non-conflicting:** IMTL-G with `flip`, when the gradients are linearly
//!   independent (equal positive projections). Not with `keep`.
//! * **Scaling:** `Σα = 1` (mean scale: equal gradients give `1/T`); the
//!   direction is invariant to per-task rescaling (up to sign with `keep`).
//!   IMTL-L returns `e^{s_t}/T` (1/T at the start).
//! * **T = 1:** `α = 1`, `d = g_1` (IMTL-G); `e^{s}` for the hybrid.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::solver::spectral::{equal_projection, DEGENERATE_UNIT_NORM2};
use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, GradientSource, GramBalancer,
    GramMethod, GramStep, MethodConfig, MethodState, OptimizerKind, StateOptimizer,
};
use crate::error::Result;

/// Which part of IMTL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImtlMode {
    /// IMTL-G only (needs gradient rows, no learnable state).
    Gradient,
    /// IMTL-L only (losses only; returns weights `e^{s_t}/T`).
    Loss,
    /// IMTL-G on the IMTL-L-scaled losses (the paper's IMTL).
    #[default]
    Hybrid,
}

/// What IMTL-G does when `Σ_i (G⁺n)_i ≤ 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NegativeSumPolicy {
    /// `α = v/|Σv|`: the update never increases every loss.
    #[default]
    Flip,
    /// Fall back to `α = 1/T` when `Σv ≤ 0`.
    Mean,
    /// `α = v/Σv` as the reference implementations do.
    Keep,
}

/// Configuration of [`Imtl`] (registry name `imtl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImtlConfig {
    /// `hybrid` (default), `gradient` (IMTL-G) or `loss` (IMTL-L).
    pub mode: ImtlMode,
    /// `flip` (default), `mean` or `keep`; see the module docs.
    pub negative_sum: NegativeSumPolicy,
    /// Optimiser of the loss scales `s` (default `adam`).
    pub optimizer: OptimizerKind,
    /// Learning rate of the loss scales (default 0.025, the rate GradNorm and
    /// Nash-MTL use for balancer parameters).
    pub lr: f64,
}

impl Default for ImtlConfig {
    fn default() -> Self {
        Self {
            mode: ImtlMode::Hybrid,
            negative_sum: NegativeSumPolicy::Flip,
            optimizer: OptimizerKind::Adam,
            lr: 0.025,
        }
    }
}

impl MethodConfig for ImtlConfig {
    const NAME: &'static str = "imtl";
    const SUMMARY: &'static str =
        "equal projections on the unit gradients plus learnable loss scales (Liu et al. 2021)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "mode",
            "hybrid (IMTL), gradient (IMTL-G) or loss (IMTL-L; needs no gradients)",
        ),
        ("negative_sum", "when sum(G^+ n) <= 0: flip, mean or keep"),
        ("optimizer", "optimiser of the loss scales: adam or sgd"),
        ("lr", "learning rate of the loss scales"),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, Imtl::new(num_tasks, self.clone())?)
    }
}

/// IMTL-G weights `α` from the Gram matrix with the given sign policy.
pub fn imtl_g_weights(gram: &DMatrix<f64>, policy: NegativeSumPolicy) -> Vec<f64> {
    let t = gram.nrows();
    let uniform = vec![1.0 / t as f64; t];
    let solve = equal_projection(gram);
    if solve.unit_norm2 <= DEGENERATE_UNIT_NORM2 * t as f64 {
        // The unit gradients cancel (e.g. g and −g): no direction has equal
        // positive projections, and the solve is rounding noise.
        return uniform;
    }
    let v = solve.weights;
    let sum = v.sum();
    let divisor = match policy {
        _ if sum == 0.0 || !sum.is_finite() => return uniform,
        NegativeSumPolicy::Flip => sum.abs(),
        NegativeSumPolicy::Mean if sum < 0.0 => return uniform,
        NegativeSumPolicy::Mean | NegativeSumPolicy::Keep => sum,
    };
    v.iter().map(|x| x / divisor).collect()
}

/// The persistent state of [`Imtl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ImtlState {
    log_scales: Vec<f64>,
    optimizer: StateOptimizer,
}

/// IMTL; see the module documentation.
#[derive(Debug, Clone)]
pub struct Imtl {
    config: ImtlConfig,
    state: ImtlState,
}

impl Imtl {
    /// IMTL for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks); [`Error::InvalidParameter`](crate::Error::InvalidParameter)
    /// for a non-positive learning rate.
    pub fn new(num_tasks: usize, config: ImtlConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        check_parameter(
            ImtlConfig::NAME,
            "lr",
            config.lr,
            config.lr > 0.0,
            "must be > 0",
        )?;
        let state = ImtlState {
            log_scales: vec![0.0; num_tasks],
            optimizer: StateOptimizer::new(config.optimizer, num_tasks, config.lr),
        };
        Ok(Self { config, state })
    }

    /// The loss scales `s_t` (`e^{s_t}` multiplies `L_t`).
    pub fn log_scales(&self) -> &[f64] {
        &self.state.log_scales
    }

    /// Weights on the raw gradient rows for the Gram of the raw rows, using
    /// the current scales (does not update them).
    pub fn weights_from_gram(&self, gram: &DMatrix<f64>) -> Vec<f64> {
        let tasks: Vec<usize> = (0..self.state.log_scales.len()).collect();
        self.weights_for(gram, &tasks)
    }

    /// The weights of the tasks `tasks` (rows of `gram`, which is empty or
    /// all-zero in loss mode): `e^{s_t}/T'` in loss mode.
    fn weights_for(&self, gram: &DMatrix<f64>, tasks: &[usize]) -> Vec<f64> {
        let e: Vec<f64> = tasks
            .iter()
            .map(|&t| self.state.log_scales[t].exp())
            .collect();
        match self.config.mode {
            ImtlMode::Gradient => imtl_g_weights(gram, self.config.negative_sum),
            ImtlMode::Loss => e.iter().map(|x| x / e.len() as f64).collect(),
            ImtlMode::Hybrid => {
                let scaled = DMatrix::from_fn(gram.nrows(), gram.ncols(), |i, j| {
                    gram[(i, j)] * e[i] * e[j]
                });
                imtl_g_weights(&scaled, self.config.negative_sum)
                    .iter()
                    .zip(&e)
                    .map(|(a, x)| a * x)
                    .collect()
            }
        }
    }

    /// One optimiser step of the scales of the tasks `tasks` on
    /// `e^{s}L − s` (`∇ = e^{s}L − 1`); `losses` are theirs. The other
    /// scales and their optimiser moments are left alone.
    fn update_scales(&mut self, losses: &[f32], tasks: &[usize]) {
        if self.config.mode == ImtlMode::Gradient {
            return;
        }
        let t = self.state.log_scales.len();
        let mut grad = vec![0.0f64; t];
        let mut active = vec![false; t];
        for (&task, &l) in tasks.iter().zip(losses) {
            grad[task] = self.state.log_scales[task].exp() * f64::from(l) - 1.0;
            active[task] = true;
        }
        let mask = (tasks.len() < t).then_some(active.as_slice());
        self.state
            .optimizer
            .step_active(&mut self.state.log_scales, &grad, mask);
    }
}

impl MethodState for Imtl {
    fn state(&self) -> serde_json::Value {
        match self.config.mode {
            ImtlMode::Gradient => serde_json::Value::Null,
            _ => to_state(&self.state),
        }
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        if self.config.mode == ImtlMode::Gradient && state.is_null() {
            return Ok(());
        }
        let saved: ImtlState = parse_state(balancer, state)?;
        let t = self.state.log_scales.len();
        if saved.log_scales.len() != t {
            return Err(crate::Error::State {
                balancer,
                reason: format!(
                    "{} loss scales saved, {t} tasks configured",
                    saved.log_scales.len(),
                ),
            });
        }
        self.state = saved;
        Ok(())
    }

    fn reset(&mut self) {
        let t = self.state.log_scales.len();
        self.state = ImtlState {
            log_scales: vec![0.0; t],
            optimizer: StateOptimizer::new(self.config.optimizer, t, self.config.lr),
        };
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        match self.config.mode {
            ImtlMode::Gradient => Vec::new(),
            _ => self
                .state
                .log_scales
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("log_scale[{i}]"), *s as f32))
                .collect(),
        }
    }
}

impl GramMethod for Imtl {
    type Config = ImtlConfig;

    /// In loss mode the Gram is all-zero and unused.
    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        let w = self.weights_for(gram, step.tasks);
        self.update_scales(step.losses, step.tasks);
        Ok(w)
    }

    fn needs(&self) -> GradientSource {
        match self.config.mode {
            ImtlMode::Loss => GradientSource::None,
            _ => ImtlConfig::NEEDS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::BalanceInput;

    /// balancers.md §19.11 prints six decimals.
    const PRINTED_TOL: f64 = 1e-6;

    #[test]
    fn im_5_loss_scale_gradient_and_stationary_point() {
        let config = ImtlConfig {
            mode: ImtlMode::Loss,
            optimizer: OptimizerKind::Sgd,
            lr: 0.1,
            ..ImtlConfig::default()
        };
        let mut imtl = GramBalancer::new(2, Imtl::new(2, config).unwrap()).unwrap();
        let losses = [2.0f32, 0.5];
        // First SGD step from s = 0 moves by −lr·(1, −0.5).
        imtl.balance(&BalanceInput::from_losses(&losses)).unwrap();
        assert!((imtl.method().log_scales()[0] + 0.1).abs() < PRINTED_TOL);
        assert!((imtl.method().log_scales()[1] - 0.05).abs() < PRINTED_TOL);
        for _ in 0..2000 {
            imtl.balance(&BalanceInput::from_losses(&losses)).unwrap();
        }
        // s* = −log L = (−0.693147, 0.693147); weights e^{s*}/T = 1/(T L).
        assert!((imtl.method().log_scales()[0] + std::f64::consts::LN_2).abs() < PRINTED_TOL);
        assert!((imtl.method().log_scales()[1] - std::f64::consts::LN_2).abs() < PRINTED_TOL);
        let out = imtl.balance(&BalanceInput::from_losses(&losses)).unwrap();
        assert!((out.weights()[0] - 0.25).abs() < 1e-5 && (out.weights()[1] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn im_6_sign_policies() {
        let g = DMatrix::from_row_slice(3, 3, &[5.0, 1.0, 2.0, 1.0, 3.0, 1.0, 2.0, 1.0, 1.0]);
        let keep = imtl_g_weights(&g, NegativeSumPolicy::Keep);
        for (a, b) in keep.iter().zip([-5.897477, -4.741340, 11.638817]) {
            assert!((a - b).abs() < 1e-5, "{keep:?}");
        }
        let flip = imtl_g_weights(&g, NegativeSumPolicy::Flip);
        for (a, b) in flip.iter().zip(&keep) {
            assert!((a + b).abs() < 1e-9);
        }
        assert_eq!(
            imtl_g_weights(&g, NegativeSumPolicy::Mean),
            vec![1.0 / 3.0; 3]
        );
    }
}
