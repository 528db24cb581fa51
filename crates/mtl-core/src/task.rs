//! What a task is, as every crate sees it: a name, a [`TaskKind`] and, per
//! batch, its [`Targets`].
//!
//! The kind fixes the width of the task's head, the form of its targets, the
//! losses that apply (in `mtl-losses`) and how data columns are read (in
//! `mtl-data`).
//!
//! A row may be unlabelled for a task (merged data sets label each row for a
//! subset of the tasks). The mark is kept in the targets themselves, so that
//! gathering rows keeps it: a class index [`MISSING_CLASS`], or a row of
//! `NaN` values. [`Targets::labelled_rows`] lists the labelled rows; losses
//! and metrics use those only.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::Tensor;

/// The kind of a task, with its size.
///
/// In TOML: `kind = "classification"` with `classes = 10`, or
/// `kind = "regression"` with `outputs = 1`, and so on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskKind {
    /// One of `classes` mutually exclusive classes (targets: class indices).
    Classification {
        /// Number of classes (at least 2).
        classes: usize,
    },
    /// A yes/no label (targets: 0 or 1, one column).
    Binary,
    /// `labels` independent yes/no labels (targets: a 0/1 row per example).
    Multilabel {
        /// Number of labels (at least 1).
        labels: usize,
    },
    /// `outputs` real values (targets: a row of reals per example).
    Regression {
        /// Number of outputs (at least 1).
        outputs: usize,
    },
    /// Grouping into `clusters` groups without labels; reference labels, when
    /// the data has them, are used for scoring only.
    Clustering {
        /// Number of clusters (at least 2).
        clusters: usize,
    },
}

impl TaskKind {
    /// The kind's name as written in configurations.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Classification { .. } => "classification",
            TaskKind::Binary => "binary",
            TaskKind::Multilabel { .. } => "multilabel",
            TaskKind::Regression { .. } => "regression",
            TaskKind::Clustering { .. } => "clustering",
        }
    }

    /// Width of the head's output: logits, values, or cluster assignments.
    pub fn output_width(&self) -> usize {
        match *self {
            TaskKind::Classification { classes } => classes,
            TaskKind::Binary => 1,
            TaskKind::Multilabel { labels } => labels,
            TaskKind::Regression { outputs } => outputs,
            TaskKind::Clustering { clusters } => clusters,
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        let (what, n, min) = match *self {
            TaskKind::Classification { classes } => ("classes", classes, 2),
            TaskKind::Binary => return Ok(()),
            TaskKind::Multilabel { labels } => ("labels", labels, 1),
            TaskKind::Regression { outputs } => ("outputs", outputs, 1),
            TaskKind::Clustering { clusters } => ("clusters", clusters, 2),
        };
        if n < min {
            return Err(CoreError::InvalidArgument {
                what: format!("{} {what}", self.name()),
                reason: format!("{n} is below the minimum {min}"),
            });
        }
        Ok(())
    }
}

/// The class index that marks a row without a label (classification targets
/// and clustering reference labels).
pub const MISSING_CLASS: usize = usize::MAX;

/// A task: its name and kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique name, used in parameter names (`task:<name>`), logs and reports.
    pub name: String,
    /// The kind and size.
    #[serde(flatten)]
    pub kind: TaskKind,
}

/// The targets of one task for a batch (or a whole split).
///
/// Unlabelled rows are marked in place: [`MISSING_CLASS`] in `Classes` and in
/// reference labels, a row whose values are all `NaN` in `Values`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Targets {
    /// Class indices, one per example (classification); [`MISSING_CLASS`]
    /// for an unlabelled row.
    Classes(Vec<usize>),
    /// A `[examples, width]` tensor of reals (binary and multilabel as 0/1,
    /// regression); a row of `NaN` for an unlabelled row.
    Values(Tensor),
    /// No training target (clustering); optional reference labels for scoring.
    Unsupervised {
        /// Reference labels, one per example, if the data has them.
        reference: Option<Vec<usize>>,
    },
}

impl Targets {
    /// The number of examples, when the targets say (unsupervised targets
    /// without reference labels do not).
    pub fn len(&self) -> Option<usize> {
        match self {
            Targets::Classes(c) => Some(c.len()),
            Targets::Values(t) => t.shape().first().copied(),
            Targets::Unsupervised { reference } => reference.as_ref().map(Vec::len),
        }
    }

