//! MGDA and MGDA-UB: the min-norm point of the convex hull of the task
//! gradients (Désidéri 2012; Sener & Koltun 2018, "Multi-Task Learning as
//! Multi-Objective Optimization", NeurIPS).
//!
//! ```text
//! α* = argmin_{α ∈ Δ_T} ‖Σ_i α_i g'_i‖²,   g'_i = g_i / n_i,    d = Σ_i α*_i g_i
//! ```
//!
//! with the optional gradient normalisation `n_i` of the reference code:
//! `none` (1), `l2` (`‖g_i‖`), `loss` (`L_i`), `loss+` (`L_i‖g_i‖`). The solve
//! runs on the normalised Gram `G'_ij = G_ij/(n_i n_j)`. By default `α` scales
//! the **raw** gradients, as the official trainer does (it back-propagates
//! `Σ α_t L_t`); `update = "normalized"` combines the normalised gradients
//! (`d = Σ α_i g'_i`, LibMTL's parameter-level variant).
//!
//! * **Non-conflicting:** yes for `normalization = none`, and for any
//!   normalisation with `update = normalized` (KKT: `g'_i·d ≥ ‖d‖²`); the raw
//!   update with a normalisation is not guaranteed to be.
//! * **Scaling:** weights on the simplex (`Σα = 1`): equal gradients give
//!   `1/T` each, so the update is on the mean scale. Not invariant to a
//!   per-task rescaling of the losses (biased toward the smallest gradient).
//! * **T = 1:** `α = 1`, `d = g_1`.
//! * **MGDA-UB** (registry name `mgda-ub`) is the same solve on gradients of
//!   the shared representation (`needs() = Representation`), one trunk
//!   backward instead of `T` (Sener & Koltun 2018, Thm. 1).
//! * Boundary cases are exact (`α = (1, 0)` on `J_dom`), not the reference
//!   code's `0.999 / 0.001`.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::solver::min_norm;
use super::{
    check_parameter, require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep,
    MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// The per-task divisor applied to the gradients before the min-norm solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum GradNormalization {
    /// No normalisation (divisor 1).
    #[default]
    #[serde(rename = "none")]
    None,
    /// Divide by `‖g_t‖` (a zero row keeps divisor 1).
    #[serde(rename = "l2")]
    L2,
    /// Divide by the loss `L_t` (must be positive).
    #[serde(rename = "loss")]
    Loss,
    /// Divide by `L_t ‖g_t‖` (a zero row uses `L_t`).
    #[serde(rename = "loss+")]
    LossPlus,
}

/// Which min-norm solver MGDA uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MinNormSolverKind {
    /// Exact active-set QP (closed form for two tasks).
    #[default]
    Exact,
    /// Frank–Wolfe (Sener & Koltun Alg. 2), stopped by `fw_tol` / `fw_max_iter`.
    FrankWolfe,
}

/// Which gradients `α` combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MgdaUpdate {
    /// `d = Σ α_i g_i` (official trainer).
    #[default]
    Raw,
    /// `d = Σ α_i g_i / n_i` (LibMTL with parameter gradients).
    Normalized,
}

/// Configuration of [`Mgda`] (registry name `mgda`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MgdaConfig {
    /// Gradient normalisation: `none` (default), `l2`, `loss`, `loss+`.
    pub normalization: GradNormalization,
    /// Min-norm solver: `exact` (default) or `frank-wolfe`.
    pub solver: MinNormSolverKind,
    /// Frank–Wolfe step-size stop (default 1e-6; torchjd uses 1e-3).
    pub fw_tol: f64,
    /// Frank–Wolfe iteration cap (default 250).
    pub fw_max_iter: usize,
    /// `raw` (default) or `normalized` gradients combined by `α`.
    pub update: MgdaUpdate,
}

impl Default for MgdaConfig {
    fn default() -> Self {
        Self {
            normalization: GradNormalization::None,
            solver: MinNormSolverKind::Exact,
            fw_tol: 1e-6,
            fw_max_iter: 250,
            update: MgdaUpdate::Raw,
        }
    }
}

