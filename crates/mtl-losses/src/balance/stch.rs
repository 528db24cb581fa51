//! STCH, smooth Tchebycheff scalarisation (Lin, Zhang, Liu, Zhang & Kwong
//! 2024, "Smooth Tchebycheff Scalarization for Multi-Objective
//! Optimization", ICML; torchjd `scalarization.STCH`, LibMTL `STCH`).
//!
//! With preference `λ` (default `1/T` each), ideal point `z` and temperature
//! `μ > 0`, the network minimises
//!
//! ```text
//! S = μ log Σ_t exp(y_t/μ),   y_t = λ_t (f_t − φ(z_t)),
//! w_t = T · ∂S/∂L_t = T · λ_t · softmax(y/μ)_t · f'_t,
//! ```
//!
//! a smooth upper bound of `max_t y_t` that tightens as `μ → 0`. With
//! `log_losses = false` (torchjd's form) `f_t = L_t`, `φ(z) = z`, `f' = 1`;
//! with `log_losses = true` (LibMTL's and the official MTL code's form)
//! `f_t − φ(z_t) = log(L_t/z_t + 10⁻²⁰)` and `f'_t = 1/(L_t + 10⁻²⁰ z_t)`.
//!
//! **Scale.** The factor `T` puts the weights on the mean scale: equal
//! losses with `log_losses = false` give `w_t = 1/T`. torchjd's `STCH(mu,
//! weights=λ, reference=z)` has gradient `w/T`; LibMTL's objective is
//! `T · S` with `λ = 1` and equals ours for `preference = [1, …, 1]`,
//! `log_losses = true`.
//!
//! **Ideal point.** `reference` fixes `z` (empty: `z = 0`, or `z = 1` in log
//! form). With `warmup_epochs = E > 0` (LibMTL: 4) the first `E` epochs
//! instead minimise `(1/T) Σ_t log L_t` (`w_t = 1/(T L_t)`), the losses of
//! the last of those epochs are averaged per task, and that average becomes
//! `z` from epoch `E` on (LibMTL's `nadir_vector`).

use crate::error::{Error, Result};

/// The registry name, used in errors.
const NAME: &str = "stch";

/// The offset inside the logarithm of the log form (LibMTL's `1e-20`), so a
/// zero loss gives a finite value.
pub const LOG_OFFSET: f64 = 1e-20;

/// STCH's mean-scale weights `T λ_t softmax(y/μ)_t f'_t` (see the module
/// docs); `reference` is `z` (empty: none).
///
/// # Errors
/// [`Error::LossOutOfDomain`] for a negative loss in the log form, or for a
/// non-positive reference entry in the log form.
pub fn stch_weights(
    losses: &[f32],
    preference: &[f64],
    reference: &[f64],
    mu: f64,
    log_losses: bool,
) -> Result<Vec<f64>> {
    let t = losses.len();
    let z = |i: usize| {
        reference
            .get(i)
            .copied()
            .unwrap_or(if log_losses { 1.0 } else { 0.0 })
    };
    let mut y = Vec::with_capacity(t);
    let mut slope = Vec::with_capacity(t);
    for (i, &l) in losses.iter().enumerate() {
        let l = f64::from(l);
        if log_losses {
            check_positive(i, l, true)?;
            check_positive(i, z(i), false)?;
            y.push(preference[i] * (l / z(i) + LOG_OFFSET).ln());
            slope.push(1.0 / (l + LOG_OFFSET * z(i)));
        } else {
            y.push(preference[i] * (l - z(i)));
            slope.push(1.0);
        }
    }
    let scaled: Vec<f64> = y.iter().map(|v| v / mu).collect();
    let soft = super::solver::simplex::softmax(&scaled);
    Ok((0..t)
        .map(|i| t as f64 * preference[i] * soft[i] * slope[i])
        .collect())
}

/// The warm-up weights `w_t = 1/(T (L_t + 10⁻²⁰))` of `(1/T) Σ_t log L_t`.
///
/// # Errors
/// [`Error::LossOutOfDomain`] for a negative loss.
pub fn warmup_weights(losses: &[f32]) -> Result<Vec<f64>> {
    let t = losses.len() as f64;
    losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let l = f64::from(l);
            check_positive(i, l, true)?;
            Ok(1.0 / (t * (l + LOG_OFFSET)))
        })
        .collect()
}

