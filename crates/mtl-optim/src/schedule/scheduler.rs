//! The stateful driver of a [`ScheduleConfig`].

use serde::{Deserialize, Serialize};

use super::plateau::PlateauState;
use super::ScheduleConfig;
use crate::config::check_positive;
use crate::error::{OptimError, Result};

/// Steps a [`ScheduleConfig`] and keeps what it needs between steps; derive
/// a checkpoint from it with serde and restore it the same way.
///
/// The rate at construction is the rate of step 0; each call of
/// [`LrScheduler::step`] advances one step and returns the new rate, which
/// the caller passes to [`Optimizer::set_lr`](crate::Optimizer::set_lr).
///
/// A plateau schedule observes the metric of every step from the first one
/// after it takes over (after a warm-up, the metrics during the warm-up are
/// ignored); other schedules ignore the metric.
///
/// ```
/// use mtl_optim::{LrScheduler, ScheduleConfig};
///
/// let mut s = LrScheduler::new(ScheduleConfig::Step { step_size: 2, gamma: 0.5 }, 0.8)?;
/// assert_eq!(s.lr(), 0.8);
/// assert_eq!(s.step(None)?, 0.8); // t = 1
/// assert_eq!(s.step(None)?, 0.4); // t = 2 = step_size: 0.8 · 0.5
/// # Ok::<(), mtl_optim::OptimError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrScheduler {
    schedule: ScheduleConfig,
    base_lr: f64,
    step: u64,
    lr: f64,
    plateau: PlateauState,
}

impl LrScheduler {
    /// Validates `schedule` and starts it at step 0 with base rate `base_lr`
    /// (finite, > 0).
    pub fn new(schedule: ScheduleConfig, base_lr: f64) -> Result<Self> {
        schedule.validate()?;
        check_positive("lr", base_lr)?;
        let lr = schedule.lr_at(base_lr, 0).unwrap_or(base_lr);
        Ok(Self {
            schedule,
            base_lr,
            step: 0,
            lr,
            plateau: PlateauState::new(base_lr),
        })
    }

    /// The rate for the current step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Number of steps taken.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The schedule being followed.
    pub fn schedule(&self) -> &ScheduleConfig {
        &self.schedule
    }

    /// Advances one step, giving the metric of the step just finished (needed
    /// only while a plateau schedule is active), and returns the new rate.
    ///
    /// # Errors
    /// [`MissingMetric`](OptimError::MissingMetric) and
    /// [`NonFiniteMetric`](OptimError::NonFiniteMetric) while a plateau is
    /// active; the scheduler is then unchanged.
    pub fn step(&mut self, metric: Option<f64>) -> Result<f64> {
        let t = self.step + 1;
        let lr = match self.schedule.lr_at(self.base_lr, t) {
            Some(lr) => lr,
            None => {
                let (config, _) = self
                    .schedule
                    .plateau_at(t)
                    .expect("a schedule without a closed form at t has a plateau at t");
                let metric = metric.ok_or(OptimError::MissingMetric)?;
                let mut plateau = self.plateau.clone();
                let lr = plateau.observe(config, metric)?;
                self.plateau = plateau;
                lr
            }
        };
        self.step = t;
        self.lr = lr;
        Ok(lr)
    }
}
