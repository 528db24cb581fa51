//! Learning-rate schedules.
//!
//! A [`ScheduleConfig`] says how the learning rate moves with the number of
//! scheduler steps `t` (the caller decides whether a step is a batch or an
//! epoch); an [`LrScheduler`] holds the step count and the state of
//! reduce-on-plateau, and is serialisable for checkpoints. With base rate `γ₀`:
//!
//! | name          | learning rate at step `t`                                        |
//! |---------------|------------------------------------------------------------------|
//! | `constant`    | `γ₀`                                                             |
//! | `step`        | `γ₀ · gamma^⌊t / step_size⌋` (PyTorch `StepLR`)                  |
//! | `multi_step`  | `γ₀ · gamma^(number of milestones ≤ t)` (PyTorch `MultiStepLR`)  |
//! | `exponential` | `γ₀ · gamma^t` (PyTorch `ExponentialLR`)                         |
//! | `cosine`      | `min_lr + (γ₀ − min_lr)(1 + cos(π t / t_max))/2` for `t < t_max`, then `min_lr` (Loshchilov & Hutter, 2017, one cycle; PyTorch `CosineAnnealingLR` closed form) |
//! | `warmup`      | `γ₀ (s + (1 − s) t / steps)` for `t < steps`, then `then` at step `t − steps` (PyTorch `LinearLR` followed by `SequentialLR`) |
//! | `plateau`     | multiplied by `factor` after `patience` steps without improvement of the metric (PyTorch `ReduceLROnPlateau`) |
//!
//! All closed forms are evaluated from `t` alone in f64, so a resumed run
//! reproduces the rates bit for bit.

mod plateau;
mod scheduler;

pub use plateau::{PlateauConfig, PlateauMode, ThresholdMode};
pub use scheduler::LrScheduler;

use serde::{Deserialize, Serialize};

use crate::config::{check_non_negative, check_positive};
use crate::error::{OptimError, Result};

