//! PCD, priority-constrained descent (Varam et al., "Not All Objectives Are
//! Born Equal: Priority-Constrained Descent for Hierarchical Multi-Objective
//! Optimization", TMLR 2026; torchjd `PCD`).
//!
//! Task 0 is the primary task; every other task is secondary. With the
//! normalised rows `g̃_i = s_i g_i`, `s_i = 1/√(v̂_i + ε)` and `v̂_i` the
//! bias-corrected exponential moving average (decay `β`) of `‖g_i‖²`, PCD
//! follows the primary gradient as closely as possible while every
//! secondary task keeps a fraction `τ` of the progress of its own step:
//!
//! ```text
//! d̃ = argmin_d ½‖d − g̃_0‖²   s.t.   g̃_jᵀ d ≥ τ_j ‖g̃_j‖²   (j ≥ 1),
//! d̃ = g̃_0 + Σ_j μ_j g̃_j,   d = d̃ · ‖g_0‖/‖d̃‖,
//! ```
//!
//! so the weights are `w_0 = s_0 c`, `w_j = μ_j s_j c` with
//! `c = ‖g_0‖/‖d̃‖`. The QP is solved exactly on the Gram matrix by the dual
//! active-set method of Goldfarb & Idnani (1983) for an identity Hessian, as
//! torchjd does. Special cases (as in torchjd): `g_0 = 0` gives `d = 0`;
//! infeasible constraints (`T ≥ 3`, e.g. opposite secondary rows) are
//! dropped and `d = g_0`; `d̃ = 0` up to the Gram's rounding gives `d = 0`.
//!
//! **Scale.** PCD is not a mean-scale method: `‖d‖ = ‖g_0‖` (torchjd's
//! convention, kept so the outputs are the same vector). With no conflict
//! (`τ = 0` and no secondary row opposing `g_0`), `d = g_0`.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, GradientSource, GramBalancer,
    GramMethod, GramStep, MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// Constraints violated by at most this times the largest diagonal of the
/// normalised Gram count as satisfied (torchjd's `tol`).
const SATISFIED_TOL: f64 = 1e-9;

/// A row whose component orthogonal to the active rows has a squared norm
/// below this fraction of its own counts as dependent on them (torchjd's
/// `dependence_tol`: above the relative precision of the Gram).
const DEPENDENCE_TOL: f64 = 1e-9;

/// Relative precision of an `f64` Gram matrix, `10 ε` (torchjd's
/// `precision` for `float64`): a direction with `‖d̃‖²` below this times the
/// size of its terms is zero up to rounding.
const GRAM_PRECISION: f64 = 10.0 * f64::EPSILON;

/// Updates one moving average `v ← βv + (1−β)‖g‖²` (after `steps` previous
/// updates of it) and returns the scale `s = 1/√(v̂ + ε)` with
/// `v̂ = v/(1 − β^{steps+1})`; a zero denominator gives scale 0 (a gradient
/// that has always been zero).
pub fn update_scale(ema: &mut f64, steps: u64, sq_norm: f64, beta: f64, eps: f64) -> f64 {
    let correction = 1.0 - beta.powf((steps + 1) as f64);
    *ema = beta * *ema + (1.0 - beta) * sq_norm;
    let denominator = (*ema / correction + eps).sqrt();
    if denominator > 0.0 {
        1.0 / denominator
    } else {
        0.0
    }
}

/// PCD's weights on the Gram matrix of the present rows (row 0 primary),
/// given the scales `s` from [`update_scale`] and one `τ` per secondary row.
pub fn pcd_weights(gram: &DMatrix<f64>, taus: &[f64], scales: &[f64]) -> Vec<f64> {
    let m = gram.nrows();
    let mut weights = vec![0.0; m];
    if m == 0 || gram[(0, 0)] <= 0.0 {
        return weights;
    }
    let g = DMatrix::from_fn(m, m, |i, j| gram[(i, j)] * scales[i] * scales[j]);
    let w = solve_qp(&g, taus);
    let direction_sq: f64 = (0..m)
        .map(|i| (0..m).map(|j| w[i] * g[(i, j)] * w[j]).sum::<f64>())
        .sum();
    let magnitude: f64 = (0..m)
        .map(|i| w[i].abs() * g[(i, i)].sqrt())
        .sum::<f64>()
        .powi(2);
    if direction_sq > GRAM_PRECISION * magnitude {
        let c = (gram[(0, 0)] / direction_sq).sqrt();
        for i in 0..m {
            weights[i] = w[i] * scales[i] * c;
        }
    }
    weights
}

