//! The [`Optimizer`] trait and the bookkeeping every optimizer shares.

use crate::config::check_non_negative;
use crate::error::Result;
use crate::group::{ParamGroup, ParamGroups};
use crate::state::OptimizerState;

/// A first-order optimizer over one flat `f32` parameter buffer.
///
/// `step` updates `params` in place from `grads` (same length), group by
/// group. Before touching anything it checks the lengths, the group ranges and
/// that every gradient inside a group is finite; on error nothing has changed,
/// so the caller can skip the batch or stop.
///
/// Per-parameter state is allocated on the first step and sized to the
/// buffer; later steps must pass buffers of the same length.
pub trait Optimizer: Send + Sync + std::fmt::Debug {
    /// Short lowercase name, as used in configurations (`"adam"`).
    fn name(&self) -> &'static str;

    /// Applies one update to `params` from `grads`.
    ///
    /// # Errors
    /// [`LengthMismatch`](crate::OptimError::LengthMismatch),
    /// [`GroupOutOfRange`](crate::OptimError::GroupOutOfRange),
    /// [`NonFiniteGradient`](crate::OptimError::NonFiniteGradient) (lowest
    /// bad index) and
    /// [`StateLengthMismatch`](crate::OptimError::StateLengthMismatch) when the
    /// buffer length changed since the state was created.
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()>;

    /// The base learning rate (each group multiplies it by its `lr_scale`).
    fn lr(&self) -> f64;

    /// Sets the base learning rate, typically from a schedule.
    ///
    /// # Errors
    /// [`InvalidConfig`](crate::OptimError::InvalidConfig) for a negative or
    /// non-finite rate. Zero is allowed (e.g. the first warm-up step).
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// The parameter groups as given at construction (empty: one group over
    /// the whole buffer).
    fn groups(&self) -> &[ParamGroup];

    /// Number of successful steps taken.
    fn steps_taken(&self) -> u64;

    /// A copy of the state, for a checkpoint.
    fn state(&self) -> OptimizerState;

    /// Replaces the state with one saved by [`Optimizer::state`].
    ///
    /// # Errors
    /// [`StateMismatch`](crate::OptimError::StateMismatch) when the state
    /// belongs to another optimizer or its buffers do not match this
    /// configuration, and
    /// [`StateLengthMismatch`](crate::OptimError::StateLengthMismatch) when its
    /// buffers differ in length.
    fn load_state(&mut self, state: OptimizerState) -> Result<()>;
}

/// Groups, learning rate and step count, held by every optimizer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Core {
    pub(crate) groups: ParamGroups,
    pub(crate) lr: f64,
    pub(crate) step: u64,
}

impl Core {
    pub(crate) fn new(lr: f64, groups: Vec<ParamGroup>) -> Result<Self> {
        check_non_negative("lr", lr)?;
        Ok(Self {
            groups: ParamGroups::new(groups)?,
            lr,
            step: 0,
        })
    }

    pub(crate) fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_non_negative("lr", lr)?;
        self.lr = lr;
        Ok(())
    }
}
