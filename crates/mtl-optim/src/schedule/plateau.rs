//! Reduce-on-plateau: lower the learning rate when a metric stops improving.

use serde::{Deserialize, Serialize};

use crate::config::{check_non_negative, check_positive};
use crate::error::{OptimError, Result};

/// Whether a lower or a higher metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PlateauMode {
    /// Lower is better (a loss).
    #[default]
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` measures a significant improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMode {
    /// Relative: better than `best · (1 ∓ threshold)`.
    #[default]
    Rel,
    /// Absolute: better than `best ∓ threshold`.
    Abs,
}

/// Settings of reduce-on-plateau, as documented for PyTorch's
/// `ReduceLROnPlateau`; defaults are PyTorch's.
///
/// After each step's metric `x`: if `x` improves on the best value by more
/// than the threshold, it becomes the best and the count of bad steps resets;
/// otherwise the count grows. When the count exceeds `patience`, the rate
/// becomes `max(lr · factor, min_lr)` (applied only if that lowers it by more
/// than 1e-8), the count resets and the next `cooldown` steps are not counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlateauConfig {
    /// Whether lower or higher is better (default `min`).
    pub mode: PlateauMode,
    /// Factor applied to the rate on a plateau, in (0, 1) (default 0.1).
    pub factor: f64,
    /// Bad steps tolerated before reducing (default 10).
    pub patience: u64,
    /// Minimum significant improvement (default 1e-4).
    pub threshold: f64,
    /// Relative or absolute threshold (default `rel`).
    pub threshold_mode: ThresholdMode,
    /// Steps after a reduction during which bad steps are not counted
    /// (default 0).
    pub cooldown: u64,
    /// Floor of the rate (default 0).
    pub min_lr: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

/// A reduction smaller than this is not applied (PyTorch's `eps`).
const MIN_REDUCTION: f64 = 1e-8;

impl PlateauConfig {
    /// Checks every value: `0 < factor < 1`, `threshold, min_lr >= 0`.
    pub fn validate(&self) -> Result<()> {
        check_positive("factor", self.factor)?;
        if self.factor >= 1.0 {
            return Err(OptimError::InvalidConfig {
                key: "factor",
                value: self.factor,
                reason: "must be in (0, 1)",
            });
        }
        check_non_negative("threshold", self.threshold)?;
        check_non_negative("min_lr", self.min_lr)
    }

    /// Whether `x` is a significant improvement on `best`.
    fn improves(&self, x: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => x < best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => x < best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => x > best * (1.0 + self.threshold),
            (PlateauMode::Max, ThresholdMode::Abs) => x > best + self.threshold,
        }
    }
}

/// What reduce-on-plateau remembers between steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlateauState {
    /// Current rate.
    pub(crate) lr: f64,
    /// Best metric so far (`None` before the first).
    pub(crate) best: Option<f64>,
    /// Consecutive steps without significant improvement.
    pub(crate) bad_steps: u64,
    /// Steps of cooldown left.
    pub(crate) cooldown_left: u64,
}

impl PlateauState {
    pub(crate) fn new(lr: f64) -> Self {
        Self {
            lr,
            best: None,
            bad_steps: 0,
            cooldown_left: 0,
        }
    }

    /// Records one metric value and returns the rate for the next step.
    pub(crate) fn observe(&mut self, config: &PlateauConfig, metric: f64) -> Result<f64> {
        if !metric.is_finite() {
            return Err(OptimError::NonFiniteMetric { value: metric });
        }
        match self.best {
            Some(best) if !config.improves(metric, best) => self.bad_steps += 1,
            _ => {
                self.best = Some(metric);
                self.bad_steps = 0;
            }
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad_steps = 0;
        }
        if self.bad_steps > config.patience {
            let reduced = (self.lr * config.factor).max(config.min_lr);
            if self.lr - reduced > MIN_REDUCTION {
                self.lr = reduced;
            }
            self.cooldown_left = config.cooldown;
            self.bad_steps = 0;
        }
        Ok(self.lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_after_patience_and_respects_cooldown_and_floor() {
        let cfg = PlateauConfig {
            factor: 0.5,
            patience: 1,
            cooldown: 1,
            min_lr: 0.3,
            ..PlateauConfig::default()
        };
        let mut s = PlateauState::new(1.0);
        // Metrics 1.0 (best), 1.0 (bad 1), 1.0 (bad 2 > patience 1: lr 1.0 → 0.5,
        // cooldown 1), 1.0 (cooldown: not counted), 1.0 (bad 1), 1.0 (bad 2: lr
        // 0.5 → max(0.25, 0.3) = 0.3), then the floor holds.
        let lrs: Vec<f64> = (0..8).map(|_| s.observe(&cfg, 1.0).unwrap()).collect();
        assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3]);
    }

    #[test]
    fn relative_threshold_in_both_modes() {
        let min = PlateauConfig {
            threshold: 0.1,
            ..PlateauConfig::default()
        };
        // best · (1 − 0.1) = 9: 8.99 improves, 9.0 does not.
        assert!(min.improves(8.99, 10.0));
        assert!(!min.improves(9.0, 10.0));
        let max = PlateauConfig {
            mode: PlateauMode::Max,
            threshold: 0.5,
            threshold_mode: ThresholdMode::Abs,
            ..PlateauConfig::default()
        };
        // best + 0.5 = 2.5: 2.5 does not improve, 2.51 does.
        assert!(!max.improves(2.5, 2.0));
        assert!(max.improves(2.51, 2.0));
    }

    #[test]
    fn non_finite_metric_is_refused() {
        let mut s = PlateauState::new(1.0);
        assert_eq!(
            s.observe(&PlateauConfig::default(), f64::INFINITY),
            Err(OptimError::NonFiniteMetric {
                value: f64::INFINITY
            })
        );
    }
}
