//! A whole training run: epochs of steps, evaluation, early stopping,
//! checkpoints, reports, and resume.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mtl_data::{DataLoader, LoaderConfig};
use mtl_losses::metric::Metric;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, TrainingState};
use crate::config::RunConfig;
use crate::data::{prepare, Prepared};
use crate::error::{io, CliError, Result};
use crate::predict::Preprocessing;
use crate::progress::Progress;
use crate::relations::{self, RelationTracker};
use crate::report::{self, EpochRecord};
use crate::trainer::{Evaluation, Trainer};

/// File name of the configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Directory of the best checkpoint inside a run directory.
pub const BEST_DIR: &str = "best";

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue from the newest good checkpoint in `out`.
    pub resume: bool,
    /// Print nothing.
    pub quiet: bool,
    /// Stop (as if interrupted) after this many epochs in total.
    pub stop_after: Option<usize>,
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

fn selection_score(trainer: &Trainer, eval: &Evaluation) -> Result<(f64, bool)> {
    let name = trainer
        .config
        .train
        .early_stopping
        .as_ref()
        .map_or("loss", |e| e.metric.as_str());
    eval.score(name).ok_or_else(|| CliError::Config {
        path: "[train] early_stopping.metric".into(),
        message: format!(
            "{name:?} is not a validation score; use \"loss\" or one of: {}",
            eval.metrics
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Refuses, before any training, an early-stopping metric that no task scores.
fn check_selection_metric(trainer: &Trainer) -> Result<()> {
    let Some(es) = &trainer.config.train.early_stopping else {
        return Ok(());
    };
    let mut names = vec!["loss".to_string()];
    for task in &trainer.tasks {
        for m in Metric::defaults(task.kind()) {
            names.push(format!("{}.{}", task.name(), m.name()));
        }
    }
    if names.contains(&es.metric) {
        return Ok(());
    }
    Err(CliError::Config {
        path: "[train] early_stopping.metric".into(),
        message: format!(
            "{:?} is not a validation score; use one of: {}",
            es.metric,
            names.join(", ")
        ),
    })
}

/// A tracker of task relations as the configuration asks, or none.
fn new_tracker(trainer: &Trainer) -> Result<Option<RelationTracker>> {
    let rc = &trainer.config.train.relations;
    if rc.every == 0 {
        return Ok(None);
    }
    let mut tracker = RelationTracker::new(trainer.tasks.len(), rc.every)?;
    if let Some(lr) = rc.lookahead_lr {
        tracker = tracker.with_lookahead_lr(lr)?;
    }
    Ok(Some(tracker))
}

fn state_of(
    trainer: &Trainer,
    relations: &Option<RelationTracker>,
    epoch: usize,
    best: Option<(f64, usize)>,
    stale: usize,
    history: &[EpochRecord],
) -> TrainingState {
    TrainingState {
        epoch,
        step: trainer.step,
        config: trainer.config.clone(),
        optimizer: trainer.optimizer.state(),
        scheduler: trainer.scheduler.clone(),
        balancer: trainer.balancer.state(),
        best,
        stale_epochs: stale,
        history: history.to_vec(),
        buffers: Vec::new(),
        relations: relations.clone(),
        params_crc32: 0,
    }
}

/// Builds the trainer and restores the newest good checkpoint of `out` when
/// resuming. Damaged checkpoints are reported and skipped.
fn restore(trainer: &mut Trainer, opts: &RunOptions) -> Result<Option<TrainingState>> {
    if !opts.resume {
        return Ok(None);
    }
    let mut errors = Vec::new();
    for dir in checkpoint::list(&opts.out)? {
        match checkpoint::load(&dir, &mut trainer.ps) {
            Ok(state) => {
                if state.config != trainer.config {
                    return Err(CliError::Checkpoint {
                        path: dir,
                        message: format!(
                            "was written with another configuration than {}",
                            opts.out.join(CONFIG_FILE).display()
                        ),
                    });
                }
                trainer.optimizer.load_state(state.optimizer.clone())?;
                trainer.scheduler = state.scheduler.clone();
                trainer.balancer.load_state(&state.balancer)?;
                trainer.step = state.step;
                for e in &errors {
                    if !opts.quiet {
                        eprintln!("warning: skipped damaged checkpoint: {e}");
                    }
                }
                return Ok(Some(state));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(CliError::Checkpoint {
        path: opts.out.clone(),
        message: if errors.is_empty() {
            "no checkpoint to resume from".into()
        } else {
            format!("no loadable checkpoint: {}", errors.join("; "))
        },
    })
}

/// Trains `config` into `opts.out` and returns the test scores of the best epoch.
pub fn fit(config: RunConfig, opts: &RunOptions) -> Result<RunSummary> {
    let prepared = prepare(&config)?;
    fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    Preprocessing::of(&prepared).save(&opts.out)?;
    let Prepared {
        dataset,
        split,
        tasks,
        target_index,
        ..
    } = prepared;
    let task_names: Vec<String> = tasks.iter().map(|t| t.name().to_string()).collect();
    let mut trainer = Trainer::new(config.clone(), dataset.feature_shape(), tasks, target_index)?;
    check_selection_metric(&trainer)?;
    trainer.init_regression_bias(&dataset, &split.train)?;
    let config_path = opts.out.join(CONFIG_FILE);
    let restored = restore(&mut trainer, opts)?;
    if restored.is_none() {
        let text = toml::to_string(&config).map_err(|e| CliError::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        fs::write(&config_path, text).map_err(io(&config_path))?;
    }
    let (start, mut best, mut stale, mut history, mut tracker) = match restored {
        Some(s) => (s.epoch, s.best, s.stale_epochs, s.history, s.relations),
        None => (0, None, 0, Vec::new(), new_tracker(&trainer)?),
    };
    let loader = DataLoader::new(
        &dataset,
        &split.train,
        LoaderConfig {
            batch_size: config.train.batch_size,
            shuffle: true,
            drop_last: false,
            seed: config.seed,
        },
    )?;
    let end = opts
        .stop_after
        .map_or(config.train.epochs, |s| s.min(config.train.epochs));
    let t_count = task_names.len();
    let mut progress = Progress::new(opts.quiet);
    let mut stopped_early = false;
    for epoch in start..end {
        if stopped_early {
            break;
        }
        let started = Instant::now();
        let lr = trainer.scheduler.lr();
        trainer.optimizer.set_lr(lr)?;
        let mut loss_sum = vec![0.0f64; t_count];
        let mut weight_sum = vec![0.0f64; t_count];
        let mut steps = 0usize;
        let mut first = None;
        progress.start_epoch(epoch + 1, end, loader.batches_per_epoch());
        for batch in loader.epoch(epoch as u64) {
            let batch = batch?;
            if let Some(t) = tracker.as_mut() {
                t.observe_step(&mut trainer, &batch)?;
            }
            let log = trainer.train_step(&batch, epoch as u64)?;
            for t in 0..t_count {
                loss_sum[t] += log.losses[t] as f64;
                weight_sum[t] += log.weights[t] as f64;
            }
            steps += 1;
            progress.step(&task_names, &loss_sum, steps);
            if first.is_none() {
                first = Some(batch);
            }
        }
        let mean = |s: &[f64]| {
            s.iter()
                .map(|v| (v / steps.max(1) as f64) as f32)
                .collect::<Vec<f32>>()
        };
        let train_loss = mean(&loss_sum);
        trainer.balancer.end_epoch(&train_loss)?;
        let cosines = match &first {
            Some(b) => trainer.task_cosines(b)?,
            None => vec![0.0; t_count * t_count],
        };
        let validation = trainer.evaluate(&dataset, &split.validation)?;
        let (score, higher) = selection_score(&trainer, &validation)?;
        let mean_val_loss = validation.score("loss").map_or(0.0, |s| s.0);
        trainer.scheduler.step(Some(mean_val_loss))?;
        let record = EpochRecord {
            epoch: epoch + 1,
            step: trainer.step,
            lr,
            train_loss,
            weights: mean(&weight_sum),
            validation,
            cosines,
            learnable: trainer.balancer.learnable(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let improved = match best {
            None => true,
            Some((b, _)) => {
                if higher {
                    score > b
                } else {
                    score < b
                }
            }
        };
        if improved {
            best = Some((score, epoch + 1));
            stale = 0;
        } else {
            stale += 1;
        }
        progress.finish_epoch(&epoch_line(&task_names, &record));
        if let Some(t) = tracker.as_mut() {
            t.end_epoch(epoch + 1);
            relations::write(&opts.out, &t.relations(), &task_names)?;
        }
        history.push(record);
        if improved {
            checkpoint::save(
                &opts.out.join(BEST_DIR),
                &trainer.ps,
                state_of(&trainer, &tracker, epoch + 1, best, stale, &history),
            )?;
        }
        checkpoint::save(
            &checkpoint::dir_for(&opts.out, epoch + 1),
            &trainer.ps,
            state_of(&trainer, &tracker, epoch + 1, best, stale, &history),
        )?;
        checkpoint::prune(&opts.out)?;
        report::write_csv(&opts.out.join("metrics.csv"), &task_names, &history)?;
        report::write_plots(&opts.out, &task_names, &history)?;
        if let Some(es) = &config.train.early_stopping {
            if stale >= es.patience {
                stopped_early = true;
                progress.line(&format!(
                    "early stopping: no improvement of {} for {} epochs",
                    es.metric, es.patience
                ));
            }
        }
    }
    let best_dir = opts.out.join(BEST_DIR);
    if best_dir.exists() {
        checkpoint::load(&best_dir, &mut trainer.ps)?;
    }
    let test = trainer.evaluate(&dataset, &split.test)?;
    let summary = RunSummary {
        balancer: trainer.balancer.name().to_string(),
        epochs: history.len(),
        train_seconds: history.iter().map(|r| r.seconds).sum(),
        best_epoch: best.map_or(0, |b| b.1),
        test,
        tasks: task_names,
        run_dir: opts.out.clone(),
    };
    let path = opts.out.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).map_err(|e| CliError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fs::write(&path, json).map_err(io(&path))?;
    Ok(summary)
}

/// The plain line printed after an epoch: training losses and validation scores.
fn epoch_line(tasks: &[String], record: &EpochRecord) -> String {
    let losses: Vec<String> = tasks
        .iter()
        .zip(&record.train_loss)
        .map(|(t, l)| format!("{t} {l:.4}"))
        .collect();
    let metrics: Vec<String> = record
        .validation
        .metrics
        .iter()
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

/// Reads the configuration saved in a run directory.
pub fn run_config(run_dir: &Path) -> Result<RunConfig> {
    RunConfig::load(&run_dir.join(CONFIG_FILE))
}

/// Rebuilds a run's model with its best parameters.
pub fn load_best(run_dir: &Path) -> Result<(Trainer, Prepared)> {
    let config = run_config(run_dir)?;
    let prepared = prepare(&config)?;
    let mut trainer = Trainer::new(
        config,
        prepared.dataset.feature_shape(),
        prepared.tasks.clone(),
        prepared.target_index.clone(),
    )?;
    let dir = run_dir.join(BEST_DIR);
    checkpoint::load(&dir, &mut trainer.ps)?;
    Ok((trainer, prepared))
}