/// `value ≥ 0` (`allow_zero`) or `value > 0`.
fn check_positive(task: usize, value: f64, allow_zero: bool) -> Result<()> {
    let ok = if allow_zero {
        value >= 0.0
    } else {
        value > 0.0
    };
    if ok {
        Ok(())
    } else {
        Err(Error::LossOutOfDomain {
            balancer: NAME,
            task,
            value,
            bound: if allow_zero { -f64::MIN_POSITIVE } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few `f64` exponentials and logarithms.
    const TOL: f64 = 1e-12;

    fn uniform(t: usize) -> Vec<f64> {
        vec![1.0 / t as f64; t]
    }

    #[test]
    fn equal_losses_give_the_mean_scale() {
        for w in stch_weights(&[0.7, 0.7, 0.7], &uniform(3), &[], 1.0, false).unwrap() {
            assert!((w - 1.0 / 3.0).abs() < TOL);
        }
    }

    #[test]
    fn ground_truth_two_tasks() {
        // L = (1, 3), λ = 1/2, μ = 1: y = (0.5, 1.5), softmax = (1, e)/(1 + e),
        // w = 2 · 0.5 · softmax = softmax.
        let w = stch_weights(&[1.0, 3.0], &uniform(2), &[], 1.0, false).unwrap();
        let e = 1.0f64.exp();
        assert!((w[0] - 1.0 / (1.0 + e)).abs() < TOL, "{w:?}");
        assert!((w[1] - e / (1.0 + e)).abs() < TOL, "{w:?}");
        // μ → 0 puts all the weight on the largest loss (T λ = 1).
        let w = stch_weights(&[1.0, 3.0], &uniform(2), &[], 1e-3, false).unwrap();
        assert!(w[0] < 1e-12 && (w[1] - 1.0).abs() < 1e-12, "{w:?}");
    }

    #[test]
    fn weights_are_t_times_a_finite_difference_of_the_objective() {
        let losses = [0.4f32, 1.3, 2.2];
        let pref = [0.2, 0.5, 0.3];
        let reference = [0.1, 0.2, 0.3];
        for log_losses in [false, true] {
            let w = stch_weights(&losses, &pref, &reference, 0.5, log_losses).unwrap();
            let objective = |l: &[f64]| {
                let y: Vec<f64> = (0..3)
                    .map(|i| {
                        let f = if log_losses {
                            (l[i] / reference[i] + LOG_OFFSET).ln()
                        } else {
                            l[i] - reference[i]
                        };
                        pref[i] * f / 0.5
                    })
                    .collect();
                0.5 * y.iter().map(|v| v.exp()).sum::<f64>().ln()
            };
            let base: Vec<f64> = losses.iter().map(|&l| f64::from(l)).collect();
            for i in 0..3 {
                let h = 1e-6;
                let (mut up, mut down) = (base.clone(), base.clone());
                up[i] += h;
                down[i] -= h;
                let fd = 3.0 * (objective(&up) - objective(&down)) / (2.0 * h);
                assert!(
                    (fd - w[i]).abs() < 1e-7,
                    "log {log_losses}, task {i}: {fd} vs {}",
                    w[i]
                );
            }
        }
    }

    #[test]
    fn warmup_is_the_mean_log_loss_gradient() {
        let w = warmup_weights(&[0.5, 2.0]).unwrap();
        assert!(
            (w[0] - 1.0).abs() < TOL && (w[1] - 0.25).abs() < TOL,
            "{w:?}"
        );
        // A zero loss is finite (the 1e-20 offset), a negative one an error.
        assert!(warmup_weights(&[0.0, 1.0]).unwrap()[0].is_finite());
        assert!(warmup_weights(&[-1.0, 1.0]).is_err());
        assert!(stch_weights(&[1.0, -1.0], &uniform(2), &[], 1.0, true).is_err());
        assert!(stch_weights(&[1.0, 1.0], &uniform(2), &[1.0, 0.0], 1.0, true).is_err());
        // The linear form accepts any finite loss.
        assert!(stch_weights(&[1.0, -1.0], &uniform(2), &[], 1.0, false).is_ok());
    }
}