/// A learning-rate schedule, tagged by `name`; see the [module docs](self)
/// for the formulas.
///
/// ```
/// use mtl_optim::ScheduleConfig;
///
/// #[derive(serde::Deserialize)]
/// struct Run {
///     schedule: ScheduleConfig,
/// }
/// let run: Run = toml::from_str(
///     r#"schedule = { name = "warmup", steps = 10, then = { name = "cosine", t_max = 90 } }"#,
/// )?;
/// run.schedule.validate()?;
/// assert_eq!(run.schedule.lr_at(0.1, 10), Some(0.1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Decay by `gamma` every `step_size` steps.
    Step {
        /// Steps between decays (> 0).
        step_size: u64,
        /// Decay factor (default 0.1).
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Decay by `gamma` at each milestone.
    MultiStep {
        /// Steps at which to decay, strictly increasing.
        milestones: Vec<u64>,
        /// Decay factor (default 0.1).
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Decay by `gamma` every step.
    Exponential {
        /// Decay factor per step.
        gamma: f64,
    },
    /// Half a cosine from the base rate down to `min_lr` over `t_max` steps.
    Cosine {
        /// Length of the annealing (> 0).
        t_max: u64,
        /// Rate at and after `t_max` (default 0).
        #[serde(default)]
        min_lr: f64,
    },
    /// Linear warm-up from `start_factor · γ₀` to `γ₀`, then another schedule.
    Warmup {
        /// Length of the warm-up (> 0).
        steps: u64,
        /// Fraction of the base rate at step 0, in [0, 1] (default 0).
        #[serde(default)]
        start_factor: f64,
        /// Schedule after the warm-up, counted from 0 (default `constant`).
        #[serde(default)]
        then: Box<ScheduleConfig>,
    },
    /// Reduce when a metric stops improving.
    Plateau(PlateauConfig),
}

fn default_gamma() -> f64 {
    0.1
}

impl ScheduleConfig {
    /// Checks every value; the error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Constant => Ok(()),
            Self::Step { step_size, gamma } => {
                check_count("step_size", *step_size)?;
                check_positive("gamma", *gamma)
            }
            Self::MultiStep { milestones, gamma } => {
                if let Some(pair) = milestones.windows(2).find(|w| w[1] <= w[0]) {
                    return Err(OptimError::InvalidConfig {
                        key: "milestones",
                        value: pair[1] as f64,
                        reason: "milestones must be strictly increasing",
                    });
                }
                check_positive("gamma", *gamma)
            }
            Self::Exponential { gamma } => check_positive("gamma", *gamma),
            Self::Cosine { t_max, min_lr } => {
                check_count("t_max", *t_max)?;
                check_non_negative("min_lr", *min_lr)
            }
            Self::Warmup {
                steps,
                start_factor,
                then,
            } => {
                check_count("steps", *steps)?;
                if !(0.0..=1.0).contains(start_factor) {
                    return Err(OptimError::InvalidConfig {
                        key: "start_factor",
                        value: *start_factor,
                        reason: "must be in [0, 1]",
                    });
                }
                then.validate()
            }
            Self::Plateau(p) => p.validate(),
        }
    }

    /// The learning rate at step `t` for base rate `base_lr`, or `None` when
    /// the rate at `t` depends on metrics (a plateau schedule is active).
    pub fn lr_at(&self, base_lr: f64, t: u64) -> Option<f64> {
        match self {
            Self::Constant => Some(base_lr),
            Self::Step { step_size, gamma } => Some(base_lr * pow(*gamma, t / step_size)),
            Self::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().take_while(|&&m| m <= t).count() as u64;
                Some(base_lr * pow(*gamma, passed))
            }
            Self::Exponential { gamma } => Some(base_lr * pow(*gamma, t)),
            Self::Cosine { t_max, min_lr } => Some(if t >= *t_max {
                *min_lr
            } else {
                let phase = std::f64::consts::PI * t as f64 / *t_max as f64;
                min_lr + (base_lr - min_lr) * (1.0 + phase.cos()) / 2.0
            }),
            Self::Warmup {
                steps,
                start_factor,
                then,
            } => {
                if t < *steps {
                    let progress = t as f64 / *steps as f64;
                    Some(base_lr * (start_factor + (1.0 - start_factor) * progress))
                } else {
                    then.lr_at(base_lr, t - steps)
                }
            }
            Self::Plateau(_) => None,
        }
    }

    /// The plateau configuration in effect at step `t`, with the number of
    /// steps since it took over, if the schedule at `t` is a plateau.
    pub(crate) fn plateau_at(&self, t: u64) -> Option<(&PlateauConfig, u64)> {
        match self {
            Self::Warmup { steps, then, .. } if t >= *steps => then.plateau_at(t - steps),
            Self::Plateau(p) => Some((p, t)),
            _ => None,
        }
    }
}

/// `gamma^n` by repeated squaring in f64, exact for the integer powers of
/// dyadic factors used in tests and identical on every platform (unlike
/// `powf`, whose last bit is libm's choice).
fn pow(gamma: f64, n: u64) -> f64 {
    let (mut base, mut n, mut acc) = (gamma, n, 1.0);
    while n > 0 {
        if n & 1 == 1 {
            acc *= base;
        }
        base *= base;
        n >>= 1;
    }
    acc
}

/// A count that must be at least one.
fn check_count(key: &'static str, value: u64) -> Result<()> {
    if value == 0 {
        Err(OptimError::InvalidConfig {
            key,
            value: 0.0,
            reason: "must be at least 1",
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_by_squaring() {
        assert_eq!(pow(0.5, 0), 1.0);
        assert_eq!(pow(0.5, 5), 0.03125);
        assert_eq!(pow(3.0, 13), 1_594_323.0);
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let cases = [
            (
                ScheduleConfig::Step {
                    step_size: 0,
                    gamma: 0.1,
                },
                "step_size",
            ),
            (
                ScheduleConfig::MultiStep {
                    milestones: vec![3, 3],
                    gamma: 0.1,
                },
                "milestones",
            ),
            (ScheduleConfig::Exponential { gamma: -1.0 }, "gamma"),
            (
                ScheduleConfig::Cosine {
                    t_max: 5,
                    min_lr: f64::NAN,
                },
                "min_lr",
            ),
            (
                ScheduleConfig::Warmup {
                    steps: 3,
                    start_factor: 1.5,
                    then: Box::default(),
                },
                "start_factor",
            ),
        ];
        for (cfg, key) in cases {
            match cfg.validate() {
                Err(OptimError::InvalidConfig { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{cfg:?}: expected an error on `{key}`, got {other:?}"),
            }
        }
    }
}
