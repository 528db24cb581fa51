//! ExcessMTL, task weights driven by excess-risk estimates (He, Zhou, Zhao &
//! Li 2024, "Robust Multi-Task Learning with Excess Risks", ICML; torchjd
//! `ExcessMTL`, LibMTL `ExcessMTL`).
//!
//! Each step, with `S_t ← S_t + g_t²` the running sum of squared gradients
//! (element-wise, an AdaGrad estimate of the diagonal Hessian, eq. 7), the
//! excess risk of task `t` is approximated by (eq. 6)
//!
//! ```text
//! e_t = Σ_k g_tk² / √(S_tk + 10⁻⁷),
//! ```
//!
//! divided by a baseline `e_t⁰`, and the weights take an exponentiated
//! gradient step (eq. 9) on the simplex:
//!
//! ```text
//! w ← softmax(log w + η e/e⁰),   w₀ = 1/T.
//! ```
//!
//! As in torchjd: with `n_warmup_steps = 0` the first step's `e` is the
//! baseline and that step uses `e` undivided (the official code's
//! behaviour); with `n_warmup_steps = N > 0` the first `N` steps keep
//! `w = 1/T` and average `e`, which becomes the baseline (the paper's
//! appendix C.1), and later steps use `e/(e⁰ + 10⁻⁷)`. The returned weights
//! are those after the step's update (torchjd's).
//!
//! * **Scale.** Mean scale: the weights lie on the simplex (`1/T` at the
//!   start). LibMTL's weights sum to `T` (it starts from 1) and its default
//!   `η` is `0.01`; torchjd's default `η = 1` is kept here.
//! * **State.** `S` is one `f32` per gradient entry (`T × P`), saved with
//!   the checkpoint; the method needs the full rows (no column shards).

use serde::{Deserialize, Serialize};

use super::{
    check_parameter, gram, parse_state, require_tasks, to_state, Balancer, Combined, GradRows,
    GradientSource, MethodConfig, MethodState, RowBalancer, RowMethod, RowStep,
};
use crate::error::{Error, Result};

/// The offset under the square root of the excess-risk proxy (torchjd's and
/// the official code's `1e-7`).
pub const HESSIAN_EPS: f64 = 1e-7;

/// Adds `row²` to `sq_sum` element-wise and returns the excess-risk proxy
/// `Σ_k g_k² / √(S_k + 10⁻⁷)` with the updated `S`.
pub fn excess_risk(row: &[f32], sq_sum: &mut [f32]) -> f64 {
    let mut e = 0.0f64;
    for (&g, s) in row.iter().zip(sq_sum.iter_mut()) {
        let g2 = f64::from(g) * f64::from(g);
        *s += (g2) as f32;
        e += g2 / (f64::from(*s) + HESSIAN_EPS).sqrt();
    }
    e
}

/// The exponentiated-gradient step `softmax(log w + η r)`.
pub fn exponentiated_step(weights: &[f64], risks: &[f64], step_size: f64) -> Vec<f64> {
    let z: Vec<f64> = weights
        .iter()
        .zip(risks)
        .map(|(&w, &r)| w.ln() + step_size * r)
        .collect();
    super::solver::simplex::softmax(&z)
}

/// Configuration of [`ExcessMtl`] (registry name `excess-mtl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExcessMtlConfig {
    /// Step size `η > 0` of the exponentiated update (default 1, torchjd;
    /// LibMTL uses 0.01 on weights summing to `T`).
    pub robust_step_size: f64,
    /// Steps with uniform weights whose mean excess risk becomes the
    /// baseline (default 0: the first step's excess risk).
    pub n_warmup_steps: u64,
}

impl Default for ExcessMtlConfig {
    fn default() -> Self {
        Self {
            robust_step_size: 1.0,
            n_warmup_steps: 0,
        }
    }
}

impl MethodConfig for ExcessMtlConfig {
    const NAME: &'static str = "excess-mtl";
    const SUMMARY: &'static str =
        "exponentiated weights driven by excess-risk estimates (He et al. 2024)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "robust_step_size",
            "step size η > 0 of the exponentiated update",
        ),
        (
            "n_warmup_steps",
            "steps of uniform weights whose mean excess risk is the baseline (0 = first step)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        RowBalancer::boxed(num_tasks, ExcessMtl::new(num_tasks, self.clone())?)
    }
}

/// The saved state of [`ExcessMtl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExcessState {
    /// The task weights (on the simplex).
    weights: Vec<f64>,
    /// `S`, row-major `T × P` (empty before the first step).
    sq_grad_sum: Vec<f32>,
    /// The baseline excess risk of each task, once set.
    baseline: Vec<Option<f64>>,
    /// Sum and count of each task's excess risk during the warm-up.
    warmup_sum: Vec<f64>,
    warmup_count: Vec<u64>,
    /// Steps taken.
    steps: u64,
}

/// ExcessMTL; see the module documentation. An absent task keeps its
/// statistics and its weight's share; the present tasks' weights are
/// updated within their own total and renormalised to sum to 1 for the step.
#[derive(Debug, Clone)]
pub struct ExcessMtl {
    config: ExcessMtlConfig,
    state: ExcessState,
}

impl ExcessMtl {
    /// ExcessMTL for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for `η ≤ 0`.
    pub fn new(num_tasks: usize, config: ExcessMtlConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        check_parameter(
            ExcessMtlConfig::NAME,
            "robust_step_size",
            config.robust_step_size,
            config.robust_step_size > 0.0,
            "must be > 0",
        )?;
        Ok(Self {
            config,
            state: Self::fresh(num_tasks),
        })
    }

