//! CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone, Liu 2021,
//! "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS).
//!
//! ```text
//! max_d min_i g_i·d   s.t.  ‖d − g_0‖ ≤ c‖g_0‖
//! dual: w* = argmin_{w∈Δ} wᵀG1/T + c‖g_0‖ √(wᵀGw),   d = g_0 + (c‖g_0‖/‖g_w*‖) g_w*
//! ```
//!
//! solved exactly on the Gram matrix by
//! [`solver::cagrad_dual`](super::solver::cagrad_dual). The official code then
//! rescales: `rescale = 0` keeps `d`, `1` divides by `1 + c²` (default, LibMTL
//! and the official trainer), `2` by `1 + c` (the paper's toy).
//!
//! * **Non-conflicting:** not promised for `c < 1` (it maximises the worst
//!   task's decrease inside the ball); for `c ≥ 1` fixed points are
//!   Pareto-stationary.
//! * **Scaling:** mean scale (`c = 0` gives `1/T` each, the mean gradient);
//!   effective weights `(1/T + λ w*_i)/r`. Not scale-invariant.
//! * **T = 1:** `d = (1 + c) g_1 / r` (`g_1` for `rescale = 2`).
//! * At a Pareto-stationary point (`0` in the convex hull of the gradients)
//!   the dual is still well defined and solved as anywhere else: when some
//!   combination of the gradients has a cosine with `g_0` below `−c` (e.g.
//!   rows `g, −2g, h`) the optimum improves the worst task over `g_0`. Only
//!   when the dual's minimiser has `Jᵀw* = 0` (optimal worst-task value 0)
//!   is `g_w*/‖g_w*‖` undefined: for `c ≥ 1` the method then returns `d = 0`
//!   (inside the ball, and optimal); for `c < 1` the mean gradient `g_0`,
//!   the centre of the ball. That case is reported by
//!   [`Cagrad::last_was_stationary`].

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::solver::cagrad_dual;
use super::{
    check_parameter, require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep,
    MethodConfig, MethodState,
};
use crate::error::Result;

/// Configuration of [`Cagrad`] (registry name `cagrad`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CagradConfig {
    /// Radius `c ≥ 0` of the ball around `g_0` (default 0.4, the paper's best
    /// on NYUv2 and Cityscapes; LibMTL uses 0.5).
    pub c: f64,
    /// 0: no rescaling; 1: divide by `1 + c²` (default); 2: divide by `1 + c`.
    pub rescale: u8,
}

impl Default for CagradConfig {
    fn default() -> Self {
        Self { c: 0.4, rescale: 1 }
    }
}

impl MethodConfig for CagradConfig {
    const NAME: &'static str = "cagrad";
    const SUMMARY: &'static str =
        "best worst-task decrease within a ball around the mean gradient (Liu et al. 2021)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "c",
            "radius of the ball around the mean gradient, relative to its norm",
        ),
        (
            "rescale",
            "0: none, 1: divide by 1 + c^2, 2: divide by 1 + c",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, Cagrad::new(num_tasks, self.clone())?)
    }
}

/// CAGrad; see the module documentation.
#[derive(Debug, Clone)]
pub struct Cagrad {
    config: CagradConfig,
    stationary: bool,
}

impl Cagrad {
    /// CAGrad for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks); [`Error::InvalidParameter`](crate::Error::InvalidParameter)
    /// for `c < 0` or `rescale > 2`.
    pub fn new(num_tasks: usize, config: CagradConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        check_parameter(
            CagradConfig::NAME,
            "c",
            config.c,
            config.c >= 0.0,
            "must be ≥ 0",
        )?;
        let r = f64::from(config.rescale);
        check_parameter(
            CagradConfig::NAME,
            "rescale",
            r,
            config.rescale <= 2,
            "0, 1 or 2",
        )?;
        Ok(Self {
            config,
            stationary: false,
        })
    }

    /// Effective loss weights `(1/T + λ w*)/r` from the Gram matrix.
    ///
    /// # Errors
    /// A solver failure (non-finite Gram).
    pub fn weights_from_gram(&mut self, gram: &DMatrix<f64>) -> Result<Vec<f64>> {
        let c = self.config.c;
        let sol = cagrad_dual::solve(gram, c)?;
        self.stationary = sol.stationary;
        if sol.stationary && c >= 1.0 {
            // The ball contains d = 0, which attains the optimum
            // min_i g_i·d = 0 of a Pareto-stationary input.
            return Ok(vec![0.0; gram.nrows()]);
        }
        let divisor = match self.config.rescale {
            0 => 1.0,
            1 => 1.0 + c * c,
            _ => 1.0 + c,
        };
        Ok(sol
            .effective_weights()
            .iter()
            .map(|w| w / divisor)
            .collect())
    }

    /// Whether the last step's dual minimiser had `Jᵀw* = 0` (and so it
    /// returned the mean gradient, or zero for `c ≥ 1`).
    pub fn last_was_stationary(&self) -> bool {
        self.stationary
    }
}

impl MethodState for Cagrad {
    fn learnable(&self) -> Vec<(String, f32)> {
        vec![("stationary".into(), if self.stationary { 1.0 } else { 0.0 })]
    }
}

impl GramMethod for Cagrad {
    type Config = CagradConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, _step: &GramStep<'_>) -> Result<Vec<f64>> {
        self.weights_from_gram(gram)
    }
}
