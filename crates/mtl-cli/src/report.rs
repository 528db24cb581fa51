//! What a run writes for people: `metrics.csv` (one row per epoch) and plots
//! (SVG and PNG) of the task losses, the task weights and the task-gradient
//! cosines.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io, Result};
use crate::plot::{self, Heatmap, Lines};

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
    pub validation: crate::trainer::Evaluation,
    /// Cosine similarity of the tasks' shared gradients on one batch (`T x T`).
    pub cosines: Vec<f32>,
    /// The balancer's learnable values, by name.
    pub learnable: Vec<(String, f32)>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// Writes `metrics.csv` from the history.
pub fn write_csv(path: &Path, tasks: &[String], history: &[EpochRecord]) -> Result<()> {
    let mut out = String::from("epoch,step,lr,seconds");
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
        write!(out, "{},{},{},{:.3}", r.epoch, r.step, r.lr, r.seconds)
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

/// The values of `series(record)` for task `t`, epoch by epoch.
fn per_task(
    tasks: &[String],
    history: &[EpochRecord],
    series: impl Fn(&EpochRecord) -> &[f32],
) -> Vec<(String, Vec<f64>)> {
    tasks
        .iter()
        .enumerate()
        .map(|(t, name)| {
            let values = history
                .iter()
                .map(|r| series(r).get(t).map_or(f64::NAN, |&v| v as f64))
                .collect();
            (name.clone(), values)
        })
        .collect()
}

/// Writes the plots of a run into `dir`, each as SVG and PNG: `loss` (training
/// loss per task), `weights` (task weights) and `cosine` (the last epoch's
/// task-gradient cosine matrix).
pub fn write_plots(dir: &Path, tasks: &[String], history: &[EpochRecord]) -> Result<()> {
    let Some(last) = history.last() else {
        return Ok(());
    };
    plot::save(
        &dir.join("loss"),
        &Lines {
            title: "training loss per task".into(),
            y_label: "loss".into(),
            series: per_task(tasks, history, |r| &r.train_loss),
        },
    )?;
    plot::save(
        &dir.join("weights"),
        &Lines {
            title: "task weights".into(),
            y_label: "weight".into(),
            series: per_task(tasks, history, |r| &r.weights),
        },
    )?;
    plot::save(
        &dir.join("cosine"),
        &Heatmap {
            title: format!("task-gradient cosine, epoch {}", last.epoch),
            labels: tasks.to_vec(),
            values: last.cosines.iter().map(|&c| c as f64).collect(),
        },
    )?;
    Ok(())
}
