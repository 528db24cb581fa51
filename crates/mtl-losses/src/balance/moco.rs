//! MoCo, stochastic multi-objective descent with tracked gradients and a
//! corrected min-norm weighting (Fernando, Shen, Liu, Chaudhury, Murugesan &
//! Chen 2023, "Mitigating Gradient Bias in Multi-objective Learning: A
//! Provably Convergent Approach", ICLR; LibMTL `MoCo`).
//!
//! At step `k = 1, 2, …` every task's gradient is normalised and scaled by
//! its loss, `ĝ_t = L_t g_t/(‖g_t‖ + 10⁻⁸)`; a tracking variable follows it,
//! and the weights take a projected-gradient step on the min-norm objective
//! of the tracked gradients, through a softmax (LibMTL's form):
//!
//! ```text
//! y_t ← y_t − β_k (y_t − ĝ_t),            β_k = β / k^{σ_β},
//! λ  ← softmax(λ − γ_k (Y Yᵀ + ρ I) λ),    γ_k = γ / k^{σ_γ},
//! d  = Yᵀ λ,
//! ```
//!
//! with `y = 0` and `λ = 1/T` at the start. Defaults are LibMTL's
//! (`β = 0.5`, `σ_β = 0.5`, `γ = 0.1`, `σ_γ = 0.5`, `ρ = 0`).
//!
//! * **Scale.** `λ` lies on the simplex (mean scale); `d` is a combination
//!   of loss-scaled unit gradients, not of the raw rows.
//! * **State.** `Y` is one `f32` per gradient entry (`T × P`), saved with
//!   the checkpoint; the method needs the full rows (no column shards).

use serde::{Deserialize, Serialize};

use super::{
    check_parameter, gram, parse_state, require_tasks, to_state, Balancer, Combined, GradRows,
    GradientSource, MethodConfig, MethodState, RowBalancer, RowMethod, RowStep,
};
use crate::error::{Error, Result};

/// The norm offset of the normalisation (LibMTL's `1e-8`).
pub const NORM_EPS: f64 = 1e-8;

/// One tracking step `y ← y − rate (y − L g/(‖g‖ + 10⁻⁸))` for one task.
pub fn track(y: &mut [f32], g: &[f32], loss: f32, rate: f64) {
    let norm = g
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    let factor = f64::from(loss) / (norm + NORM_EPS);
    for (yv, &gv) in y.iter_mut().zip(g) {
        let target = factor * f64::from(gv);
        let current = f64::from(*yv);
        *yv = (current - rate * (current - target)) as f32;
    }
}

/// One weight step `softmax(λ − rate (Y Yᵀ + ρ I) λ)` from the Gram `YYᵀ`
/// (row-major `T × T`).
pub fn weight_step(
    lambda: &[f64],
    y_gram: &nalgebra::DMatrix<f64>,
    rate: f64,
    rho: f64,
) -> Vec<f64> {
    let t = lambda.len();
    let z: Vec<f64> = (0..t)
        .map(|i| {
            let g: f64 = (0..t).map(|j| y_gram[(i, j)] * lambda[j]).sum::<f64>() + rho * lambda[i];
            lambda[i] - rate * g
        })
        .collect();
    super::solver::simplex::softmax(&z)
}

/// The decayed rate `base / k^decay` at step `k ≥ 1`.
pub fn decayed(base: f64, decay: f64, k: u64) -> f64 {
    base / (k as f64).powf(decay)
}

/// Configuration of [`MoCo`] (registry name `moco`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoCoConfig {
    /// Tracking rate `β` (default 0.5).
    pub beta: f64,
    /// Decay exponent `σ_β` of the tracking rate (default 0.5).
    pub beta_sigma: f64,
    /// Weight step size `γ` (default 0.1).
    pub gamma: f64,
    /// Decay exponent `σ_γ` of the weight step (default 0.5).
    pub gamma_sigma: f64,
    /// `ℓ2` regularisation `ρ ≥ 0` of the weight step (default 0).
    pub rho: f64,
}

impl Default for MoCoConfig {
    fn default() -> Self {
        Self {
            beta: 0.5,
            beta_sigma: 0.5,
            gamma: 0.1,
            gamma_sigma: 0.5,
            rho: 0.0,
        }
    }
}

impl MethodConfig for MoCoConfig {
    const NAME: &'static str = "moco";
    const SUMMARY: &'static str =
        "tracked task gradients with a corrected min-norm weighting (Fernando et al. 2023)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("beta", "tracking rate β of the gradient estimates"),
        ("beta_sigma", "decay exponent of the tracking rate, β/k^σ"),
        ("gamma", "step size γ of the weights"),
        ("gamma_sigma", "decay exponent of the weight step, γ/k^σ"),
        ("rho", "ℓ2 regularisation ρ ≥ 0 of the weight step"),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        RowBalancer::boxed(num_tasks, MoCo::new(num_tasks, self.clone())?)
    }
}

