//! The [`Optimizer`] trait and the bookkeeping every optimizer shares.

use std::collections::BTreeMap;

use crate::config::check_non_negative;
use crate::elementwise::update;
use crate::error::Result;
use crate::group::{ParamGroup, ParamGroups};
use crate::state::{ensure_len, OptimizerState};

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

/// Groups, learning rate, default weight decay and step count, held by
/// every optimizer, with the plumbing of a step and of a checkpoint that does
/// not depend on the update rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Core {
    /// The validated parameter groups.
    pub(crate) groups: ParamGroups,
    /// The base learning rate.
    pub(crate) lr: f64,
    /// Weight decay of the groups that do not set their own.
    pub(crate) weight_decay: f64,
    /// Number of successful steps.
    pub(crate) step: u64,
}

/// The hyperparameters of one group for one step: the learning rate
/// `lr · lr_scale` and the weight decay (the group's, else the optimizer's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupStep {
    /// Learning rate of the group.
    pub(crate) lr: f64,
    /// Weight decay of the group.
    pub(crate) weight_decay: f64,
}

impl Core {
    /// Validates `lr` and `groups`; `weight_decay` is the optimizer's default,
    /// already validated with its configuration.
    pub(crate) fn new(lr: f64, weight_decay: f64, groups: Vec<ParamGroup>) -> Result<Self> {
        check_non_negative("lr", lr)?;
        Ok(Self {
            groups: ParamGroups::new(groups)?,
            lr,
            weight_decay,
            step: 0,
        })
    }

    /// Sets the base learning rate after checking it is finite and >= 0.
    pub(crate) fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_non_negative("lr", lr)?;
        self.lr = lr;
        Ok(())
    }

    /// Runs one step: checks the inputs, sizes the named state `buffers`
    /// (filled with `init` on the first step), then, group by group, builds a
    /// kernel with `kernel_for` and applies it to the group's slices of
    /// `params`, `grads` and the buffers (in the order given), and counts the
    /// step.
    ///
    /// The inputs are checked before anything changes; a buffer of the wrong
    /// length is reported before any kernel runs.
    pub(crate) fn step<const N: usize, F, K>(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        mut buffers: [(&str, &mut Vec<f32>); N],
        init: f32,
        kernel_for: F,
    ) -> Result<()>
    where
        F: Fn(GroupStep) -> K,
        K: Fn(&mut [f32], &[f32], [&mut [f32]; N]) + Sync,
    {
        self.groups.check_step(params, grads)?;
        let len = params.len();
        for (name, buffer) in &mut buffers {
            ensure_len(buffer, name, len, init)?;
        }
        self.groups.for_each(len, |group| {
            let hyper = GroupStep {
                lr: self.lr * group.lr_scale,
                weight_decay: group.weight_decay.unwrap_or(self.weight_decay),
            };
            let r = group.range.clone();
            let state = buffers.each_mut().map(|(_, b)| &mut b[r.clone()]);
            update(&mut params[r.clone()], &grads[r], state, &kernel_for(hyper));
        });
        self.step += 1;
        Ok(())
    }

    /// The state of `optimizer` holding `buffers` (by name), which are left
    /// out before the first step.
    pub(crate) fn save(&self, optimizer: &str, buffers: &[(&str, &Vec<f32>)]) -> OptimizerState {
        let buffers = if self.step > 0 {
            buffers
                .iter()
                .map(|&(name, buffer)| (name.to_owned(), buffer.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        OptimizerState {
            optimizer: optimizer.to_owned(),
            step: self.step,
            lr: self.lr,
            buffers,
        }
    }

    /// Loads `state` into the step count, the learning rate and `buffers`
    /// after checking it was written by `optimizer` with exactly these
    /// buffers (see [`OptimizerState::into_parts`]); on error nothing changes.
    pub(crate) fn load(
        &mut self,
        state: OptimizerState,
        optimizer: &str,
        buffers: &mut [(&str, &mut Vec<f32>)],
    ) -> Result<()> {
        let names: Vec<&str> = buffers.iter().map(|&(name, _)| name).collect();
        let (step, lr, parts) = state.into_parts(optimizer, &names)?;
        self.step = step;
        self.lr = lr;
        for ((_, buffer), part) in buffers.iter_mut().zip(parts) {
            **buffer = part;
        }
        Ok(())
    }
}

/// Implements the [`Optimizer`] methods that only read or set the [`Core`]
/// held in the field `core`: `lr`, `set_lr`, `groups` and `steps_taken`.
macro_rules! core_accessors {
    () => {
        fn lr(&self) -> f64 {
            self.core.lr
        }

        fn set_lr(&mut self, lr: f64) -> $crate::error::Result<()> {
            self.core.set_lr(lr)
        }

        fn groups(&self) -> &[$crate::group::ParamGroup] {
            self.core.groups.as_slice()
        }

        fn steps_taken(&self) -> u64 {
            self.core.step
        }
    };
}
pub(crate) use core_accessors;
