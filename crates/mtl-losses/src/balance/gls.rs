//! GLS, the geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh
//! 2019, "MultiNet++", CVPR workshops; LibMTL `GLS`, torchjd
//! `scalarization.GeometricMean`).
//!
//! The network minimises the geometric mean of the task losses,
//!
//! ```text
//! L = (Π_t L_t)^{1/T},   w_t = ∂L/∂L_t = L / (T · L_t),
//! ```
//!
//! computed in log space (`log L = mean_t log L_t`) so that neither the
//! product nor its root under- or overflows. Equal losses give `w_t = 1/T`:
//! the weights are on the mean scale and equal torchjd's and LibMTL's
//! gradients of the same objective. Every loss must be positive (the
//! logarithm); a loss `≤ 0` is an [`Error::LossOutOfDomain`].

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::{
    Balancer, GradientSource, GramBalancer, GramMethod, GramStep, MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// The registry name, used in errors.
const NAME: &str = "gls";

/// `w_t = (Π_s L_s)^{1/T} / (T L_t)` for the given losses.
///
/// # Errors
/// [`Error::LossOutOfDomain`] for a loss that is not positive.
pub fn gls_weights(losses: &[f32]) -> Result<Vec<f64>> {
    if let Some(task) = losses.iter().position(|&l| l.is_nan() || l <= 0.0) {
        return Err(Error::LossOutOfDomain {
            balancer: NAME,
            task,
            value: f64::from(losses[task]),
            bound: 0.0,
        });
    }
    let t = losses.len() as f64;
    let logs: Vec<f64> = losses.iter().map(|&l| f64::from(l).ln()).collect();
    let log_mean = logs.iter().sum::<f64>() / t;
    Ok(logs.iter().map(|&l| (log_mean - l).exp() / t).collect())
}

/// Configuration of [`Gls`] (registry name `gls`); it has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlsConfig {}

impl MethodConfig for GlsConfig {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str = "geometric mean of the task losses, GLS (Chennupati et al. 2019)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, Gls)
    }
}

/// GLS; see the module documentation. Absent tasks are left out of the
/// geometric mean (the mean is over the present tasks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gls;

impl MethodState for Gls {}

impl GramMethod for Gls {
    type Config = GlsConfig;

    fn weights(&mut self, _gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        gls_weights(step.losses).map_err(|e| e.with_global_task(step.tasks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few `f64` logarithms and exponentials.
    const TOL: f64 = 1e-12;

    #[test]
    fn ground_truths() {
        // L = (1, 4): geometric mean 2, w = 2/(2·1), 2/(2·4) = (1, 1/4).
        let w = gls_weights(&[1.0, 4.0]).unwrap();
        assert!(
            (w[0] - 1.0).abs() < TOL && (w[1] - 0.25).abs() < TOL,
            "{w:?}"
        );
        // L = (2, 2, 2): mean scale, 1/3 each.
        for x in gls_weights(&[2.0, 2.0, 2.0]).unwrap() {
            assert!((x - 1.0 / 3.0).abs() < TOL);
        }
        // L = (1, 8, 27): mean 6, w = 6/(3·L) = (2, 1/4, 2/27).
        let w = gls_weights(&[1.0, 8.0, 27.0]).unwrap();
        for (a, b) in w.iter().zip([2.0, 0.25, 2.0 / 27.0]) {
            assert!((a - b).abs() < TOL, "{w:?}");
        }
    }

    #[test]
    fn weights_match_a_finite_difference_of_the_geometric_mean() {
        let losses = [0.3f32, 1.7, 0.05, 12.0];
        let w = gls_weights(&losses).unwrap();
        let gm = |l: &[f64]| l.iter().map(|x| x.ln()).sum::<f64>() / l.len() as f64;
        let base: Vec<f64> = losses.iter().map(|&l| f64::from(l)).collect();
        for t in 0..losses.len() {
            let h = 1e-6 * base[t];
            let (mut up, mut down) = (base.clone(), base.clone());
            up[t] += h;
            down[t] -= h;
            let fd = (gm(&up).exp() - gm(&down).exp()) / (2.0 * h);
            assert!((fd - w[t]).abs() < 1e-6 * w[t].abs().max(1.0), "task {t}");
        }
    }

    #[test]
    fn tiny_and_huge_losses_stay_finite() {
        // The f32 inputs are 1e±30 up to a relative 6e-8.
        let w = gls_weights(&[1e-30, 1e30]).unwrap();
        assert!((w[0] / 0.5e30 - 1.0).abs() < 1e-7, "{w:?}");
        assert!((w[1] / 0.5e-30 - 1.0).abs() < 1e-7, "{w:?}");
    }

    #[test]
    fn non_positive_loss_is_an_error() {
        for bad in [0.0f32, -1.0, f32::NAN] {
            let err = gls_weights(&[1.0, bad]).unwrap_err();
            assert!(
                matches!(err, Error::LossOutOfDomain { task: 1, .. }),
                "{err}"
            );
        }
    }
}
