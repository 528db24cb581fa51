//! What a run shows while it trains: on a terminal, a progress bar per epoch
//! with the running mean loss of each task; otherwise one plain line per
//! epoch; with `quiet`, nothing.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one run.
#[derive(Debug)]
pub struct Progress {
    quiet: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A display that draws a bar only when standard error is a terminal and
    /// prints nothing at all when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
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
