//! Metrics of task outputs, on plain slices (no tensor type needed), and the
//! multi-task score Δm%.
//!
//! One file per metric: [`accuracy`], [`macro_f1`] and [`label_macro_f1`],
//! [`roc_auc`] and [`macro_roc_auc`], [`mae`], [`rmse`] and [`r2`] for
//! regression, [`nmi`] and [`ari`] for clustering against reference labels, and
//! [`delta_m`]. [`evaluate`] reads a task's head outputs over a split and
//! returns the chosen [`Metric`]s by name.
//!
//! ```
//! use mtl_losses::metric::{ari, nmi, roc_auc};
//!
//! # fn main() -> mtl_losses::Result<()> {
//! // The same partition under other label names.
//! assert_eq!(ari(&[0, 0, 1, 1, 2], &[5, 5, 3, 3, 9])?, 1.0);
//! assert!((nmi(&[0, 0, 1, 1, 2], &[5, 5, 3, 3, 9])? - 1.0).abs() < 1e-12);
//! // Positive 0.4 ties negative 0.4: that pair counts ½, so AUC = 3.5 / 4.
//! assert_eq!(roc_auc(&[0.1, 0.4, 0.4, 0.9], &[false, false, true, true])?, 0.875);
//! # Ok(())
//! # }
//! ```

mod accuracy;
mod ari;
mod auc;
mod contingency;
mod delta_m;
mod evaluate;
mod f1;
mod input;
mod nmi;
mod regression;

pub use accuracy::accuracy;
pub use ari::ari;
pub use auc::{macro_roc_auc, roc_auc};
pub use delta_m::{delta_m, Score};
pub use evaluate::{evaluate, MetricValue};
pub use f1::{label_macro_f1, macro_f1};
pub use nmi::nmi;
pub use regression::{mae, r2, rmse};

use std::fmt;
use std::str::FromStr;

use mtl_core::TaskKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A metric, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// [`accuracy`]: classification, binary, multilabel (per label).
    Accuracy,
    /// [`macro_f1`] (classification) or [`label_macro_f1`] (binary, multilabel).
    MacroF1,
    /// [`roc_auc`] (binary) or [`macro_roc_auc`] (multilabel), from the logits.
    RocAuc,
    /// [`mae`]: regression.
    Mae,
    /// [`rmse`]: regression.
    Rmse,
    /// [`r2`]: regression.
    R2,
    /// [`nmi`]: clustering against reference labels.
    Nmi,
    /// [`ari`]: clustering against reference labels.
    Ari,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 8] = [
        Metric::Accuracy,
        Metric::MacroF1,
        Metric::RocAuc,
        Metric::Mae,
        Metric::Rmse,
        Metric::R2,
        Metric::Nmi,
        Metric::Ari,
    ];

    /// The name used in configurations, logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::MacroF1 => "macro_f1",
            Metric::RocAuc => "roc_auc",
            Metric::Mae => "mae",
            Metric::Rmse => "rmse",
            Metric::R2 => "r2",
            Metric::Nmi => "nmi",
            Metric::Ari => "ari",
        }
    }

    /// Whether a larger value is better: false for the errors MAE and RMSE,
    /// true for the others. Fixes the sign of each term of [`delta_m`].
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::Mae | Metric::Rmse)
    }

    /// Whether the metric can score a task of `kind`.
    pub fn applies_to(self, kind: &TaskKind) -> bool {
        use Metric::*;
        match kind {
            TaskKind::Classification { .. } => matches!(self, Accuracy | MacroF1),
            TaskKind::Binary | TaskKind::Multilabel { .. } => {
                matches!(self, Accuracy | MacroF1 | RocAuc)
            }
            TaskKind::Regression { .. } => matches!(self, Mae | Rmse | R2),
            TaskKind::Clustering { .. } => matches!(self, Nmi | Ari),
        }
    }

    /// The metrics reported for a kind when none are chosen; the first is the
    /// kind's headline metric, for one-number summaries such as Δm%.
    pub fn defaults(kind: &TaskKind) -> &'static [Metric] {
        match kind {
            TaskKind::Classification { .. } => &[Metric::Accuracy, Metric::MacroF1],
            TaskKind::Binary => &[Metric::RocAuc, Metric::Accuracy, Metric::MacroF1],
            TaskKind::Multilabel { .. } => &[Metric::MacroF1, Metric::RocAuc, Metric::Accuracy],
            TaskKind::Regression { .. } => &[Metric::Rmse, Metric::Mae, Metric::R2],
            TaskKind::Clustering { .. } => &[Metric::Nmi, Metric::Ari],
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = Error;

    /// Reads a metric name; an unknown name is an error listing the valid ones.
    fn from_str(s: &str) -> Result<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::TaskOption {
                option: "metric",
                value: s.to_owned(),
                reason: format!(
                    "valid metrics: {}",
                    Metric::ALL.map(Metric::name).join(", ")
                ),
            })
    }
}
