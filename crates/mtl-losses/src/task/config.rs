//! The configuration form of a task, as written in a run's TOML.

use mtl_core::{TaskKind, TaskSpec};
use serde::{Deserialize, Serialize};

use super::{in_task, Task};
use crate::error::{Error, Result};
use crate::loss::{BceWithLogits, CrossEntropy, Dec, Loss, RegressionLoss};

/// The Huber threshold when `loss = "huber"` is given without `delta`
/// (PyTorch's default).
pub const DEFAULT_HUBER_DELTA: f32 = 1.0;

/// A task kind's name in a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    /// Needs `classes`.
    Classification,
    /// No size.
    Binary,
    /// Needs `labels`.
    Multilabel,
    /// Takes `outputs` (default 1).
    Regression,
    /// Needs `clusters`.
    Clustering,
}

/// A loss's name in a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossName {
    /// [`CrossEntropy`]; options `label_smoothing`, `class_weights`.
    CrossEntropy,
    /// [`BceWithLogits`]; no options.
    BceWithLogits,
    /// [`RegressionLoss::Mse`].
    Mse,
    /// [`RegressionLoss::L1`].
    L1,
    /// [`RegressionLoss::Huber`]; option `delta` (default 1).
    Huber,
    /// [`Dec`]; no options (the Student-t `α` is the head's).
    Dec,
}

/// A task as configured: one flat table, every key checked.
///
/// ```toml
/// name = "digit"
/// kind = "classification"   # classification | binary | multilabel | regression | clustering
/// classes = 10              # the kind's size: classes, labels, outputs or clusters
/// loss = "cross_entropy"    # optional; the kind's default otherwise
/// label_smoothing = 0.1     # cross_entropy only (default 0)
/// class_weights = [...]     # cross_entropy only, one per class (default none)
/// # delta = 1.0             # huber only (default 1)
/// ```
///
/// Default losses: `cross_entropy` for classification, `bce_with_logits` for
/// binary and multilabel, `mse` for regression, `dec` for clustering. Unknown
/// keys, a size or option that does not apply to the kind or the loss, and a
/// missing size are errors naming the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The task's unique name.
    pub name: String,
    /// The kind.
    pub kind: KindName,
    /// Number of classes (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Number of labels (multilabel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<usize>,
    /// Number of outputs (regression; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<usize>,
    /// Number of clusters (clustering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<usize>,
    /// The loss; the kind's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossName>,
    /// Label smoothing of `cross_entropy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f32>,
    /// Class weights of `cross_entropy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
    /// Threshold of `huber`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f32>,
}

/// Refuses an option that is set but does not apply.
fn refuse<T: std::fmt::Debug>(option: &'static str, value: &Option<T>, to: &str) -> Result<()> {
    match value {
        Some(v) => Err(Error::TaskOption {
            option,
            value: format!("{v:?}"),
            reason: format!("does not apply to {to}"),
        }),
        None => Ok(()),
    }
}

impl TaskConfig {
    /// Builds and validates the task; every error names it.
    pub fn build(&self) -> Result<Task> {
        let spec = TaskSpec {
            name: self.name.clone(),
            kind: self.kind().map_err(|e| in_task(&self.name, e))?,
        };
        let loss = self.loss(&spec.kind).map_err(|e| in_task(&self.name, e))?;
        Task::new(spec, loss)
    }

    fn kind(&self) -> Result<TaskKind> {
        let sizes: [(&'static str, &Option<usize>); 4] = [
            ("classes", &self.classes),
            ("labels", &self.labels),
            ("outputs", &self.outputs),
            ("clusters", &self.clusters),
        ];
        let wanted = match self.kind {
            KindName::Classification => Some("classes"),
            KindName::Binary => None,
            KindName::Multilabel => Some("labels"),
            KindName::Regression => Some("outputs"),
            KindName::Clustering => Some("clusters"),
        };
        let kind_name = format!("{:?} task", self.kind).to_lowercase();
        let mut size = 0;
        for (option, value) in sizes {
            if option == "outputs" && wanted == Some(option) && value.is_none() {
                size = 1;
            } else if Some(option) == wanted {
                size = value.ok_or_else(|| Error::TaskOption {
                    option,
                    value: "nothing".into(),
                    reason: format!("a {kind_name} needs it"),
                })?;
            } else {
                refuse(option, value, &format!("a {kind_name}"))?;
            }
        }
        Ok(match self.kind {
            KindName::Classification => TaskKind::Classification { classes: size },
            KindName::Binary => TaskKind::Binary,
            KindName::Multilabel => TaskKind::Multilabel { labels: size },
            KindName::Regression => TaskKind::Regression { outputs: size },
            KindName::Clustering => TaskKind::Clustering { clusters: size },
        })
    }

    fn loss(&self, kind: &TaskKind) -> Result<Loss> {
        let loss = match self.loss {
            None => Loss::default_for(kind),
            Some(LossName::CrossEntropy) => Loss::CrossEntropy(CrossEntropy::default()),
            Some(LossName::BceWithLogits) => Loss::BceWithLogits(BceWithLogits),
            Some(LossName::Mse) => Loss::Regression(RegressionLoss::Mse),
            Some(LossName::L1) => Loss::Regression(RegressionLoss::L1),
            Some(LossName::Huber) => Loss::Regression(RegressionLoss::Huber {
                delta: self.delta.unwrap_or(DEFAULT_HUBER_DELTA),
            }),
            Some(LossName::Dec) => Loss::Dec(Dec),
        };
        let to = format!("loss `{}`", loss.name());
        Ok(match loss {
            Loss::CrossEntropy(_) => {
                refuse("delta", &self.delta, &to)?;
                Loss::CrossEntropy(CrossEntropy {
                    label_smoothing: self.label_smoothing.unwrap_or(0.0),
                    class_weights: self.class_weights.clone(),
                })
            }
            other => {
                refuse("label_smoothing", &self.label_smoothing, &to)?;
                refuse("class_weights", &self.class_weights, &to)?;
                if !matches!(other, Loss::Regression(RegressionLoss::Huber { .. })) {
                    refuse("delta", &self.delta, &to)?;
                }
                other
            }
        })
    }
}

impl TryFrom<TaskConfig> for Task {
    type Error = Error;

