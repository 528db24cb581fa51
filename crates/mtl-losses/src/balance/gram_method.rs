//! Methods whose weights are a function of the Gram matrix, and the one
//! wrapper that turns any of them into a [`Balancer`].
//!
//! A [`GramMethod`] holds only its update rule: from the `T' × T'` Gram
//! matrix of the present tasks' gradient rows (and their losses) it returns
//! one weight per present task. [`GramBalancer`] supplies the rest: input
//! checks, the Gram pass (or the caller's full Gram for a
//! [column shard](super::ColumnShard)), the restriction to present tasks,
//! the direction `d = Jᵀw`, and name, needs and state.
//!
//! The output is a [`Balanced::Direction`] for shared-parameter and
//! representation rows, and [`Balanced::Weights`] for last-shared-layer rows
//! (the trainer back-propagates `Σ w_t L_t`, GradNorm) and for methods that
//! need no rows (they receive an all-zero Gram).
//!
//! Every Gram method runs on column shards: the weights depend on the Gram
//! only, and the direction of a slice is the same combination of the slice's
//! rows.

use nalgebra::DMatrix;

use super::gram;
use super::method_state::{delegate_to_method, method_wrapper};
use super::MethodState;
use super::{require_tasks, BalanceInput, Balanced, Balancer, GradientSource, MethodConfig};
use crate::error::{Error, Result};

/// What a Gram method sees besides the Gram matrix at one step.
#[derive(Debug, Clone, Copy)]
pub struct GramStep<'a> {
    /// The losses of the present tasks, in the order of the Gram's rows.
    pub losses: &'a [f32],
    /// The global index of each present task (ascending): row `i` of the Gram
    /// is task `tasks[i]`. Methods with per-task state index it with these.
    pub tasks: &'a [usize],
    /// The number of tasks `T` the balancer was built for.
    pub num_tasks: usize,
    /// Global optimisation step.
    pub step: u64,
    /// Epoch.
    pub epoch: u64,
}

impl<'a> GramStep<'a> {
    /// A step with every one of `losses.len()` tasks present (for direct
    /// calls on a Gram matrix, e.g. in tests).
    pub fn all(losses: &'a [f32], tasks: &'a [usize]) -> Self {
        Self {
            losses,
            tasks,
            num_tasks: tasks.len(),
            step: 0,
            epoch: 0,
        }
    }

    /// Whether every task is present.
    pub fn all_present(&self) -> bool {
        self.tasks.len() == self.num_tasks
    }
}

/// A method whose weights are a function of the Gram matrix `G = J Jᵀ` of the
/// present tasks' rows and of their losses.
pub trait GramMethod: MethodState + Send {
    /// The method's configuration; its `NAME` and `NEEDS` are the balancer's.
    type Config: MethodConfig;

    /// One weight per row of `gram` (per present task). Learnable state is
    /// updated here; the returned weights are those before the update.
    ///
    /// # Errors
    /// Solver failures or losses outside the method's domain.
    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>>;

    /// Which rows the method needs (default: the configuration's `NEEDS`).
    fn needs(&self) -> GradientSource {
        Self::Config::NEEDS
    }

    /// Whether [`GramMethod::weights`] reads entries off the diagonal
    /// (default); a method that reads only the norms gets a Gram whose
    /// other entries are zero, for `T` dot products instead of `T(T+1)/2`.
    fn reads_off_diagonal(&self) -> bool {
        true
    }
}

method_wrapper!(
    /// The [`Balancer`] of any [`GramMethod`]; see the module documentation.
    GramBalancer,
    GramMethod
);

/// The weights of `method` on `full` (all `T` tasks) restricted to `tasks`,
/// scattered back to `T` entries (0 for absent tasks).
fn scattered_weights<M: GramMethod>(
    method: &mut M,
    full: &DMatrix<f64>,
    input: &BalanceInput<'_>,
    tasks: &[usize],
    num_tasks: usize,
) -> Result<Vec<f64>> {
    let mut w = vec![0.0f64; num_tasks];
    if tasks.is_empty() {
        return Ok(w);
    }
    let losses: Vec<f32> = tasks.iter().map(|&t| input.losses[t]).collect();
    let step = GramStep {
        losses: &losses,
        tasks,
        num_tasks,
        step: input.step,
        epoch: input.epoch,
    };
    let sub = if tasks.len() == num_tasks {
        method.weights(full, &step)?
    } else {
        method.weights(&gram::restrict(full, tasks), &step)?
    };
    if sub.len() != tasks.len() {
        return Err(Error::CountMismatch {
            what: "weights returned by the method vs. present tasks",
            expected: tasks.len(),
            got: sub.len(),
        });
    }
    for (&t, x) in tasks.iter().zip(sub) {
        w[t] = x;
    }
    Ok(w)
}

impl<M: GramMethod> Balancer for GramBalancer<M> {
    delegate_to_method!();

    fn supports_column_shards(&self) -> bool {
        self.needs() != GradientSource::None
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        let t = self.num_tasks;
        input.validate(t)?;
        let tasks = input.present_tasks();
        let needs = self.needs();
        if needs == GradientSource::None {
            let w = scattered_weights(&mut self.method, &DMatrix::zeros(t, t), input, &tasks, t)?;
            return Ok(Balanced::Weights(w.iter().map(|&v| v as f32).collect()));
        }
        let grads = input.require_grads(self.name(), needs)?;
        let owned;
        let full = match &input.shard {
            Some(shard) => shard.gram,
            None => {
                owned = if self.method.reads_off_diagonal() {
                    gram::checked_gram(&grads)?
                } else {
                    gram::checked_gram_diagonal(&grads)?
                };
                &owned
            }
        };
        let w = scattered_weights(&mut self.method, full, input, &tasks, t)?;
        let weights = w.iter().map(|&v| v as f32).collect();
        if needs == GradientSource::LastSharedLayer {
            return Ok(Balanced::Weights(weights));
        }
        Ok(Balanced::Direction {
            direction: gram::direction(&grads, &w),
            weights,
        })
    }
}
