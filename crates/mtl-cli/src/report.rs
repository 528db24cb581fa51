//! What a run writes for people: `metrics.csv` (one row per epoch) and SVG
//! plots of the task losses, the task weights and the task-gradient cosines.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{io, CliError, Result};

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

fn plot_err(path: &Path) -> impl Fn(String) -> CliError + '_ {
    move |message| CliError::Plot {
        path: path.to_path_buf(),
        message,
    }
}

/// One line per task of `series(record)[t]` against the epoch.
fn line_plot(
    path: &Path,
    title: &str,
    tasks: &[String],
    history: &[EpochRecord],
    series: impl Fn(&EpochRecord) -> &[f32],
) -> Result<()> {
    let err = plot_err(path);
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let values: Vec<f32> = history
        .iter()
        .flat_map(|r| series(r).iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let last = history.last().map_or(1, |r| r.epoch).max(2);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(1usize..last, lo..hi)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (t, name) in tasks.iter().enumerate() {
        let color = Palette99::pick(t).to_rgba();
        chart
            .draw_series(LineSeries::new(
                history.iter().map(|r| (r.epoch, series(r)[t])),
                color.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// A `T x T` heatmap of the last epoch's task-gradient cosines, from −1 (red)
/// to +1 (blue).
fn heatmap(path: &Path, tasks: &[String], cosines: &[f32]) -> Result<()> {
    let err = plot_err(path);
    let t = tasks.len();
    let root = SVGBackend::new(path, (120 + 80 * t as u32, 80 + 80 * t as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("task-gradient cosine", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0..t, 0..t)
        .map_err(|e| err(e.to_string()))?;
    let names = tasks.to_vec();
    let names2 = tasks.to_vec();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_label_formatter(&|i| names.get(*i).cloned().unwrap_or_default())
        .y_label_formatter(&|i| names2.get(*i).cloned().unwrap_or_default())
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            (0..t)
                .flat_map(|i| (0..t).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let c = cosines
                        .get(i * t + j)
                        .copied()
                        .unwrap_or(0.0)
                        .clamp(-1.0, 1.0);
                    let (r, b) = if c >= 0.0 {
                        ((255.0 * (1.0 - c)) as u8, 255)
                    } else {
                        (255, (255.0 * (1.0 + c)) as u8)
                    };
                    let g = (255.0 * (1.0 - c.abs())) as u8;
                    Rectangle::new([(i, j), (i + 1, j + 1)], RGBColor(r, g, b).filled())
                }),
        )
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Writes the three plots of a run into `dir`.
pub fn write_plots(dir: &Path, tasks: &[String], history: &[EpochRecord]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    line_plot(
        &dir.join("loss.svg"),
        "training loss per task",
        tasks,
        history,
        |r| &r.train_loss,
    )?;
    line_plot(
        &dir.join("weights.svg"),
        "task weights",
        tasks,
        history,
        |r| &r.weights,
    )?;
    let last = history.last().expect("history is not empty");
    heatmap(&dir.join("cosine.svg"), tasks, &last.cosines)
}