const PARAMS: &[(&str, &str)] = &[
    (
        "normalization",
        "gradient normalisation before the solve: none, l2, loss, loss+",
    ),
    (
        "solver",
        "min-norm solver: exact (active-set QP) or frank-wolfe",
    ),
    (
        "fw_tol",
        "Frank-Wolfe stops when its step size falls below this",
    ),
    ("fw_max_iter", "Frank-Wolfe iteration cap"),
    (
        "update",
        "combine raw gradients (raw) or normalised ones (normalized)",
    ),
];

impl MethodConfig for MgdaConfig {
    const NAME: &'static str = "mgda";
    const SUMMARY: &'static str =
        "min-norm point of the convex hull of the task gradients (Sener & Koltun 2018)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = PARAMS;

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, Mgda::new(num_tasks, self.clone(), false)?)
    }
}

/// Configuration of MGDA-UB (registry name `mgda-ub`): MGDA on gradients of
/// the shared representation; the same parameters as [`MgdaConfig`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MgdaUbConfig(pub MgdaConfig);

impl MethodConfig for MgdaUbConfig {
    const NAME: &'static str = "mgda-ub";
    const SUMMARY: &'static str =
        "MGDA on shared-representation gradients, one trunk backward (Sener & Koltun 2018)";
    const NEEDS: GradientSource = GradientSource::Representation;
    const PARAMS: &'static [(&'static str, &'static str)] = PARAMS;

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(
            num_tasks,
            MgdaUb(Mgda::new(num_tasks, self.0.clone(), true)?),
        )
    }
}

/// MGDA / MGDA-UB; see the module documentation.
#[derive(Debug, Clone)]
pub struct Mgda {
    config: MgdaConfig,
    upper_bound: bool,
}

impl Mgda {
    /// MGDA for `num_tasks` tasks; `upper_bound` selects MGDA-UB
    /// (representation gradients).
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for `fw_tol ≤ 0` or
    /// `fw_max_iter = 0`.
    pub fn new(num_tasks: usize, config: MgdaConfig, upper_bound: bool) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = if upper_bound {
            MgdaUbConfig::NAME
        } else {
            MgdaConfig::NAME
        };
        check_parameter(
            name,
            "fw_tol",
            config.fw_tol,
            config.fw_tol > 0.0,
            "must be > 0",
        )?;
        let iters = config.fw_max_iter as f64;
        check_parameter(name, "fw_max_iter", iters, iters >= 1.0, "must be ≥ 1")?;
        Ok(Self {
            config,
            upper_bound,
        })
    }

    /// The divisors `n_i` of the configured normalisation.
    ///
    /// # Errors
    /// [`Error::LossOutOfDomain`] for a non-positive loss with `loss`/`loss+`.
    pub fn divisors(&self, gram: &DMatrix<f64>, losses: &[f32]) -> Result<Vec<f64>> {
        let norm = |i: usize| {
            let n = gram[(i, i)].sqrt();
            if n > 0.0 {
                n
            } else {
                1.0
            }
        };
        let loss = |i: usize| -> Result<f64> {
            let l = f64::from(losses[i]);
            if l > 0.0 {
                Ok(l)
            } else {
                Err(Error::LossOutOfDomain {
                    balancer: self.name(),
                    task: i,
                    value: l,
                    bound: 0.0,
                })
            }
        };
        (0..gram.nrows())
            .map(|i| match self.config.normalization {
                GradNormalization::None => Ok(1.0),
                GradNormalization::L2 => Ok(norm(i)),
                GradNormalization::Loss => loss(i),
                GradNormalization::LossPlus => Ok(loss(i)? * norm(i)),
            })
            .collect()
    }

    /// The weights on the raw gradient rows (`d = Σ w_i g_i`) from the Gram
    /// matrix and the losses: `α` for `update = raw`, `α_i/n_i` for
    /// `update = normalized`.
    ///
    /// # Errors
    /// A non-positive loss with a loss normalisation; a solver failure.
    pub fn weights_from_gram(&self, gram: &DMatrix<f64>, losses: &[f32]) -> Result<Vec<f64>> {
        let n = self.divisors(gram, losses)?;
        let scaled = DMatrix::from_fn(gram.nrows(), gram.ncols(), |i, j| {
            gram[(i, j)] / (n[i] * n[j])
        });
        let alpha: DVector<f64> = match self.config.solver {
            MinNormSolverKind::Exact => min_norm::exact(&scaled)?,
            MinNormSolverKind::FrankWolfe => {
                min_norm::frank_wolfe(&scaled, self.config.fw_max_iter, self.config.fw_tol)
            }
        };
        Ok(match self.config.update {
            MgdaUpdate::Raw => alpha.iter().copied().collect(),
            MgdaUpdate::Normalized => alpha.iter().zip(&n).map(|(a, d)| a / d).collect(),
        })
    }
}