    /// Whether the targets hold no example.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Whether row `row` carries a label: a class other than
    /// [`MISSING_CLASS`], or a row of values not all `NaN`. Rows past the end,
    /// and every row of unsupervised targets without reference labels, do not.
    pub fn is_labelled(&self, row: usize) -> bool {
        match self {
            Targets::Classes(c) => c.get(row).is_some_and(|&v| v != MISSING_CLASS),
            Targets::Values(t) => match t.shape() {
                [rows, width] if row < *rows => {
                    let start = row * width;
                    let values = &t.data()[start..start + width];
                    *width == 0 || !values.iter().all(|v| v.is_nan())
                }
                _ => false,
            },
            Targets::Unsupervised { reference } => reference
                .as_ref()
                .and_then(|r| r.get(row))
                .is_some_and(|&v| v != MISSING_CLASS),
        }
    }

    /// The rows that carry a label ([`Targets::is_labelled`]), in order.
    pub fn labelled_rows(&self) -> Vec<usize> {
        (0..self.len().unwrap_or(0))
            .filter(|&i| self.is_labelled(i))
            .collect()
    }

    /// The number of rows that carry a label.
    pub fn labelled_count(&self) -> usize {
        (0..self.len().unwrap_or(0))
            .filter(|&i| self.is_labelled(i))
            .count()
    }

    /// Whether some row has no label.
    pub fn has_missing(&self) -> bool {
        (0..self.len().unwrap_or(0)).any(|i| !self.is_labelled(i))
    }

    /// The targets of examples `indices`, in that order.
    pub fn gather(&self, indices: &[usize]) -> Result<Targets> {
        let pick = |v: &[usize]| -> Result<Vec<usize>> {
            indices
                .iter()
                .map(|&i| {
                    v.get(i).copied().ok_or(CoreError::Index {
                        op: "Targets::gather",
                        index: i,
                        len: v.len(),
                    })
                })
                .collect()
        };
        Ok(match self {
            Targets::Classes(c) => Targets::Classes(pick(c)?),
            Targets::Values(t) => Targets::Values(t.gather_rows(indices)?),
            Targets::Unsupervised { reference } => Targets::Unsupervised {
                reference: reference.as_deref().map(pick).transpose()?,
            },
        })
    }

