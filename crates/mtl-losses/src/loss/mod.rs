//! Task losses as graph ops on `mtl-core`, one file per family:
//!
//! * [`CrossEntropy`]: classification, fused log-softmax + NLL with optional
//!   label smoothing and class weights;
//! * [`BceWithLogits`]: binary and multilabel tasks;
//! * [`RegressionLoss`]: MSE, L1 or Huber for regression;
//! * [`Dec`]: clustering, DEC's KL divergence of the Student-t soft assignment
//!   to its sharpened target distribution.
//!
//! Each loss returns a scalar [`Var`] on the caller's [`Graph`], so its
//! gradient flows through the head into the trunk. A [`Loss`] is chosen per
//! task (see [`crate::task::Task`]), which checks the targets against the
//! task's kind before calling [`Loss::apply`].

mod bce;
mod cross_entropy;
mod dec;
mod regression;

pub use bce::BceWithLogits;
pub use cross_entropy::CrossEntropy;
pub use dec::{kl_to_target, target_distribution, Dec, ROW_SUM_TOLERANCE};
pub use regression::RegressionLoss;

use mtl_core::{Graph, Targets, TaskKind, Var};

use crate::error::{Error, Result};

/// The loss of one task, with its options.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss {
    /// Cross-entropy over class logits (classification).
    CrossEntropy(CrossEntropy),
    /// Binary cross-entropy with logits (binary, multilabel).
    BceWithLogits(BceWithLogits),
    /// MSE, L1 or Huber (regression).
    Regression(RegressionLoss),
    /// DEC's KL(P‖Q) on a soft assignment (clustering).
    Dec(Dec),
}

impl Loss {
    /// The loss's name as written in configurations: `cross_entropy`,
    /// `bce_with_logits`, `mse`, `l1`, `huber` or `dec`.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy(_) => "cross_entropy",
            Loss::BceWithLogits(_) => "bce_with_logits",
            Loss::Regression(r) => r.name(),
            Loss::Dec(_) => "dec",
        }
    }

    /// The default loss of a kind: cross-entropy, BCE with logits, MSE, or DEC,
    /// each with its default options.
    pub fn default_for(kind: &TaskKind) -> Loss {
        match kind {
            TaskKind::Classification { .. } => Loss::CrossEntropy(CrossEntropy::default()),
            TaskKind::Binary | TaskKind::Multilabel { .. } => Loss::BceWithLogits(BceWithLogits),
            TaskKind::Regression { .. } => Loss::Regression(RegressionLoss::Mse),
            TaskKind::Clustering { .. } => Loss::Dec(Dec),
        }
    }

    /// Checks that the loss applies to `kind` and that its options are valid
    /// for it (class weights, one per class; a positive Huber `δ`; ...).
    pub fn validate(&self, kind: &TaskKind) -> Result<()> {
        match (self, kind) {
            (Loss::CrossEntropy(ce), TaskKind::Classification { classes }) => ce.validate(*classes),
            (Loss::BceWithLogits(_), TaskKind::Binary | TaskKind::Multilabel { .. }) => Ok(()),
            (Loss::Regression(r), TaskKind::Regression { .. }) => r.validate(),
            (Loss::Dec(_), TaskKind::Clustering { .. }) => Ok(()),
            (loss, kind) => Err(Error::TaskOption {
                option: "loss",
                value: loss.name().into(),
                reason: format!("does not apply to a {} task", kind.name()),
            }),
        }
    }

    /// The loss of `output` against `targets`, as a scalar on `g`.
    ///
    /// The caller has checked `targets` against the task's kind (as
    /// [`crate::task::Task::loss`] does); targets of another form are refused.
    pub fn apply(&self, g: &mut Graph, output: Var, targets: &Targets) -> Result<Var> {
        match (self, targets) {
            (Loss::CrossEntropy(ce), Targets::Classes(classes)) => ce.apply(g, output, classes),
            (Loss::BceWithLogits(b), Targets::Values(t)) => b.apply(g, output, t),
            (Loss::Regression(r), Targets::Values(t)) => r.apply(g, output, t),
            (Loss::Dec(d), Targets::Unsupervised { .. }) => d.apply(g, output),
            (loss, _) => Err(Error::TaskOption {
                option: "loss",
                value: loss.name().into(),
                reason: "the targets are not of the form this loss takes".into(),
            }),
        }
    }
}
