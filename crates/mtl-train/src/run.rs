//! A run described by a [`RunConfig`] trained into a run directory: the
//! configuration, `preprocessing.json`, checkpoints, `metrics.csv`,
//! `relations.json` and `summary.json`. This is the path `mtl train` takes;
//! it builds a [`Trainer`] with [`Trainer::from_config`] and calls
//! [`Trainer::fit`], the same loop a model built in code uses.

use std::fs;
use std::path::{Path, PathBuf};

use mtl_data::Subset;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::config::{RunConfig, ValidRunConfig};
use crate::error::{io, Result, TrainError};
use crate::fit::{FitOptions, BEST_DIR};
use crate::history::{self, EpochRecord};
use crate::hook::Hook;
use crate::memory;
use crate::predict::Preprocessing;
use crate::prepare::{prepare, Prepared};
use crate::relations::{self, RelationTracker};
use crate::trainer::{Evaluation, Trainer};

/// File name of the configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue from the newest good checkpoint in `out`.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total.
    pub stop_after: Option<usize>,
    /// Refuse a run whose estimated memory exceeds this many bytes
    /// (default: the memory available).
    pub memory: Option<u64>,
}

/// What a finished run reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// The balancer's name.
    pub balancer: String,
    /// Epochs completed.
    pub epochs: usize,
    /// Wall-clock seconds of all training epochs (resumed runs included).
    pub train_seconds: f64,
    /// The epoch whose parameters were kept.
    pub best_epoch: usize,
    /// Scores of the kept parameters on the test rows.
    pub test: Evaluation,
    /// Task names in order.
    pub tasks: Vec<String>,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Damaged checkpoints skipped when resuming (printed, not saved in
    /// `summary.json`, which is the same for a resumed run as for an
    /// uninterrupted one).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl RunSummary {
    /// Mean wall-clock seconds of a training epoch.
    pub fn seconds_per_epoch(&self) -> f64 {
        self.train_seconds / self.epochs.max(1) as f64
    }

    /// The test metrics grouped by task: `{task: {metric: value}}`, tasks in
    /// training order.
    pub fn metrics_by_task(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut tasks = serde_json::Map::new();
        for name in &self.tasks {
            tasks.insert(name.clone(), serde_json::Value::Object(Default::default()));
        }
        for (full, value) in &self.test.metrics {
            let Some((task, metric)) = full.rsplit_once('.') else {
                continue;
            };
            if let Some(serde_json::Value::Object(m)) = tasks.get_mut(task) {
                m.insert(metric.to_string(), serde_json::json!(value));
            }
        }
        tasks
    }

    /// The object `--json` prints: `{"tasks": {task: {metric: value}},
    /// "balancer", "epochs", "train_seconds", "seconds_per_epoch"}` and
    /// `"delta_m"` when single-task baselines exist.
    pub fn to_json(&self, delta_m: Option<f64>) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        out.insert("tasks".into(), self.metrics_by_task().into());
        out.insert("balancer".into(), self.balancer.clone().into());
        out.insert("epochs".into(), self.epochs.into());
        out.insert("best_epoch".into(), self.best_epoch.into());
        out.insert(
            "train_seconds".into(),
            serde_json::json!(self.train_seconds),
        );
        out.insert(
            "seconds_per_epoch".into(),
            serde_json::json!(self.seconds_per_epoch()),
        );
        if let Some(dm) = delta_m {
            out.insert("delta_m".into(), serde_json::json!(dm));
        }
        out.insert(
            "run_dir".into(),
            self.run_dir.to_string_lossy().into_owned().into(),
        );
        serde_json::Value::Object(out)
    }
}

/// Writes what a run directory holds after every epoch: `metrics.csv` and
/// `relations.json`.
struct RunDirReport<'a> {
    dir: &'a Path,
    tasks: Vec<String>,
}

impl Hook for RunDirReport<'_> {
    fn after_epoch(
        &mut self,
        trainer: &Trainer,
        history: &[EpochRecord],
        relations: Option<&RelationTracker>,
        _: bool,
    ) -> Result<()> {
        // Data parallelism: rank 0 alone writes.
        if !trainer.is_root() {
            return Ok(());
        }
        if let Some(t) = relations {
            relations::write(self.dir, &t.relations(), &self.tasks)?;
        }
        history::write_csv(&self.dir.join("metrics.csv"), &self.tasks, history)
    }
}

/// Trains `config` into `opts.out` and returns the test scores of the best
/// epoch; `hooks` (a progress display, plots) are called as
/// [`Trainer::fit`] describes.
pub fn fit(
    config: RunConfig,
    opts: &RunOptions,
    hooks: &mut [&mut dyn Hook],
) -> Result<RunSummary> {
    fit_valid(config.validate(Path::new("<configuration>"))?, opts, hooks)
}