/// `min_d ½‖d − g_0‖²` s.t. `g_jᵀd ≥ τ_j‖g_j‖²` on the Gram `g` of the rows,
/// returning `w = (1, μ_1, …)` with `d = Σ w_i g_i` (the multipliers `μ ≥ 0`),
/// or `(1, 0, …)` when the constraints are infeasible. Dual active set
/// (Goldfarb & Idnani 1983): the stationarity `d = g_0 + Σ_j μ_j g_j` holds
/// throughout, so every inner product is read from the Gram. At most `10T`
/// add/drop iterations guard against cycling from rounding.
fn solve_qp(g: &DMatrix<f64>, taus: &[f64]) -> Vec<f64> {
    let m = g.nrows();
    let mut weights = vec![0.0; m];
    weights[0] = 1.0;
    if m == 1 {
        return weights;
    }
    let n = m - 1;
    let gs = |i: usize, j: usize| g[(i + 1, j + 1)];
    // b_j > 0 iff g_0 alone violates constraint j.
    let b: Vec<f64> = (0..n).map(|j| taus[j] * gs(j, j) - g[(j + 1, 0)]).collect();
    let max_diag = (0..m).map(|i| g[(i, i)]).fold(f64::MIN_POSITIVE, f64::max);
    let atol = SATISFIED_TOL * max_diag;
    let slack = |mu: &[f64], j: usize| (0..n).map(|k| gs(j, k) * mu[k]).sum::<f64>() - b[j];
    let mut mu = vec![0.0; n];
    let mut active: Vec<usize> = Vec::new();
    let max_iters = 10 * m;
    let mut iters = 0;
    'outer: while iters < max_iters {
        // The most violated constraint (active ones hold with equality).
        let mut p = 0;
        let mut worst = f64::INFINITY;
        for j in 0..n {
            let s = if active.contains(&j) {
                0.0
            } else {
                slack(&mu, j)
            };
            if s < worst {
                worst = s;
                p = j;
            }
        }
        if worst >= -atol {
            break;
        }
        let mut slack_p = worst;
        while iters < max_iters {
            iters += 1;
            // Dual step +1 on μ_p and −r on the active μ; primal step along
            // z = g_p − Σ_k r_k g_k, the part of g_p orthogonal to the active rows.
            let (r, z_sq, partial, drop) = if active.is_empty() {
                (Vec::new(), gs(p, p), f64::INFINITY, 0)
            } else {
                let a = active.len();
                let ga = DMatrix::from_fn(a, a, |i, j| gs(active[i], active[j]));
                let rhs = nalgebra::DVector::from_fn(a, |i, _| gs(active[i], p));
                let Some(r) = ga.lu().solve(&rhs) else {
                    break 'outer;
                };
                let z_sq = gs(p, p) - (0..a).map(|i| gs(p, active[i]) * r[i]).sum::<f64>();
                let mut partial = f64::INFINITY;
                let mut drop = 0;
                for i in 0..a {
                    let ratio = if r[i] > 0.0 {
                        mu[active[i]] / r[i]
                    } else {
                        f64::INFINITY
                    };
                    if ratio < partial {
                        partial = ratio;
                        drop = i;
                    }
                }
                (r.iter().copied().collect::<Vec<f64>>(), z_sq, partial, drop)
            };
            let full = if z_sq > DEPENDENCE_TOL * gs(p, p) {
                -slack_p / z_sq
            } else {
                f64::INFINITY
            };
            let step = partial.min(full);
            if step == f64::INFINITY {
                return weights; // Infeasible: the constraints are dropped.
            }
            for (i, &k) in active.iter().enumerate() {
                mu[k] -= step * r[i];
            }
            mu[p] += step;
            if full <= partial {
                active.push(p);
                break;
            }
            mu[active[drop]] = 0.0;
            active.remove(drop);
            slack_p = slack(&mu, p);
        }
    }
    for (w, &x) in weights[1..].iter_mut().zip(&mu) {
        *w = x.max(0.0);
    }
    weights
}

/// `τ`: one value for every secondary task, or one per secondary task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tau {
    /// The same fraction for every secondary task.
    Shared(f64),
    /// One fraction per secondary task (tasks `1..T`, in order).
    PerTask(Vec<f64>),
}

