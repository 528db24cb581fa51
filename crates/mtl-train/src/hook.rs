//! [`Hook`]s: code of yours that [`Trainer::fit`](crate::Trainer::fit) calls
//! after every step and every epoch, to log, stop early on a rule of your
//! own, add metrics to the history, or save the model.

use crate::error::Result;
use crate::history::EpochRecord;
use crate::relations::RelationTracker;
use crate::trainer::Trainer;

/// Whether training goes on after a hook returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this step's or this epoch's bookkeeping (the epoch is
    /// still recorded and checkpointed).
    Stop,
}

/// One finished optimisation step.
#[derive(Clone, Copy, Debug)]
pub struct StepEvent<'a> {
    /// The epoch, from 1.
    pub epoch: usize,
    /// The last epoch of the run.
    pub epochs: usize,
    /// The step within the epoch, from 1.
    pub step_in_epoch: usize,
    /// Steps in the epoch.
    pub steps_in_epoch: usize,
    /// Optimisation steps taken in the whole run.
    pub step: u64,
    /// Every task's loss on the batch.
    pub losses: &'a [f32],
    /// The task weights the balancer used.
    pub weights: &'a [f32],
    /// The sum of every task's loss over the epoch so far.
    pub loss_sums: &'a [f64],
    /// The task names.
    pub tasks: &'a [String],
}

/// Code called by [`Trainer::fit`]; every method has a default that does
/// nothing, so a hook implements only what it needs.
///
/// ```
/// use mtl_train::{Control, EpochRecord, Hook, Result, Trainer};
///
/// /// Adds the mean of the tasks' training losses as a metric, and stops
/// /// once it is below a threshold.
/// struct MeanLoss { below: f32 }
///
/// impl Hook for MeanLoss {
///     fn metric_names(&self) -> Vec<String> {
///         vec!["train.mean_loss".into()]
///     }
///     fn on_epoch(&mut self, _: &mut Trainer, record: &mut EpochRecord) -> Result<Control> {
///         let mean = record.train_loss.iter().sum::<f32>() / record.train_loss.len() as f32;
///         record.custom.push(("train.mean_loss".into(), mean as f64));
///         Ok(if mean < self.below { Control::Stop } else { Control::Continue })
///     }
/// }
/// # let _ = MeanLoss { below: 0.1 };
/// ```
pub trait Hook {
    /// The custom metrics [`on_epoch`](Hook::on_epoch) adds, so that early
    /// stopping may select on them.
    fn metric_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// After every optimisation step.
    ///
    /// # Errors
    /// Whatever the hook fails with stops the run.
    fn on_step(&mut self, step: &StepEvent<'_>) -> Result<Control> {
        let _ = step;
        Ok(Control::Continue)
    }

    /// After every epoch's evaluation, before the selection score is read
    /// and checkpoints are written: the hook may evaluate the trainer on
    /// data of its own and push metrics into `record.custom`.
    ///
    /// # Errors
    /// Whatever the hook fails with stops the run.
    fn on_epoch(&mut self, trainer: &mut Trainer, record: &mut EpochRecord) -> Result<Control> {
        let _ = (trainer, record);
        Ok(Control::Continue)
    }

    /// After the epoch is recorded and checkpointed: reports, plots, saving
    /// the model elsewhere. `history` holds every epoch so far (resumed ones
    /// included), the newest last; `stopping` says whether early stopping
    /// ends the run here. A resumed run calls it once more for the restored
    /// epoch before training goes on, because the interrupted run may have
    /// stopped between that epoch's checkpoint and this call: a hook that
    /// writes files should write them whole each time.
    ///
    /// # Errors
    /// Whatever the hook fails with stops the run.
    fn after_epoch(
        &mut self,
        trainer: &Trainer,
        history: &[EpochRecord],
        relations: Option<&RelationTracker>,
        stopping: bool,
    ) -> Result<()> {
        let _ = (trainer, history, relations, stopping);
        Ok(())
    }
}