impl Mgda {
    /// The registry name (`mgda`, or `mgda-ub` for the upper-bound variant).
    pub fn name(&self) -> &'static str {
        if self.upper_bound {
            MgdaUbConfig::NAME
        } else {
            MgdaConfig::NAME
        }
    }
}

impl MethodState for Mgda {}

impl GramMethod for Mgda {
    type Config = MgdaConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        self.weights_from_gram(gram, step.losses)
    }
}

/// MGDA-UB: [`Mgda`] registered under `mgda-ub`, on representation rows.
#[derive(Debug, Clone)]
pub struct MgdaUb(pub Mgda);

impl MethodState for MgdaUb {}

impl GramMethod for MgdaUb {
    type Config = MgdaUbConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        self.0.weights_from_gram(gram, step.losses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// balancers.md §19.6 prints six decimals.
    const PRINTED_TOL: f64 = 1e-6;

    fn j_orth() -> DMatrix<f64> {
        DMatrix::from_row_slice(2, 2, &[4.0, 0.0, 0.0, 1.0])
    }

    #[test]
    fn mgda_5_normalizations_on_j_orth() {
        // L = (4, 1). Expected α and the raw and LibMTL-style (normalised) weights.
        let cases = [
            (GradNormalization::None, [0.2, 0.8], [0.2, 0.8]),
            (GradNormalization::L2, [0.5, 0.5], [0.25, 0.5]),
            (GradNormalization::Loss, [0.8, 0.2], [0.2, 0.2]),
            (
                GradNormalization::LossPlus,
                [16.0 / 17.0, 1.0 / 17.0],
                [2.0 / 17.0, 1.0 / 17.0],
            ),
        ];
        for (normalization, raw, normalized) in cases {
            for (update, expect) in [(MgdaUpdate::Raw, raw), (MgdaUpdate::Normalized, normalized)] {
                let config = MgdaConfig {
                    normalization,
                    update,
                    ..MgdaConfig::default()
                };
                let mgda = Mgda::new(2, config, false).unwrap();
                let w = mgda.weights_from_gram(&j_orth(), &[4.0, 1.0]).unwrap();
                for (a, b) in w.iter().zip(expect) {
                    assert!(
                        (a - b).abs() < PRINTED_TOL,
                        "{normalization:?} {update:?}: {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn loss_normalization_rejects_non_positive_losses() {
        let config = MgdaConfig {
            normalization: GradNormalization::Loss,
            ..MgdaConfig::default()
        };
        let mgda = Mgda::new(2, config, false).unwrap();
        let err = mgda.weights_from_gram(&j_orth(), &[1.0, 0.0]).unwrap_err();
        assert!(matches!(err, Error::LossOutOfDomain { task: 1, .. }));
    }

    #[test]
    fn ub_variant_declares_representation_gradients() {
        let ub = MgdaUbConfig::default().build(2, 0).unwrap();
        assert_eq!(ub.needs(), GradientSource::Representation);
        assert_eq!(ub.name(), "mgda-ub");
        let json = serde_json::json!({ "normalization": "loss+" });
        let parsed: MgdaUbConfig = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.0.normalization, GradNormalization::LossPlus);
    }
}