/// Configuration of [`Pcd`] (registry name `pcd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcdConfig {
    /// Guaranteed fraction `τ ∈ [0, 1]` of each secondary task's progress
    /// (default 0.02, torchjd), shared or one per secondary task.
    pub tau: Tau,
    /// Decay `β ∈ [0, 1)` of the moving average of the squared norms
    /// (default 0.999).
    pub beta: f64,
    /// `ε ≥ 0` added to the moving average before the inverse square root
    /// (default 1e-8).
    pub eps: f64,
}

impl Default for PcdConfig {
    fn default() -> Self {
        Self {
            tau: Tau::Shared(0.02),
            beta: 0.999,
            eps: 1e-8,
        }
    }
}

impl MethodConfig for PcdConfig {
    const NAME: &'static str = "pcd";
    const SUMMARY: &'static str =
        "priority-constrained descent: task 0 first, each other task keeps a share τ (Varam et al. 2026)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "tau",
            "fraction τ in [0, 1] of progress kept by each secondary task (one or T − 1 values)",
        ),
        (
            "beta",
            "decay β in [0, 1) of the moving average of squared norms",
        ),
        (
            "eps",
            "ε ≥ 0 added to that average before the inverse square root",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, Pcd::new(num_tasks, self.clone())?)
    }
}

/// The saved state of [`Pcd`]: the moving average of every task's squared
/// gradient norm and how many updates it has had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PcdState {
    ema: Vec<f64>,
    steps: Vec<u64>,
}

/// PCD; see the module documentation. Only present tasks update their
/// moving average; when the primary task (task 0) is absent the direction
/// is zero (its row is zero, torchjd's `g_0 = 0` case).
#[derive(Debug, Clone)]
pub struct Pcd {
    taus: Vec<f64>,
    beta: f64,
    eps: f64,
    state: PcdState,
}

impl Pcd {
    /// PCD for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for `τ ∉ [0, 1]`,
    /// `β ∉ [0, 1)` or `ε < 0`; [`Error::CountMismatch`] for a `τ` vector
    /// that is not `T − 1` long.
    pub fn new(num_tasks: usize, config: PcdConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = PcdConfig::NAME;
        let taus = match config.tau {
            Tau::Shared(tau) => vec![tau; num_tasks - 1],
            Tau::PerTask(taus) => {
                if taus.len() != num_tasks - 1 {
                    return Err(Error::CountMismatch {
                        what: "pcd tau values (one per secondary task)",
                        expected: num_tasks - 1,
                        got: taus.len(),
                    });
                }
                taus
            }
        };
        for &tau in &taus {
            check_parameter(
                name,
                "tau",
                tau,
                (0.0..=1.0).contains(&tau),
                "must be in [0, 1]",
            )?;
        }
        check_parameter(
            name,
            "beta",
            config.beta,
            (0.0..1.0).contains(&config.beta),
            "must be in [0, 1)",
        )?;
        check_parameter(name, "eps", config.eps, config.eps >= 0.0, "must be ≥ 0")?;
        Ok(Self {
            taus,
            beta: config.beta,
            eps: config.eps,
            state: PcdState {
                ema: vec![0.0; num_tasks],
                steps: vec![0; num_tasks],
            },
        })
    }
}

impl MethodState for Pcd {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: PcdState = parse_state(balancer, state)?;
        let t = self.state.ema.len();
        if loaded.ema.len() != t || loaded.steps.len() != t {
            return Err(Error::State {
                balancer,
                reason: format!("expected {t} moving averages and step counts"),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state.ema.iter_mut().for_each(|v| *v = 0.0);
        self.state.steps.iter_mut().for_each(|k| *k = 0);
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.state
            .ema
            .iter()
            .enumerate()
            .map(|(t, &v)| (format!("sq_norm_ema[{t}]"), v as f32))
            .collect()
    }
}

impl GramMethod for Pcd {
    type Config = PcdConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        let scales: Vec<f64> = step
            .tasks
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let s = update_scale(
                    &mut self.state.ema[t],
                    self.state.steps[t],
                    gram[(i, i)],
                    self.beta,
                    self.eps,
                );
                self.state.steps[t] += 1;
                s
            })
            .collect();
        if step.tasks.first() != Some(&0) {
            return Ok(vec![0.0; step.tasks.len()]);
        }
        let taus: Vec<f64> = step.tasks[1..].iter().map(|&t| self.taus[t - 1]).collect();
        Ok(pcd_weights(gram, &taus, &scales))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms of 2- and 3-row problems in `f64`.
    const TOL: f64 = 1e-10;

    fn gram_of(rows: &[&[f64]]) -> DMatrix<f64> {
        let t = rows.len();
        DMatrix::from_fn(t, t, |i, j| {
            rows[i].iter().zip(rows[j]).map(|(a, b)| a * b).sum()
        })
    }

