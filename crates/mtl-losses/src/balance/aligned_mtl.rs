//! Aligned-MTL (Senushkin, Patakin, Kuznetsov, Konushin 2023, "Independent
//! Component Alignment for Multi-Task Learning", CVPR).
//!
//! ```text
//! G = V Λ Vᵀ (λ descending),  keep r = #{λ > λ_max · T · ε_f32},
//! B = √λ_s · V_r Λ_r^{-1/2} V_rᵀ,   w = B u,   d = Jᵀ w
//! ```
//!
//! The aligned rows `BJ` are orthogonal with equal norm `√λ_s` (when `G` has
//! full rank): `B G B = λ_s V_r V_rᵀ`. `λ_s` is the smallest kept eigenvalue
//! (`min`, default, the paper), their median, or their mean (`rmse`). The
//! preference `u` is `1/T` (`mean`, default, torchjd) or 1 (`sum`, official
//! code and LibMTL, twice the mean for `T = 2`).
//!
//! * **Non-conflicting:** no (balancers.md PROP-7).
//! * **Scaling:** mean scale for `preference = mean` (orthogonal equal-norm
//!   gradients give `1/T` each); a near-singular `G` gives a tiny `λ_min` and
//!   a strongly damped update.
//! * **T = 1:** `B = 1`, `d = g_1/T = g_1`.
//! * A zero Gram (rank 0) returns zero weights.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::solver::normalized;
use super::solver::spectral::{gram_rank_tolerance, SortedEigen};
use super::{
    require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep, MethodConfig,
    MethodState,
};
use crate::error::Result;

/// Which kept eigenvalue sets the common norm of the aligned gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlignedScale {
    /// The smallest kept eigenvalue (the paper).
    #[default]
    Min,
    /// The median of the kept eigenvalues.
    Median,
    /// The mean of the kept eigenvalues.
    Rmse,
}

/// The preference vector `u` that combines the aligned rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlignedPreference {
    /// `u = 1/T` (torchjd; the crate's mean scale).
    #[default]
    Mean,
    /// `u = 1` (official code, LibMTL).
    Sum,
}

/// Configuration of [`AlignedMtl`] (registry name `aligned-mtl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlignedMtlConfig {
    /// `min` (default), `median` or `rmse`.
    pub scale: AlignedScale,
    /// `mean` (default) or `sum`.
    pub preference: AlignedPreference,
}

impl MethodConfig for AlignedMtlConfig {
    const NAME: &'static str = "aligned-mtl";
    const SUMMARY: &'static str =
        "align the task gradients to an orthogonal, equal-norm basis (Senushkin et al. 2023)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "scale",
            "eigenvalue setting the aligned norm: min, median or rmse",
        ),
        (
            "preference",
            "combine the aligned gradients by their mean or their sum",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, AlignedMtl::new(num_tasks, self.clone())?)
    }
}

/// Aligned-MTL; see the module documentation.
#[derive(Debug, Clone)]
pub struct AlignedMtl {
    config: AlignedMtlConfig,
}

impl AlignedMtl {
    /// Aligned-MTL for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks).
    pub fn new(num_tasks: usize, config: AlignedMtlConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        Ok(Self { config })
    }

    /// The balance matrix `B` (in the units of `gram`).
    pub fn balance_matrix(&self, gram: &DMatrix<f64>) -> DMatrix<f64> {
        let t = gram.nrows();
        let (g, scale) = normalized(gram);
        if scale == 0.0 {
            return DMatrix::zeros(t, t);
        }
        let eig = SortedEigen::new(&g);
        let r = eig.rank(gram_rank_tolerance(t));
        if r == 0 {
            return DMatrix::zeros(t, t);
        }
        let kept = &eig.values.as_slice()[..r];
        let lambda_s = match self.config.scale {
            AlignedScale::Min => kept[r - 1],
            AlignedScale::Median => {
                if r % 2 == 1 {
                    kept[r / 2]
                } else {
                    0.5 * (kept[r / 2 - 1] + kept[r / 2])
                }
            }
            AlignedScale::Rmse => kept.iter().sum::<f64>() / r as f64,
        };
        let mut b = DMatrix::zeros(t, t);
        for (k, lambda) in kept.iter().enumerate() {
            let v = eig.vectors.column(k);
            b += (v * v.transpose()) * (lambda_s / lambda).sqrt();
        }
        b
    }

    /// The weights `w = B u` from the Gram matrix.
    pub fn weights_from_gram(&self, gram: &DMatrix<f64>) -> Vec<f64> {
        let t = gram.nrows();
        let u = match self.config.preference {
            AlignedPreference::Mean => 1.0 / t as f64,
            AlignedPreference::Sum => 1.0,
        };
        let w = self.balance_matrix(gram) * DVector::from_element(t, u);
        w.iter().copied().collect()
    }
}

impl MethodState for AlignedMtl {}

impl GramMethod for AlignedMtl {
    type Config = AlignedMtlConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, _step: &GramStep<'_>) -> Result<Vec<f64>> {
        Ok(self.weights_from_gram(gram))
    }
}