    fn try_from(config: TaskConfig) -> Result<Task> {
        config.build()
    }
}

impl From<Task> for TaskConfig {
    fn from(task: Task) -> TaskConfig {
        let mut c = TaskConfig {
            name: task.spec.name.clone(),
            kind: KindName::Binary,
            classes: None,
            labels: None,
            outputs: None,
            clusters: None,
            loss: None,
            label_smoothing: None,
            class_weights: None,
            delta: None,
        };
        match task.spec.kind {
            TaskKind::Classification { classes } => {
                c.kind = KindName::Classification;
                c.classes = Some(classes);
            }
            TaskKind::Binary => {}
            TaskKind::Multilabel { labels } => {
                c.kind = KindName::Multilabel;
                c.labels = Some(labels);
            }
            TaskKind::Regression { outputs } => {
                c.kind = KindName::Regression;
                c.outputs = Some(outputs);
            }
            TaskKind::Clustering { clusters } => {
                c.kind = KindName::Clustering;
                c.clusters = Some(clusters);
            }
        }
        match task.loss {
            Loss::CrossEntropy(ce) => {
                c.loss = Some(LossName::CrossEntropy);
                c.label_smoothing = Some(ce.label_smoothing);
                c.class_weights = ce.class_weights;
            }
            Loss::BceWithLogits(_) => c.loss = Some(LossName::BceWithLogits),
            Loss::Regression(RegressionLoss::Mse) => c.loss = Some(LossName::Mse),
            Loss::Regression(RegressionLoss::L1) => c.loss = Some(LossName::L1),
            Loss::Regression(RegressionLoss::Huber { delta }) => {
                c.loss = Some(LossName::Huber);
                c.delta = Some(delta);
            }
            Loss::Dec(_) => c.loss = Some(LossName::Dec),
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<Task, String> {
        toml::from_str::<Task>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_kind() {
        let t = parse("name = \"c\"\nkind = \"clustering\"\nclusters = 3").unwrap();
        assert_eq!(t.loss_choice(), &Loss::Dec(Dec));
        let t = parse("name = \"r\"\nkind = \"regression\"\noutputs = 2").unwrap();
        assert_eq!(t.loss_choice(), &Loss::Regression(RegressionLoss::Mse));
        let t =
            parse("name = \"h\"\nkind = \"regression\"\noutputs = 1\nloss = \"huber\"").unwrap();
        assert_eq!(
            t.loss_choice(),
            &Loss::Regression(RegressionLoss::Huber { delta: 1.0 })
        );
    }

    #[test]
    fn misplaced_and_unknown_keys_are_errors_naming_the_task() {
        let e = parse("name = \"m\"\nkind = \"regression\"\noutputs = 1\nlabel_smoothing = 0.1")
            .unwrap_err();
        assert!(e.contains("\"m\"") && e.contains("label_smoothing"), "{e}");
        let e = parse("name = \"m\"\nkind = \"regression\"\noutputs = 1\ndelta = 0.5").unwrap_err();
        assert!(
            e.contains("\"m\"") && e.contains("delta") && e.contains("mse"),
            "{e}"
        );
        let e = parse("name = \"m\"\nkind = \"regression\"\nclasses = 3").unwrap_err();
        assert!(e.contains("\"m\"") && e.contains("classes"), "{e}");
        let e = parse("name = \"m\"\nkind = \"classification\"").unwrap_err();
        assert!(e.contains("\"m\"") && e.contains("classes"), "{e}");
        let e = parse("name = \"m\"\nkind = \"binary\"\nloss = \"mse\"").unwrap_err();
        assert!(e.contains("\"m\"") && e.contains("binary"), "{e}");
        let e = parse("name = \"m\"\nkind = \"binary\"\nsmoothing = 0.1").unwrap_err();
        assert!(e.contains("smoothing"), "{e}");
        let e = parse(
            "name = \"w\"\nkind = \"classification\"\nclasses = 3\nclass_weights = [1.0, 2.0]",
        )
        .unwrap_err();
        assert!(e.contains("\"w\"") && e.contains("class_weights"), "{e}");
    }

    #[test]
    fn a_task_writes_back_to_the_same_task() {
        let text = "name = \"d\"\nkind = \"classification\"\nclasses = 3\n\
                    label_smoothing = 0.1\nclass_weights = [1.0, 2.0, 0.5]";
        let t = parse(text).unwrap();
        let written = toml::to_string(&t).unwrap();
        assert_eq!(parse(&written).unwrap(), t);
    }
}