    fn direction(rows: &[&[f64]], w: &[f64]) -> Vec<f64> {
        (0..rows[0].len())
            .map(|k| rows.iter().zip(w).map(|(r, x)| r[k] * x).sum())
            .collect()
    }

    #[test]
    fn qp_ground_truths() {
        // g0 = (1, 0), g1 = (−1, 1), τ = 0: g1·g0 = −1 < 0, so the
        // constraint binds: d = g0 + μ g1 with g1·d = 0 ⇒ −1 + 2μ = 0.
        let g = gram_of(&[&[1.0, 0.0], &[-1.0, 1.0]]);
        let w = solve_qp(&g, &[0.0]);
        assert!(
            (w[0] - 1.0).abs() < TOL && (w[1] - 0.5).abs() < TOL,
            "{w:?}"
        );
        // τ = 0.5: g1·d = 0.5·2 = 1 ⇒ −1 + 2μ = 1, μ = 1, d = (0, 1).
        let w = solve_qp(&g, &[0.5]);
        assert!((w[1] - 1.0).abs() < TOL, "{w:?}");
        // No conflict and τ = 0: d = g0.
        let g = gram_of(&[&[1.0, 0.0], &[1.0, 1.0]]);
        assert_eq!(solve_qp(&g, &[0.0]), vec![1.0, 0.0]);
        // Opposite secondary rows cannot both gain: infeasible, d = g0.
        let g = gram_of(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, -1.0]]);
        assert_eq!(solve_qp(&g, &[0.1, 0.1]), vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn solution_satisfies_the_kkt_conditions() {
        let rows: [&[f64]; 4] = [
            &[1.0, 0.2, -0.3, 0.0],
            &[-0.8, 0.5, 0.1, 0.4],
            &[-0.2, -1.0, 0.6, 0.3],
            &[0.3, 0.1, -1.2, -0.5],
        ];
        let g = gram_of(&rows);
        let taus = [0.1, 0.2, 0.05];
        let w = solve_qp(&g, &taus);
        let d = direction(&rows, &w);
        assert!((w[0] - 1.0).abs() < TOL);
        for j in 1..4 {
            let progress: f64 = rows[j].iter().zip(&d).map(|(a, b)| a * b).sum();
            let bound = taus[j - 1] * g[(j, j)];
            assert!(
                progress >= bound - 1e-9,
                "constraint {j}: {progress} < {bound}"
            );
            // Complementary slackness.
            assert!(w[j] * (progress - bound).abs() < 1e-9, "slackness {j}");
            assert!(w[j] >= 0.0);
        }
    }

    #[test]
    fn weights_rescale_to_the_primary_norm() {
        let rows: [&[f64]; 2] = [&[3.0, 0.0], &[-1.0, 1.0]];
        let g = gram_of(&rows);
        let w = pcd_weights(&g, &[0.0], &[1.0, 1.0]);
        // d̃ = (1·3 − 1.5·... ): μ from g1·(g0 + μ g1) = 0 ⇒ −3 + 2μ = 0, μ = 1.5,
        // d̃ = (1.5, 1.5), ‖d̃‖ = 1.5√2, rescaled to ‖g0‖ = 3.
        let d = direction(&rows, &w);
        let norm = (d[0] * d[0] + d[1] * d[1]).sqrt();
        assert!((norm - 3.0).abs() < TOL, "{d:?}");
        assert!((d[0] - d[1]).abs() < TOL);
        // A zero primary gives a zero direction.
        let g = gram_of(&[&[0.0, 0.0], &[1.0, 1.0]]);
        assert_eq!(pcd_weights(&g, &[0.02], &[1.0, 1.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn scales_are_the_debiased_moving_average() {
        let (mut a, mut b) = (0.0, 0.0);
        // v = 0.1·4 = 0.4, debiased 0.4/0.1 = 4 ⇒ s = 1/2; a zero norm gives 0.
        assert!((update_scale(&mut a, 0, 4.0, 0.9, 0.0) - 0.5).abs() < TOL);
        assert_eq!(update_scale(&mut b, 0, 0.0, 0.9, 0.0), 0.0);
        // v = 0.9·0.4 + 0.1·16 = 1.96, debiased 1.96/0.19.
        let s = update_scale(&mut a, 1, 16.0, 0.9, 0.0);
        assert!((s - (0.19f64 / 1.96).sqrt()).abs() < TOL, "{s}");
    }
}
