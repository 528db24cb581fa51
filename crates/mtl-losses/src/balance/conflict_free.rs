//! ConFIG, conflict-free inverse gradients (Liu, Chen, Thuerey 2024,
//! "ConFIG: Towards Conflict-free Training of Physics Informed Neural
//! Networks", arXiv 2408.11104).
//!
//! With unit gradients `u_i = g_i/‖g_i‖` (rows of `U`):
//!
//! ```text
//! v = U⁺ 1   (u_i·v = 1 for every i when the u_i are independent),
//! ĝ = v/‖v‖,   d = (1/T)(Σ_i g_i·ĝ) ĝ
//! ```
//!
//! The paper's length is the sum of the projections; the factor `1/T` puts
//! the result on the crate's mean scale (multiply by `T` for the paper's).
//!
//! Computed on the Gram matrix: with the cosine matrix `C = N⁻¹GN⁻¹`
//! (`N = diag‖g_i‖`), `v = Jᵀ(N⁻¹ C⁺ 1)` and `‖v‖² = 1ᵀC⁺1`, so the weights are
//! `w = s · N⁻¹C⁺1` with `s = 1ᵀG(N⁻¹C⁺1) / (T‖v‖²)`. Rows with zero norm have no
//! direction and take no part (weight 0). The direction is IMTL-G's
//! (equal projections on the unit gradients); the length differs.
//!
//! * **Non-conflicting:** yes when the non-zero gradients are linearly
//!   independent (`u_i·d > 0` for all of them); with dependent gradients the
//!   pseudo-inverse gives the least-squares `v` and this is not guaranteed.
//! * **Scaling:** mean scale (equal gradients give `1/T` each, `d = g`); the
//!   direction is invariant to per-task rescaling, the length is the mean
//!   projection of the gradients on it.
//! * **T = 1:** `d = g_1`.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::solver::spectral::{equal_projection, DEGENERATE_UNIT_NORM2};
use super::{
    require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep, MethodConfig,
    MethodState,
};
use crate::error::Result;

/// Configuration of [`ConFig`] (registry name `config`); it has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConFigConfig {}

impl MethodConfig for ConFigConfig {
    const NAME: &'static str = "config";
    const SUMMARY: &'static str =
        "ConFIG: equal-projection direction with summed-projection length (Liu et al. 2024)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, ConFig::new(num_tasks)?)
    }
}

/// ConFIG; see the module documentation.
#[derive(Debug, Clone)]
pub struct ConFig;

impl ConFig {
    /// ConFIG for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks).
    pub fn new(num_tasks: usize) -> Result<Self> {
        require_tasks(num_tasks)?;
        Ok(Self)
    }

    /// The weights from the Gram matrix; see the module documentation.
    /// Returns zeros when no direction has a positive projection on every
    /// unit gradient in the least-squares sense (`‖v‖ ≈ 0`).
    pub fn weights_from_gram(&self, gram: &DMatrix<f64>) -> Vec<f64> {
        let t = gram.nrows();
        let solve = equal_projection(gram);
        // ‖v‖² in unit-gradient terms. When the unit gradients cancel
        // (1 ∉ range C, e.g. g and −g) the solve returns rounding noise whose
        // direction means nothing: no conflict-free direction exists.
        if solve.unit_norm2 <= DEGENERATE_UNIT_NORM2 * t as f64 {
            return vec![0.0; t];
        }
        let wv = solve.weights;
        let g_wv = gram * &wv;
        let v_norm2 = wv.dot(&g_wv);
        if v_norm2 <= 0.0 || !v_norm2.is_finite() {
            return vec![0.0; t];
        }
        let s = g_wv.sum() / (v_norm2 * t as f64);
        wv.iter().map(|w| w * s).collect()
    }
}

impl MethodState for ConFig {}

impl GramMethod for ConFig {
    type Config = ConFigConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, _step: &GramStep<'_>) -> Result<Vec<f64>> {
        Ok(self.weights_from_gram(gram))
    }
}