    fn fresh(t: usize) -> ExcessState {
        ExcessState {
            weights: vec![1.0 / t as f64; t],
            sq_grad_sum: Vec::new(),
            baseline: vec![None; t],
            warmup_sum: vec![0.0; t],
            warmup_count: vec![0; t],
            steps: 0,
        }
    }
}

impl MethodState for ExcessMtl {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: ExcessState = parse_state(balancer, state)?;
        let t = self.state.weights.len();
        let fits = loaded.weights.len() == t
            && loaded.baseline.len() == t
            && loaded.warmup_sum.len() == t
            && loaded.warmup_count.len() == t
            && loaded.sq_grad_sum.len().is_multiple_of(t);
        if !fits {
            return Err(Error::State {
                balancer,
                reason: format!("expected per-task vectors of {t} tasks"),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = Self::fresh(self.state.weights.len());
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.state
            .weights
            .iter()
            .enumerate()
            .map(|(t, &w)| (format!("weight[{t}]"), w as f32))
            .collect()
    }
}

impl RowMethod for ExcessMtl {
    type Config = ExcessMtlConfig;

    fn combine(&mut self, rows: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined> {
        let (t, p) = (rows.rows(), rows.cols());
        let st = &mut self.state;
        if st.sq_grad_sum.is_empty() {
            st.sq_grad_sum = vec![0.0; t * p];
        } else if st.sq_grad_sum.len() != t * p {
            return Err(Error::CountMismatch {
                what: "excess-mtl gradient columns (its state was built for another size)",
                expected: st.sq_grad_sum.len() / t,
                got: p,
            });
        }
        let mut risk = vec![0.0; t];
        for (i, row) in rows.iter().enumerate() {
            if step.present[i] {
                risk[i] = excess_risk(row, &mut st.sq_grad_sum[i * p..(i + 1) * p]);
            }
        }
        let warmup = self.config.n_warmup_steps;
        if st.steps < warmup {
            for i in (0..t).filter(|&i| step.present[i]) {
                st.warmup_sum[i] += risk[i];
                st.warmup_count[i] += 1;
            }
        } else {
            let mut scaled = vec![0.0; t];
            for i in (0..t).filter(|&i| step.present[i]) {
                scaled[i] = match st.baseline[i] {
                    Some(b) => risk[i] / (b + HESSIAN_EPS),
                    None if st.warmup_count[i] > 0 => {
                        let b = st.warmup_sum[i] / st.warmup_count[i] as f64;
                        st.baseline[i] = Some(b);
                        risk[i] / (b + HESSIAN_EPS)
                    }
                    None => {
                        st.baseline[i] = Some(risk[i]);
                        risk[i]
                    }
                };
            }
            let live: Vec<usize> = (0..t).filter(|&i| step.present[i]).collect();
            let mass: f64 = live.iter().map(|&i| st.weights[i]).sum();
            let sub_w: Vec<f64> = live.iter().map(|&i| st.weights[i] / mass).collect();
            let sub_r: Vec<f64> = live.iter().map(|&i| scaled[i]).collect();
            let updated = exponentiated_step(&sub_w, &sub_r, self.config.robust_step_size);
            for (&i, w) in live.iter().zip(updated) {
                st.weights[i] = w * mass;
            }
        }
        st.steps += 1;
        let mass: f64 = (0..t)
            .filter(|&i| step.present[i])
            .map(|i| st.weights[i])
            .sum();
        let weights: Vec<f64> = (0..t)
            .map(|i| {
                if step.present[i] {
                    st.weights[i] / mass
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Combined {
            direction: gram::direction(rows, &weights),
            weights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few `f64` operations on `f32` inputs.
    const TOL: f64 = 1e-9;

    #[test]
    fn excess_risk_ground_truth() {
        // First step: S = g², e = Σ g²/√(g² + 1e-7) ≈ Σ |g|.
        let mut s = vec![0.0f32; 2];
        let e = excess_risk(&[3.0, -4.0], &mut s);
        let expect = 9.0 / (9.0f64 + 1e-7).sqrt() + 16.0 / (16.0f64 + 1e-7).sqrt();
        assert!((e - expect).abs() < TOL, "{e}");
        assert_eq!(s, vec![9.0, 16.0]);
        // Second step with the same row: S = 2g², e = Σ g²/√(2g²) = Σ|g|/√2.
        let e = excess_risk(&[3.0, -4.0], &mut s);
        let expect = 9.0 / (18.0f64 + 1e-7).sqrt() + 16.0 / (32.0f64 + 1e-7).sqrt();
        assert!((e - expect).abs() < TOL, "{e}");
    }

    #[test]
    fn exponentiated_step_ground_truth() {
        // From uniform weights, r = (0, ln 3): w ∝ (1, 3).
        let w = exponentiated_step(&[0.5, 0.5], &[0.0, 3.0f64.ln()], 1.0);
        assert!(
            (w[0] - 0.25).abs() < TOL && (w[1] - 0.75).abs() < TOL,
            "{w:?}"
        );
        // Equal risks leave the weights unchanged.
        let w = exponentiated_step(&[0.2, 0.8], &[5.0, 5.0], 0.3);
        assert!(
            (w[0] - 0.2).abs() < TOL && (w[1] - 0.8).abs() < TOL,
            "{w:?}"
        );
    }
}
