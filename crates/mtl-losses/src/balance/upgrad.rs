//! UPGrad, unconflicting projection of gradients (Quinton & Rey 2024,
//! "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232).
//!
//! Project every row onto the dual cone `C = {y : g_j·y ≥ 0 ∀j}` and take the
//! preference-weighted sum (default: the mean):
//!
//! ```text
//! d = Σ_i u_i π_C(g_i) = Jᵀ Σ_i w(u_i e_i),   w(v) = argmin_{x ⪰ v} xᵀ G x
//! ```
//!
//! (Prop. 1 of the paper), `T` small QPs on the Gram matrix solved exactly by
//! [`solver::dual_cone`](super::solver::dual_cone). As in torchjd and LibMTL
//! the Gram is divided by its trace and `reg_eps·I` is added (`reg_eps = 0`
//! gives the exact projection); a trace below `norm_eps` returns the
//! preference weights.
//!
//! * **Non-conflicting:** yes, `J d ≥ 0` exactly for `reg_eps = 0`; the
//!   default ridge `reg_eps = 1e-4` relaxes this by `O(reg_eps · tr G)`.
//! * **Scaling:** mean scale; equals the mean gradient when no pair conflicts;
//!   linear under per-task scaling (exactly for `reg_eps = 0`); for `T = 2`
//!   half of PCGrad's sum.
//! * **T = 1:** `d = g_1`.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::solver::dual_cone;
use super::{
    check_parameter, require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep,
    MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// Configuration of [`UpGrad`] (registry name `upgrad`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpGradConfig {
    /// Below this trace of `G` the gradients count as zero and the
    /// preference weights are returned (default 1e-4, torchjd).
    pub norm_eps: f64,
    /// Ridge added to the trace-normalised Gram (default 1e-4, torchjd;
    /// 0 = exact projection).
    pub reg_eps: f64,
    /// Preference weights `u`, one per task (default: empty = `1/T` each).
    pub preference: Vec<f64>,
}

impl Default for UpGradConfig {
    fn default() -> Self {
        Self {
            norm_eps: 1e-4,
            reg_eps: 1e-4,
            preference: Vec::new(),
        }
    }
}

impl MethodConfig for UpGradConfig {
    const NAME: &'static str = "upgrad";
    const SUMMARY: &'static str =
        "mean of the gradients projected onto the dual cone (Quinton & Rey 2024)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "norm_eps",
            "below this trace of the Gram the preference weights are returned",
        ),
        (
            "reg_eps",
            "ridge on the trace-normalised Gram (0 = exact projection)",
        ),
        (
            "preference",
            "one non-negative weight per task (empty = 1/T each)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, UpGrad::new(num_tasks, self.clone())?)
    }
}

/// Checks the settings UPGrad and DualProj share: `num_tasks ≥ 1`,
/// non-negative `norm_eps` and `reg_eps`, and either no preference or one
/// finite non-negative weight per task (`what` names them in the error).
pub(crate) fn check_cone_settings(
    balancer: &'static str,
    what: &'static str,
    num_tasks: usize,
    norm_eps: f64,
    reg_eps: f64,
    preference: &[f64],
) -> Result<()> {
    require_tasks(num_tasks)?;
    check_parameter(
        balancer,
        "norm_eps",
        norm_eps,
        norm_eps >= 0.0,
        "must be ≥ 0",
    )?;
    check_parameter(balancer, "reg_eps", reg_eps, reg_eps >= 0.0, "must be ≥ 0")?;
    if !preference.is_empty() && preference.len() != num_tasks {
        return Err(Error::CountMismatch {
            what,
            expected: num_tasks,
            got: preference.len(),
        });
    }
    for &u in preference {
        check_parameter(
            balancer,
            "preference",
            u,
            u >= 0.0,
            "must be finite and ≥ 0",
        )?;
    }
    Ok(())
}

/// UPGrad; see the module documentation.
#[derive(Debug, Clone)]
pub struct UpGrad {
    config: UpGradConfig,
}

impl UpGrad {
    /// UPGrad for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for negative epsilons or
    /// preference weights; [`Error::CountMismatch`] for a preference of the
    /// wrong length.
    pub fn new(num_tasks: usize, config: UpGradConfig) -> Result<Self> {
        check_cone_settings(
            UpGradConfig::NAME,
            "upgrad preference weights",
            num_tasks,
            config.norm_eps,
            config.reg_eps,
            &config.preference,
        )?;
        Ok(Self { config })
    }

    /// The weights `Σ_i w(u_i e_i)` from the Gram matrix of all tasks.
    ///
    /// # Errors
    /// A QP failure (non-finite Gram).
    pub fn weights_from_gram(&self, gram: &DMatrix<f64>) -> Result<Vec<f64>> {
        let tasks: Vec<usize> = (0..gram.nrows()).collect();
        self.weights_of(gram, &tasks)
    }

    /// The weights for the tasks `tasks` (rows of `gram`): the configured
    /// preference of each, or `1/T'` over the `T'` rows by default.
    fn weights_of(&self, gram: &DMatrix<f64>, tasks: &[usize]) -> Result<Vec<f64>> {
        let t = gram.nrows();
        let preference = DVector::from_fn(t, |i, _| {
            self.config
                .preference
                .get(tasks[i])
                .copied()
                .unwrap_or(1.0 / t as f64)
        });
        if gram.trace() < self.config.norm_eps {
            return Ok(preference.iter().copied().collect());
        }
        let mut total = DVector::zeros(t);
        for i in 0..t {
            let mut u = DVector::zeros(t);
            u[i] = preference[i];
            total += dual_cone::project_weights(gram, &u, self.config.reg_eps)?;
        }
        Ok(total.iter().copied().collect())
    }
}

impl MethodState for UpGrad {}

impl GramMethod for UpGrad {
    type Config = UpGradConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        self.weights_of(gram, step.tasks)
    }
}
