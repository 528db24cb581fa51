//! The plots of a run (SVG and PNG): the task losses, the task weights and
//! the task-gradient cosines, drawn from its history.

use std::path::Path;

use mtl_train::relations::RelationTracker;
use mtl_train::{EpochRecord, Hook, Trainer};

use crate::error::{CliError, Result};
use crate::plot::{self, Heatmap, Lines};

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

/// Redraws a run's plots after every epoch: `loss`, `weights`, `cosine` and,
/// when relations are measured, their heatmaps and embedding plot. A plot
/// that fails does not stop training: the first failure is kept and
/// reported when the run ends ([`RunPlots::finish`]).
#[derive(Debug)]
pub struct RunPlots {
    dir: std::path::PathBuf,
    failed: Option<CliError>,
}

impl RunPlots {
    /// Plots into `dir`.
    pub fn new(dir: &Path) -> Self {
        RunPlots {
            dir: dir.to_path_buf(),
            failed: None,
        }
    }

    /// The first failure, if a plot could not be drawn.
    pub fn finish(self) -> Result<()> {
        self.failed.map_or(Ok(()), Err)
    }
}

impl Hook for RunPlots {
    fn after_epoch(
        &mut self,
        trainer: &Trainer,
        history: &[EpochRecord],
        relations: Option<&RelationTracker>,
        _: bool,
    ) -> mtl_train::Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        let names = trainer.task_names();
        let mut drawn = write_plots(&self.dir, &names, history);
        if let (Ok(()), Some(t)) = (&drawn, relations) {
            drawn = crate::relation_plots::write_plots(&self.dir, &t.relations(), &names);
        }
        if let Err(e) = drawn {
            self.failed = Some(e);
        }
        Ok(())
    }
}
