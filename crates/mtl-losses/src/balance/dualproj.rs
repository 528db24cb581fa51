//! DualProj, the preference-weighted mean of the gradients projected onto
//! the dual cone of the gradients (Lopez-Paz & Ranzato 2017, "Gradient
//! Episodic Memory for Continual Learning", NeurIPS, eq. 11; torchjd
//! `DualProj`).
//!
//! ```text
//! d = π_C(Jᵀu) = Jᵀ w,   w = argmin_{v ⪰ u} vᵀ G v,   C = {y : J y ≥ 0}
//! ```
//!
//! one QP on the Gram matrix ([`solver::dual_cone`](super::solver::dual_cone);
//! Quinton & Rey 2024, Prop. 1), where UPGrad projects every row separately.
//! As in torchjd the Gram is divided by its trace and `reg_eps·I` added
//! (`reg_eps = 0` is the exact projection), and a trace below `norm_eps`
//! returns `u`.
//!
//! * **Non-conflicting:** yes, `J d ≥ 0` exactly for `reg_eps = 0`.
//! * **Scaling:** mean scale (`u = 1/T`); equals the mean gradient when the
//!   mean conflicts with no task. torchjd's default preference is also
//!   `1/T`, so the outputs are the same vector.
//! * **T = 1:** `d = g_1`.

use nalgebra::{DMatrix, DVector};

use serde::{Deserialize, Serialize};

use super::solver::dual_cone;
use super::upgrad::check_cone_settings;
use super::{
    Balancer, GradientSource, GramBalancer, GramMethod, GramStep, MethodConfig, MethodState,
};
use crate::error::Result;

/// The weights `w = argmin_{v ⪰ u} vᵀ(G/tr G + reg_eps·I)v`, or `u` when
/// `tr G < norm_eps`.
///
/// # Errors
/// A QP failure (non-finite Gram).
pub fn dualproj_weights(
    gram: &DMatrix<f64>,
    preference: &DVector<f64>,
    norm_eps: f64,
    reg_eps: f64,
) -> Result<Vec<f64>> {
    if gram.trace() < norm_eps {
        return Ok(preference.iter().copied().collect());
    }
    Ok(dual_cone::project_weights(gram, preference, reg_eps)?
        .iter()
        .copied()
        .collect())
}

/// Configuration of [`DualProj`] (registry name `dualproj`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DualProjConfig {
    /// Below this trace of `G` the gradients count as zero and the
    /// preference weights are returned (default 1e-4, torchjd).
    pub norm_eps: f64,
    /// Ridge added to the trace-normalised Gram (default 1e-4, torchjd;
    /// 0 = exact projection).
    pub reg_eps: f64,
    /// Preference weights `u`, one per task (default: empty = `1/T` each).
    pub preference: Vec<f64>,
}

impl Default for DualProjConfig {
    fn default() -> Self {
        Self {
            norm_eps: 1e-4,
            reg_eps: 1e-4,
            preference: Vec::new(),
        }
    }
}

impl MethodConfig for DualProjConfig {
    const NAME: &'static str = "dualproj";
    const SUMMARY: &'static str =
        "mean gradient projected onto the dual cone of the gradients (Lopez-Paz & Ranzato 2017)";
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
        GramBalancer::boxed(num_tasks, DualProj::new(num_tasks, self.clone())?)
    }
}

/// DualProj; see the module documentation. Absent tasks are left out (the
/// default preference is `1/T'` over the present tasks).
#[derive(Debug, Clone)]
pub struct DualProj {
    config: DualProjConfig,
}

impl DualProj {
    /// DualProj for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::error::Error::NoTasks); [`Error::InvalidParameter`](crate::error::Error::InvalidParameter) for negative epsilons
    /// or preference weights; [`Error::CountMismatch`](crate::error::Error::CountMismatch) for a preference of
    /// the wrong length.
    pub fn new(num_tasks: usize, config: DualProjConfig) -> Result<Self> {
        check_cone_settings(
            DualProjConfig::NAME,
            "dualproj preference weights",
            num_tasks,
            config.norm_eps,
            config.reg_eps,
            &config.preference,
        )?;
        Ok(Self { config })
    }
}

impl MethodState for DualProj {}

impl GramMethod for DualProj {
    type Config = DualProjConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        let t = gram.nrows();
        let u = DVector::from_fn(t, |i, _| {
            self.config
                .preference
                .get(step.tasks[i])
                .copied()
                .unwrap_or(1.0 / t as f64)
        });
        dualproj_weights(gram, &u, self.config.norm_eps, self.config.reg_eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The active-set QP is exact up to `f64` rounding of a 2×2 solve.
    const TOL: f64 = 1e-10;

    #[test]
    fn ground_truths() {
        // Orthogonal rows: the mean conflicts with nobody, w = u.
        let g = DMatrix::from_row_slice(2, 2, &[4.0, 0.0, 0.0, 1.0]);
        let u = DVector::from_element(2, 0.5);
        let w = dualproj_weights(&g, &u, 0.0, 0.0).unwrap();
        assert!(
            (w[0] - 0.5).abs() < TOL && (w[1] - 0.5).abs() < TOL,
            "{w:?}"
        );
        // g1 = (1, 0), g2 = (−2, 1): G = [[1, −2], [−2, 5]]. The mean
        // (−0.5, 0.5) conflicts with g1 (g1·m = −0.5), so the constraint
        // of task 1 binds: (Gw)_1 = 0 with w_2 = 0.5 ⇒ w_1 = 1.
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -2.0, -2.0, 5.0]);
        let w = dualproj_weights(&g, &u, 0.0, 0.0).unwrap();
        assert!(
            (w[0] - 1.0).abs() < TOL && (w[1] - 0.5).abs() < TOL,
            "{w:?}"
        );
        // d = 1·(1, 0) + 0.5·(−2, 1) = (0, 0.5): g1·d = 0, g2·d = 0.5.
    }

    #[test]
    fn tiny_trace_returns_the_preference() {
        let g = DMatrix::from_row_slice(2, 2, &[1e-6, -1e-6, -1e-6, 1e-6]);
        let u = DVector::from_vec(vec![0.25, 0.75]);
        assert_eq!(
            dualproj_weights(&g, &u, 1e-4, 1e-4).unwrap(),
            vec![0.25, 0.75]
        );
    }
}
