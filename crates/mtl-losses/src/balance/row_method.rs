//! Methods that work on the gradient rows themselves (per coordinate, or with
//! per-coordinate state), and the one wrapper that turns any of them into a
//! [`Balancer`].
//!
//! A [`RowMethod`] holds only its update rule: from the rows (and the step's
//! losses and presence flags) it returns the direction and the task weights.
//! [`RowBalancer`] supplies input checks, the missing-rows error, the
//! all-absent step (zero direction, zero weights), the refusal of a column
//! shard the method cannot handle, and name, needs and state.

use super::method_state::{delegate_to_method, method_wrapper};
use super::{
    require_tasks, BalanceInput, Balanced, Balancer, ColumnShard, GradRows, GradientSource,
    MethodConfig, MethodState,
};
use crate::error::{Error, Result};

/// What a row method sees besides the rows at one step.
#[derive(Debug, Clone, Copy)]
pub struct RowStep<'a> {
    /// All `T` task losses (0 for an absent task).
    pub losses: &'a [f32],
    /// Whether each of the `T` tasks is present (at least one is).
    pub present: &'a [bool],
    /// The column shard the rows cover, if any (only for methods that
    /// [support shards](RowMethod::supports_column_shards)).
    pub shard: Option<ColumnShard<'a>>,
    /// Global optimisation step.
    pub step: u64,
    /// Epoch.
    pub epoch: u64,
}

impl RowStep<'_> {
    /// The number of present tasks.
    pub fn present_count(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }

    /// The global index of the rows' first column (0 without a shard).
    pub fn column_offset(&self) -> usize {
        self.shard.map_or(0, |s| s.offset)
    }
}

/// The result of a row method: a direction over the rows' columns and one
/// weight per task (0 for absent tasks).
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    /// One entry per column of the rows.
    pub direction: Vec<f32>,
    /// One weight per task, for the heads and for logging.
    pub weights: Vec<f64>,
}

/// A method that combines the gradient rows directly.
pub trait RowMethod: MethodState + Send {
    /// The method's configuration; its `NAME` and `NEEDS` are the balancer's.
    type Config: MethodConfig;

    /// The direction and weights of one step. Absent tasks have zero rows
    /// and must get weight 0 and teach the state nothing.
    ///
    /// # Errors
    /// Non-finite rows, losses outside the domain, shape changes.
    fn combine(&mut self, rows: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined>;

    /// Which rows the method needs (default: the configuration's `NEEDS`).
    fn needs(&self) -> GradientSource {
        Self::Config::NEEDS
    }

    /// Whether [`combine`](RowMethod::combine) accepts a column shard
    /// (default: no; the trainer then passes full rows).
    fn supports_column_shards(&self) -> bool {
        false
    }
}

method_wrapper!(
    /// The [`Balancer`] of any [`RowMethod`]; see the module documentation.
    RowBalancer,
    RowMethod
);

impl<M: RowMethod> Balancer for RowBalancer<M> {
    delegate_to_method!();

    fn supports_column_shards(&self) -> bool {
        self.method.supports_column_shards()
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        let t = self.num_tasks;
        input.validate(t)?;
        let grads = input.require_grads(self.name(), self.needs())?;
        if input.shard.is_some() && !self.supports_column_shards() {
            return Err(Error::CallOrder {
                balancer: self.name(),
                reason: "given a column shard, but this method needs full rows",
            });
        }
        let present: Vec<bool> = (0..t).map(|i| input.is_present(i)).collect();
        if !present.contains(&true) {
            return Ok(Balanced::Direction {
                direction: vec![0.0; grads.cols()],
                weights: vec![0.0; t],
            });
        }
        let step = RowStep {
            losses: input.losses,
            present: &present,
            shard: input.shard,
            step: input.step,
            epoch: input.epoch,
        };
        let out = self.method.combine(&grads, &step)?;
        Ok(Balanced::Direction {
            direction: out.direction,
            weights: out.weights.iter().map(|&v| v as f32).collect(),
        })
    }
}