/// [`fit`] of a configuration already validated (as
/// [`RunConfig::load`] returns it).
pub fn fit_valid(
    config: ValidRunConfig,
    opts: &RunOptions,
    hooks: &mut [&mut dyn Hook],
) -> Result<RunSummary> {
    fit_with(config, opts, hooks, Box::new(mtl_dist::SingleProcess))
}

/// [`fit_valid`] on the ranks of `comm` (data parallelism, see
/// [`crate::parallel`]): every rank trains, rank 0 alone writes the run
/// directory.
pub fn fit_with(
    config: ValidRunConfig,
    opts: &RunOptions,
    hooks: &mut [&mut dyn Hook],
    comm: Box<dyn mtl_dist::Communicator + Send>,
) -> Result<RunSummary> {
    let root = comm.rank() == 0;
    let prepared = prepare(&config)?;
    memory::check(
        &config,
        prepared.dataset.feature_shape(),
        &prepared.tasks,
        opts.memory,
    )?;
    let preprocessing = Preprocessing::of(&prepared);
    let Prepared {
        dataset,
        split,
        tasks,
        target_index,
        ..
    } = prepared;
    let task_names: Vec<String> = tasks.iter().map(|t| t.name().to_string()).collect();
    let mut trainer = Trainer::from_config(&config, dataset.feature_shape(), tasks, target_index)?;
    trainer.init_regression_bias(&dataset, &split.train)?;
    trainer.set_communicator(comm);
    // Data parallelism: rank 0 alone writes; every rank learns the outcome
    // of its writes, so a failure stops all of them with one message.
    let started = match root {
        true => start_run_dir(&config, &preprocessing, opts),
        false => Ok(()),
    };
    trainer.agreed(started)?;
    let mut options = FitOptions::from_config(&config, &opts.out);
    options.resume = opts.resume;
    options.stop_after = opts.stop_after;
    let train = Subset::new(&dataset, &split.train)?;
    let validation = Subset::new(&dataset, &split.validation)?;
    let mut report = RunDirReport {
        dir: &opts.out,
        tasks: task_names.clone(),
    };
    let mut all: Vec<&mut dyn Hook> = Vec::with_capacity(hooks.len() + 1);
    all.push(&mut report);
    for h in hooks.iter_mut() {
        all.push(&mut **h);
    }
    let history = trainer.fit(&train, Some(&validation), &options, &mut all)?;
    let test = trainer.evaluate(&Subset::new(&dataset, &split.test)?)?;
    let summary = RunSummary {
        balancer: trainer.balancer().name().to_string(),
        epochs: history.epochs.len(),
        train_seconds: history.train_seconds(),
        best_epoch: history.best_epoch,
        test,
        tasks: task_names,
        run_dir: opts.out.clone(),
        warnings: history.warnings.clone(),
    };
    let written = match root {
        true => write_summary(&summary, &opts.out),
        false => Ok(()),
    };
    trainer.agreed(written)?;
    Ok(summary)
}

/// Creates the run directory and writes `preprocessing.json` and, for a new
/// run, the configuration.
fn start_run_dir(
    config: &ValidRunConfig,
    preprocessing: &Preprocessing,
    opts: &RunOptions,
) -> Result<()> {
    fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    preprocessing.save(&opts.out)?;
    if opts.resume {
        return Ok(());
    }
    let config_path = opts.out.join(CONFIG_FILE);
    let text = toml::to_string(&**config).map_err(|e| TrainError::Config {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    fs::write(&config_path, text).map_err(io(&config_path))
}

/// Writes `summary.json` into the run directory `dir`.
fn write_summary(summary: &RunSummary, dir: &Path) -> Result<()> {
    let path = dir.join("summary.json");
    let json = serde_json::to_string_pretty(summary).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fs::write(&path, json).map_err(io(&path))
}

/// Reads the configuration saved in a run directory.
pub fn run_config(run_dir: &Path) -> Result<ValidRunConfig> {
    RunConfig::load(&run_dir.join(CONFIG_FILE))
}

/// Rebuilds a run's model with its best parameters.
pub fn load_best(run_dir: &Path) -> Result<(Trainer, Prepared)> {
    let config = run_config(run_dir)?;
    let prepared = prepare(&config)?;
    let mut trainer = Trainer::from_prepared(&config, &prepared)?;
    let dir = run_dir.join(BEST_DIR);
    checkpoint::load(&dir, trainer.params_mut())?;
    Ok((trainer, prepared))
}
