//! What a run shows while it trains: on a terminal, a progress bar per epoch
//! with the running mean loss of each task; otherwise one plain line per
//! epoch; with `quiet`, nothing.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mtl_train::relations::RelationTracker;
use mtl_train::{Control, EpochRecord, Hook, StepEvent, Trainer};

/// The progress display of one run.
#[derive(Debug)]
pub struct Progress {
    stopping_note: Option<String>,
    quiet: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A display that draws a bar only when standard error is a terminal and
    /// prints nothing at all when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            stopping_note: None,
            quiet,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// The line printed when early stopping on `metric` after `patience`
    /// epochs ends the run.
    pub fn with_early_stopping(mut self, metric: &str, patience: usize) -> Self {
        self.stopping_note = Some(format!(
            "early stopping: no improvement of {metric} for {patience} epochs"
        ));
        self
    }

    /// Starts the bar of epoch `epoch` (from 1) of `epochs`, `steps` steps long.
    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, steps: usize) {
        if self.quiet || !self.terminal {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
    }

    /// Advances the bar by one step and shows the running mean losses.
    pub fn step(&self, tasks: &[String], loss_sums: &[f64], steps: usize) {
        if let Some(bar) = &self.bar {
            let msg = tasks
                .iter()
                .zip(loss_sums)
                .map(|(t, s)| format!("{t} {:.4}", s / steps.max(1) as f64))
                .collect::<Vec<_>>()
                .join("  ");
            bar.set_message(msg);
            bar.inc(1);
        }
    }

    /// Removes the bar and prints `line` (unless quiet).
    pub fn finish_epoch(&mut self, line: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.line(line);
    }

    /// Prints one line on standard output unless quiet.
    pub fn line(&self, line: &str) {
        if !self.quiet {
            println!("{line}");
        }
    }
}

impl Hook for Progress {
    fn on_step(&mut self, step: &StepEvent<'_>) -> mtl_train::Result<Control> {
        if step.step_in_epoch == 1 {
            self.start_epoch(step.epoch, step.epochs, step.steps_in_epoch);
        }
        self.step(step.tasks, step.loss_sums, step.step_in_epoch);
        Ok(Control::Continue)
    }

    fn after_epoch(
        &mut self,
        trainer: &Trainer,
        history: &[EpochRecord],
        _: Option<&RelationTracker>,
        stopping: bool,
    ) -> mtl_train::Result<()> {
        if let Some(record) = history.last() {
            self.finish_epoch(&epoch_line(&trainer.task_names(), record));
        }
        if let (true, Some(note)) = (stopping, &self.stopping_note) {
            self.line(note);
        }
        Ok(())
    }
}

/// The plain line printed after an epoch: training losses and validation scores.
pub fn epoch_line(tasks: &[String], record: &EpochRecord) -> String {
    let losses: Vec<String> = tasks
        .iter()
        .zip(&record.train_loss)
        .map(|(t, l)| format!("{t} {l:.4}"))
        .collect();
    let metrics: Vec<String> = record
        .validation
        .metrics
        .iter()
        .chain(&record.custom)
        .map(|(n, v)| format!("{n} {v:.4}"))
        .collect();
    format!(
        "epoch {:>3}  train loss {}  val {}  ({:.1}s)",
        record.epoch,
        losses.join(" "),
        metrics.join("  "),
        record.seconds
    )
}
