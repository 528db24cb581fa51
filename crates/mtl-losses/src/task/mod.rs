//! A task as training sees it: its name and kind (an `mtl-core`
//! [`TaskSpec`]), its loss with options, and how its head output is read.
//!
//! Head outputs, per kind: classification, binary and multilabel heads give
//! logits; regression heads give values; clustering heads give the Student-t
//! soft assignment `q` `[B, K]`, whose rows sum to 1.
//!
//! ```
//! use mtl_core::{Graph, Targets, Tensor};
//! use mtl_losses::task::{Prediction, Task};
//!
//! # fn main() -> mtl_losses::Result<()> {
//! let task: Task = toml::from_str(
//!     r#"
//!     name = "mpg"
//!     kind = "regression"
//!     outputs = 1
//!     loss = "huber"
//!     delta = 1.0
//!     "#,
//! )
//! .expect("a valid task");
//! let mut g = Graph::new(0);
//! let pred = g.param_value(Tensor::from_vec(vec![0.5, 4.0], &[2, 1])?);
//! let targets = Targets::Values(Tensor::from_vec(vec![0.0, 1.0], &[2, 1])?);
//! let loss = task.loss(&mut g, pred, &targets)?;
//! // Huber with δ = 1: ½·0.5² = 0.125 and 1·(3 − ½) = 2.5; mean 1.3125.
//! assert_eq!(g.value(loss)?.item()?, 1.3125);
//! assert!(matches!(task.predict(g.value(pred)?)?, Prediction::Values(_)));
//! # Ok(())
//! # }
//! ```

mod config;
mod prediction;

pub use config::{KindName, LossName, TaskConfig};
pub use prediction::Prediction;

use mtl_core::{Graph, Targets, TaskKind, TaskSpec, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss::Loss;

/// A task: name, kind and loss. Built validated (the loss fits the kind, its
/// options are in range), so [`Task::loss`] only checks the batch.
///
/// In a configuration it reads and writes as a [`TaskConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TaskConfig", into = "TaskConfig")]
pub struct Task {
    spec: TaskSpec,
    loss: Loss,
}

impl Task {
    /// A task with the given loss; an error naming the task when the kind's
    /// sizes are invalid or the loss does not fit the kind.
    pub fn new(spec: TaskSpec, loss: Loss) -> Result<Task> {
        let checked = spec
            .kind
            .validate()
            .map_err(Error::from)
            .and_then(|()| loss.validate(&spec.kind));
        match checked {
            Ok(()) => Ok(Task { spec, loss }),
            Err(e) => Err(in_task(&spec.name, e)),
        }
    }

    /// A task with its kind's default loss ([`Loss::default_for`]).
    pub fn with_default_loss(spec: TaskSpec) -> Result<Task> {
        let loss = Loss::default_for(&spec.kind);
        Task::new(spec, loss)
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The task's kind.
    pub fn kind(&self) -> &TaskKind {
        &self.spec.kind
    }

    /// The name and kind.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The loss and its options.
    pub fn loss_choice(&self) -> &Loss {
        &self.loss
    }

    /// Width of the head's output (classes, labels, outputs or clusters).
    pub fn output_width(&self) -> usize {
        self.spec.kind.output_width()
    }

    /// The task's loss of the head `output` against the batch's `targets`, as a
    /// scalar on `g`.
    ///
    /// Checks that the targets fit the kind (class indices below the class
    /// count, 0/1 binary targets, finite regression targets, no targets for
    /// clustering), that `output` is `[B, width]` with `B` the number of
    /// targets, and that it is finite. Every error names the task.
    ///
    /// Rows without a label ([`mtl_core::MISSING_CLASS`], a row of `NaN`)
    /// are left out: the loss is the mean over the labelled rows only. With
    /// no labelled row the loss is 0 and its gradient is zero (see
    /// [`Task::labelled_count`]).
    pub fn loss(&self, g: &mut Graph, output: Var, targets: &Targets) -> Result<Var> {
        self.checked_loss(g, output, targets)
            .map_err(|e| in_task(self.name(), e))
    }

    fn checked_loss(&self, g: &mut Graph, output: Var, targets: &Targets) -> Result<Var> {
        targets.check(self.name(), self.kind())?;
        let out = g.value(output)?;
        let rows = targets
            .len()
            .unwrap_or(out.shape().first().copied().unwrap_or(0));
        self.check_output(out, rows)?;
        if matches!(targets, Targets::Unsupervised { .. }) {
            return self.loss.apply(g, output, targets);
        }
        let labelled = targets.labelled_rows();
        if labelled.len() == rows {
            return self.loss.apply(g, output, targets);
        }
        if labelled.is_empty() {
            // Absent from this batch: 0·Σ output is a zero loss whose gradient
            // is zero everywhere, still attached to the head.
            let total = g.sum(output)?;
            return Ok(g.mul_scalar(total, 0.0)?);
        }
        let picked = g.gather_rows(output, &labelled)?;
        let kept = targets.gather(&labelled)?;
        self.loss.apply(g, picked, &kept)
    }

    /// How many of a batch's `rows` rows take part in this task's loss: the
    /// rows labelled for it ([`Targets::labelled_count`]), or every row for
    /// clustering, whose loss needs no label. Zero means the task is absent
    /// from the batch: [`Task::loss`] is then 0 with a zero gradient, and a
    /// balancer should leave the task out of the step.
    pub fn labelled_count(&self, targets: &Targets, rows: usize) -> usize {
        match targets {
            Targets::Unsupervised { .. } => rows,
            _ => targets.labelled_count(),
        }
    }

    /// Checks that a head output is a finite `[rows, width]` array with
    /// `rows ≥ 1`.
    pub(crate) fn check_output(&self, out: &Tensor, rows: usize) -> Result<()> {
        let expected = vec![rows, self.output_width()];
        if out.shape() != expected.as_slice() || rows == 0 {
            return Err(Error::Shape {
                what: "head output",
                expected,
                got: out.shape().to_vec(),
            });
        }
        if let Some(i) = out.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::BadValue {
                what: "head output",
                index: i,
                value: out.data()[i] as f64,
                expected: "a finite number",
            });
        }
        Ok(())
    }

    /// Reads a head output `[B, width]`: class indices (argmax of the logits),
    /// probabilities `σ(z)` of each yes/no label, regression values, or cluster
    /// indices (argmax of the soft assignment). Ties go to the lowest index.
    pub fn predict(&self, output: &Tensor) -> Result<Prediction> {
        let rows = output.shape().first().copied().unwrap_or(0);
        self.check_output(output, rows)
            .and_then(|()| Prediction::from_output(self.kind(), output))
            .map_err(|e| in_task(self.name(), e))
    }
}

/// Wraps `error` so its message names `task`.
pub(crate) fn in_task(task: &str, error: Error) -> Error {
    Error::InTask {
        task: task.to_owned(),
        source: Box::new(error),
    }
}