    /// The targets of `parts` one after the other (the parts of a split
    /// read in chunks).
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] when the parts are of different kinds
    /// or widths, or when there is no part.
    pub fn concat(parts: &[Targets]) -> Result<Targets> {
        let mismatch = || CoreError::InvalidArgument {
            what: "Targets::concat".into(),
            reason: "the parts are of different kinds or widths".into(),
        };
        let first = parts.first().ok_or_else(|| CoreError::InvalidArgument {
            what: "Targets::concat".into(),
            reason: "no part to join".into(),
        })?;
        Ok(match first {
            Targets::Classes(_) => {
                let mut all = Vec::new();
                for p in parts {
                    let Targets::Classes(c) = p else {
                        return Err(mismatch());
                    };
                    all.extend_from_slice(c);
                }
                Targets::Classes(all)
            }
            Targets::Values(t0) => {
                let width = t0.dims2()?.1;
                let mut all = Vec::new();
                for p in parts {
                    let Targets::Values(t) = p else {
                        return Err(mismatch());
                    };
                    if t.dims2()?.1 != width {
                        return Err(mismatch());
                    }
                    all.extend_from_slice(t.data());
                }
                let rows = all.len() / width.max(1);
                Targets::Values(Tensor::from_vec(all, &[rows, width])?)
            }
            Targets::Unsupervised { reference } => {
                let mut all = reference.as_ref().map(|_| Vec::new());
                for p in parts {
                    let Targets::Unsupervised { reference } = p else {
                        return Err(mismatch());
                    };
                    match (&mut all, reference) {
                        (Some(a), Some(r)) => a.extend_from_slice(r),
                        (None, None) => {}
                        _ => return Err(mismatch()),
                    }
                }
                Targets::Unsupervised { reference: all }
            }
        })
    }

    /// Checks that these targets fit a task of `kind`.
    pub fn check(&self, task: &str, kind: &TaskKind) -> Result<()> {
        let bad = |reason: String| {
            Err(CoreError::InvalidArgument {
                what: format!("targets of task {task:?}"),
                reason,
            })
        };
        match (self, kind) {
            (Targets::Classes(c), TaskKind::Classification { classes }) => {
                if let Some(&v) = c.iter().find(|&&v| v >= *classes && v != MISSING_CLASS) {
                    return bad(format!("class {v} is not below {classes}"));
                }
                Ok(())
            }
            (
                Targets::Values(t),
                k @ (TaskKind::Binary | TaskKind::Multilabel { .. } | TaskKind::Regression { .. }),
            ) => {
                let width = t.dims2()?.1;
                if t.rank() != 2 || width != k.output_width() {
                    return bad(format!(
                        "shape {:?} does not have {} columns",
                        t.shape(),
                        k.output_width()
                    ));
                }
                for (row, values) in t.data().chunks(width.max(1)).enumerate() {
                    if values.iter().all(|v| v.is_nan()) {
                        continue;
                    }
                    if !matches!(k, TaskKind::Regression { .. })
                        && values.iter().any(|&v| v != 0.0 && v != 1.0)
                    {
                        return bad(format!("binary targets must be 0 or 1 (row {row})"));
                    }
                    if let Some(j) = values.iter().position(|v| !v.is_finite()) {
                        return bad(format!(
                            "value {} at flat index {} is not finite (a row is unlabelled \
                             only when all its values are NaN)",
                            values[j],
                            row * width + j
                        ));
                    }
                }
                Ok(())
            }
            (Targets::Unsupervised { .. }, TaskKind::Clustering { .. }) => Ok(()),
            (_, k) => bad(format!("these targets do not fit a {} task", k.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_from_toml_shapes() {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"digit","kind":"classification","classes":10}"#)
                .unwrap();
        assert_eq!(spec.kind, TaskKind::Classification { classes: 10 });
        assert_eq!(spec.kind.output_width(), 10);
        assert!(TaskKind::Classification { classes: 1 }.validate().is_err());
    }

    #[test]
    fn targets_are_checked_against_their_kind() {
        let t = Targets::Classes(vec![0, 3]);
        assert!(t
            .check("a", &TaskKind::Classification { classes: 4 })
            .is_ok());
        assert!(t
            .check("a", &TaskKind::Classification { classes: 3 })
            .is_err());
        assert!(t.check("a", &TaskKind::Binary).is_err());
        let v = Targets::Values(Tensor::from_vec(vec![0.0, 1.0, 0.5], &[3, 1]).unwrap());
        assert!(v.check("b", &TaskKind::Regression { outputs: 1 }).is_ok());
        assert!(v.check("b", &TaskKind::Binary).is_err());
        assert_eq!(
            v.gather(&[2, 0]).unwrap(),
            Targets::Values(Tensor::from_vec(vec![0.5, 0.0], &[2, 1]).unwrap())
        );
    }

    #[test]
    fn unlabelled_rows_are_marked_in_place() {
        let c = Targets::Classes(vec![2, MISSING_CLASS, 0]);
        assert!(c
            .check("a", &TaskKind::Classification { classes: 3 })
            .is_ok());
        assert_eq!(c.labelled_rows(), vec![0, 2]);
        assert_eq!(c.gather(&[1, 2]).unwrap().labelled_count(), 1);
        let nan = f32::NAN;
        let v =
            Targets::Values(Tensor::from_vec(vec![1.0, 0.0, nan, nan, 0.0, 1.0], &[3, 2]).unwrap());
        assert!(v.check("m", &TaskKind::Multilabel { labels: 2 }).is_ok());
        assert_eq!(v.labelled_rows(), vec![0, 2]);
        assert!(v.has_missing());
        let partial = Targets::Values(Tensor::from_vec(vec![1.0, nan], &[1, 2]).unwrap());
        let e = partial
            .check("r", &TaskKind::Regression { outputs: 2 })
            .unwrap_err();
        assert!(e.to_string().contains("flat index 1"), "{e}");
        let r = Targets::Unsupervised {
            reference: Some(vec![MISSING_CLASS, 4]),
        };
        assert_eq!(r.labelled_rows(), vec![1]);
        assert_eq!(
            Targets::Unsupervised { reference: None }.labelled_count(),
            0
        );
    }
}
