//! The history of a run: one [`EpochRecord`] per completed epoch, and
//! `metrics.csv` written from it.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io, Result};
use crate::trainer::Evaluation;

/// One completed epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Optimisation steps taken so far.
    pub step: u64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean training loss of each task.
    pub train_loss: Vec<f32>,
    /// Mean task weight the balancer gave.
    pub weights: Vec<f32>,
    /// Validation losses and metrics.
    pub validation: Evaluation,
    /// Cosine similarity of the tasks' shared gradients on one batch (`T x T`).
    pub cosines: Vec<f32>,
    /// The balancer's learnable values, by name.
    pub learnable: Vec<(String, f32)>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// Of [`EpochRecord::seconds`], those spent measuring task relations
    /// (`[train.relations]`).
    #[serde(default)]
    pub relations_seconds: f64,
    /// Metrics added by hooks, by name.
    #[serde(default)]
    pub custom: Vec<(String, f64)>,
}

impl EpochRecord {
    /// The value of a selection score with whether higher is better: a
    /// validation score (see [`Evaluation::score`]) or a custom metric
    /// (higher is better unless its name ends in `loss`, `error`, `mae`
    /// or `rmse`).
    pub fn score(&self, name: &str) -> Option<(f64, bool)> {
        self.validation.score(name).or_else(|| {
            self.custom.iter().find(|(n, _)| n == name).map(|(n, v)| {
                let lower = ["loss", "error", "mae", "rmse"]
                    .iter()
                    .any(|s| n.ends_with(s));
                (*v, !lower)
            })
        })
    }

    /// Every name [`EpochRecord::score`] knows.
    pub fn score_names(&self) -> Vec<String> {
        let mut names = vec!["loss".to_string()];
        names.extend(self.validation.metrics.iter().map(|(n, _)| n.clone()));
        names.extend(self.custom.iter().map(|(n, _)| n.clone()));
        names
    }
}

/// Writes `metrics.csv` from the history.
pub fn write_csv(path: &Path, tasks: &[String], history: &[EpochRecord]) -> Result<()> {
    let mut out = String::from("epoch,step,lr,seconds,relations_seconds");
    for t in tasks {
        write!(out, ",train_loss.{t},weight.{t},val_loss.{t}").expect("writing to a string");
    }
    if let Some(first) = history.first() {
        for (name, _) in &first.validation.metrics {
            write!(out, ",val.{name}").expect("writing to a string");
        }
    }
    out.push('\n');
    for r in history {
        write!(
            out,
            "{},{},{},{:.3},{:.3}",
            r.epoch, r.step, r.lr, r.seconds, r.relations_seconds
        )
        .expect("writing to a string");
        for t in 0..tasks.len() {
            write!(
                out,
                ",{},{},{}",
                r.train_loss[t], r.weights[t], r.validation.losses[t]
            )
            .expect("writing to a string");
        }
        for (_, v) in &r.validation.metrics {
            write!(out, ",{v}").expect("writing to a string");
        }
        out.push('\n');
    }
    std::fs::write(path, out).map_err(io(path))
}