/// The saved state of [`MoCo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoCoState {
    /// The tracked gradients `Y`, row-major `T × P` (empty before the first step).
    y: Vec<f32>,
    /// The weights `λ` (on the simplex).
    lambda: Vec<f64>,
    /// Steps taken.
    steps: u64,
}

/// MoCo; see the module documentation. An absent task's tracked gradient
/// is not updated and it takes no part in the step: the present tasks'
/// weights are updated within their own total and renormalised to sum to 1.
#[derive(Debug, Clone)]
pub struct MoCo {
    config: MoCoConfig,
    state: MoCoState,
}

impl MoCo {
    /// MoCo for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for a negative rate,
    /// exponent or `ρ`.
    pub fn new(num_tasks: usize, config: MoCoConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        for (name, value) in [
            ("beta", config.beta),
            ("beta_sigma", config.beta_sigma),
            ("gamma", config.gamma),
            ("gamma_sigma", config.gamma_sigma),
            ("rho", config.rho),
        ] {
            check_parameter(MoCoConfig::NAME, name, value, value >= 0.0, "must be ≥ 0")?;
        }
        Ok(Self {
            config,
            state: Self::fresh(num_tasks),
        })
    }

    fn fresh(t: usize) -> MoCoState {
        MoCoState {
            y: Vec::new(),
            lambda: vec![1.0 / t as f64; t],
            steps: 0,
        }
    }
}

impl MethodState for MoCo {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: MoCoState = parse_state(balancer, state)?;
        let t = self.state.lambda.len();
        if loaded.lambda.len() != t || !loaded.y.len().is_multiple_of(t) {
            return Err(Error::State {
                balancer,
                reason: format!("expected weights and tracked gradients of {t} tasks"),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = Self::fresh(self.state.lambda.len());
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

impl RowMethod for MoCo {
    type Config = MoCoConfig;

    fn combine(&mut self, rows: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined> {
        let (t, p) = (rows.rows(), rows.cols());
        let st = &mut self.state;
        if st.y.is_empty() {
            st.y = vec![0.0; t * p];
        } else if st.y.len() != t * p {
            return Err(Error::CountMismatch {
                what: "moco gradient columns (its state was built for another size)",
                expected: st.y.len() / t,
                got: p,
            });
        }
        st.steps += 1;
        let k = st.steps;
        let c = &self.config;
        let track_rate = decayed(c.beta, c.beta_sigma, k);
        for (i, row) in rows.iter().enumerate() {
            if step.present[i] {
                track(
                    &mut st.y[i * p..(i + 1) * p],
                    row,
                    step.losses[i],
                    track_rate,
                );
            }
        }
        let live: Vec<usize> = (0..t).filter(|&i| step.present[i]).collect();
        let y_gram = gram::restrict(&gram::gram(&st.y, t, p), &live);
        let mass: f64 = live.iter().map(|&i| st.lambda[i]).sum();
        let sub: Vec<f64> = live.iter().map(|&i| st.lambda[i] / mass).collect();
        let updated = weight_step(&sub, &y_gram, decayed(c.gamma, c.gamma_sigma, k), c.rho);
        let mut weights = vec![0.0; t];
        for (&i, w) in live.iter().zip(updated) {
            st.lambda[i] = w * mass;
            weights[i] = w;
        }
        let tracked = GradRows::new(&st.y, t, p)?;
        Ok(Combined {
            direction: gram::direction(&tracked, &weights),
            weights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    /// A handful of `f64` operations rounded to `f32`.
    const TOL: f64 = 1e-6;

    #[test]
    fn tracking_ground_truth() {
        // g = (3, 4), ‖g‖ = 5, L = 2: ĝ = (1.2, 1.6); from y = 0 with rate 0.5: (0.6, 0.8).
        let mut y = vec![0.0f32; 2];
        track(&mut y, &[3.0, 4.0], 2.0, 0.5);
        assert!((f64::from(y[0]) - 0.6).abs() < TOL && (f64::from(y[1]) - 0.8).abs() < TOL);
        // Rate 1 jumps to ĝ.
        track(&mut y, &[0.0, -2.0], 1.0, 1.0);
        assert!(
            f64::from(y[0]).abs() < TOL && (f64::from(y[1]) + 1.0).abs() < TOL,
            "{y:?}"
        );
    }

    #[test]
    fn weight_step_ground_truth() {
        // YYᵀ = diag(1, 0), λ = (1/2, 1/2), rate 1, ρ = 0:
        // z = (1/2 − 1/2, 1/2) ⇒ softmax(0, 1/2).
        let g = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 0.0]);
        let w = weight_step(&[0.5, 0.5], &g, 1.0, 0.0);
        let e = 0.5f64.exp();
        assert!((w[0] - 1.0 / (1.0 + e)).abs() < 1e-12 && (w[1] - e / (1.0 + e)).abs() < 1e-12);
        assert!((decayed(0.5, 0.5, 4) - 0.25).abs() < 1e-15);
    }
}
