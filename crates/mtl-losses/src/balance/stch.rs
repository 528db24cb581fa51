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

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, GradientSource, GramBalancer,
    GramMethod, GramStep, MethodConfig, MethodState,
};
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

/// Configuration of [`Stch`] (registry name `stch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StchConfig {
    /// Temperature `μ > 0` (default 1, LibMTL's); smaller is closer to the
    /// maximum of the losses.
    pub mu: f64,
    /// Preference `λ`, one non-negative value per task (default: empty =
    /// `1/T` each).
    pub preference: Vec<f64>,
    /// Ideal point `z`, one per task (default: empty = none).
    pub reference: Vec<f64>,
    /// Scalarise `log(L_t/z_t)` instead of `L_t − z_t` (default false,
    /// torchjd's form; true is LibMTL's).
    pub log_losses: bool,
    /// Epochs of `mean log L_t` whose last one sets `z` to the mean losses
    /// (default 0 = use `reference`; LibMTL uses 4).
    pub warmup_epochs: u64,
}

impl Default for StchConfig {
    fn default() -> Self {
        Self {
            mu: 1.0,
            preference: Vec::new(),
            reference: Vec::new(),
            log_losses: false,
            warmup_epochs: 0,
        }
    }
}

impl MethodConfig for StchConfig {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str =
        "smooth Tchebycheff scalarisation, log-sum-exp of the losses (Lin et al. 2024)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "mu",
            "temperature μ > 0; smaller is closer to the largest loss",
        ),
        (
            "preference",
            "one non-negative preference per task (empty = 1/T each)",
        ),
        (
            "reference",
            "the ideal point z, one per task (empty = none)",
        ),
        (
            "log_losses",
            "scalarise log(L/z) instead of L − z (LibMTL's form)",
        ),
        (
            "warmup_epochs",
            "epochs of mean log-loss; the last one's mean losses become z (0 = off)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, Stch::new(num_tasks, self.clone())?)
    }
}

/// The saved state of [`Stch`]: the warm-up sums and the ideal point they
/// gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StchState {
    /// Sum of the losses of each task over the last warm-up epoch.
    sums: Vec<f64>,
    /// Number of those losses per task.
    counts: Vec<u64>,
    /// The ideal point fixed after the warm-up (empty before).
    nadir: Vec<f64>,
}

/// STCH; see the module documentation. Absent tasks are left out of the
/// log-sum-exp (the factor `T` and the default preference use the number
/// of present tasks) and of the warm-up averages.
#[derive(Debug, Clone)]
pub struct Stch {
    config: StchConfig,
    num_tasks: usize,
    state: StchState,
}

impl Stch {
    /// STCH for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for `μ ≤ 0`, a negative
    /// preference or a non-finite reference; [`Error::CountMismatch`] for a
    /// preference or reference of the wrong length.
    pub fn new(num_tasks: usize, config: StchConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        check_parameter(NAME, "mu", config.mu, config.mu > 0.0, "must be > 0")?;
        for (what, values) in [
            ("stch preference", &config.preference),
            ("stch reference", &config.reference),
        ] {
            if !values.is_empty() && values.len() != num_tasks {
                return Err(Error::CountMismatch {
                    what,
                    expected: num_tasks,
                    got: values.len(),
                });
            }
        }
        for &u in &config.preference {
            check_parameter(NAME, "preference", u, u >= 0.0, "must be finite and ≥ 0")?;
        }
        for &z in &config.reference {
            let valid = !config.log_losses || z > 0.0;
            check_parameter(
                NAME,
                "reference",
                z,
                valid,
                "must be finite (and > 0 with log_losses)",
            )?;
        }
        Ok(Self {
            config,
            num_tasks,
            state: StchState::default(),
        })
    }

    fn fresh_state(&self) -> StchState {
        StchState {
            sums: vec![0.0; self.num_tasks],
            counts: vec![0; self.num_tasks],
            nadir: Vec::new(),
        }
    }
}

impl MethodState for Stch {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: StchState = parse_state(balancer, state)?;
        let t = self.num_tasks;
        let fits = |n: usize| n == 0 || n == t;
        if !fits(loaded.sums.len()) || !fits(loaded.counts.len()) || !fits(loaded.nadir.len()) {
            return Err(Error::State {
                balancer,
                reason: format!("expected vectors of {t} tasks"),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = StchState::default();
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.state
            .nadir
            .iter()
            .enumerate()
            .map(|(t, &z)| (format!("reference[{t}]"), z as f32))
            .collect()
    }
}

impl GramMethod for Stch {
    type Config = StchConfig;

    fn weights(&mut self, _gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        let warmup = self.config.warmup_epochs;
        if self.state.sums.len() != self.num_tasks {
            let nadir = std::mem::take(&mut self.state.nadir);
            self.state = StchState {
                nadir,
                ..self.fresh_state()
            };
        }
        if step.epoch < warmup {
            let w = warmup_weights(step.losses).map_err(|e| e.with_global_task(step.tasks))?;
            if step.epoch + 1 == warmup {
                for (&t, &l) in step.tasks.iter().zip(step.losses) {
                    self.state.sums[t] += f64::from(l);
                    self.state.counts[t] += 1;
                }
            }
            return Ok(w);
        }
        if warmup > 0 && self.state.nadir.is_empty() {
            let none = if self.config.log_losses { 1.0 } else { 0.0 };
            self.state.nadir = (0..self.num_tasks)
                .map(|t| match self.state.counts[t] {
                    0 => none,
                    n => self.state.sums[t] / n as f64,
                })
                .map(|z| {
                    if self.config.log_losses && z <= 0.0 {
                        1.0
                    } else {
                        z
                    }
                })
                .collect();
        }
        let reference: &[f64] = if warmup > 0 {
            &self.state.nadir
        } else {
            &self.config.reference
        };
        let present = step.tasks.len();
        let preference: Vec<f64> = step
            .tasks
            .iter()
            .map(|&t| {
                self.config
                    .preference
                    .get(t)
                    .copied()
                    .unwrap_or(1.0 / present as f64)
            })
            .collect();
        let z: Vec<f64> = if reference.is_empty() {
            Vec::new()
        } else {
            step.tasks.iter().map(|&t| reference[t]).collect()
        };
        stch_weights(
            step.losses,
            &preference,
            &z,
            self.config.mu,
            self.config.log_losses,
        )
        .map_err(|e| e.with_global_task(step.tasks))
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
