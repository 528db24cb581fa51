//! Whole epochs: [`Trainer::fit`] runs the steps of every epoch, evaluates,
//! stops early, checkpoints and resumes, and calls the [`Hook`]s. The loop
//! keeps its state in small named pieces: [`EarlyStopping`] (best score and
//! patience), [`CheckpointPolicy`] (where and what to save), [`EpochStats`]
//! (running means of one epoch) and the [`History`] it returns.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mtl_core::workers::keep_awake;
use mtl_data::{BatchSource, DataLoader, LoaderConfig};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, TrainingState};
use crate::config::{EarlyStoppingConfig, RelationsConfig, RunConfig};
use crate::error::{Result, TrainError};
use crate::history::EpochRecord;
use crate::hook::{Control, Hook, StepEvent};
use crate::relations::RelationTracker;
use crate::trainer::{Evaluation, StepBatches, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Directory of the best checkpoint inside a checkpoint directory.
pub const BEST_DIR: &str = "best";

/// How [`Trainer::fit`] runs.
///
/// ```
/// let options = mtl_train::FitOptions { epochs: 3, batch_size: 32, ..Default::default() };
/// assert!(options.checkpoints.is_none());
/// ```
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Passes over the training examples (the total, resumed epochs included).
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the data order (each epoch reshuffles with it).
    pub shuffle_seed: u64,
    /// Stop when a validation score stops improving; `None` runs every
    /// epoch (the best epoch is still tracked, on the mean validation loss).
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// How task relations are measured (`every = 0`: not at all).
    pub relations: RelationsConfig,
    /// Where checkpoints go; `None` keeps everything in memory.
    pub checkpoints: Option<CheckpointPolicy>,
    /// Continue from the newest good checkpoint of [`FitOptions::checkpoints`].
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total.
    pub stop_after: Option<usize>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 5,
            batch_size: 64,
            shuffle_seed: 0,
            early_stopping: None,
            relations: RelationsConfig {
                every: 0,
                lookahead_lr: None,
                rows: 0,
            },
            checkpoints: None,
            resume: false,
            stop_after: None,
        }
    }
}

impl FitOptions {
    /// The options a [`RunConfig`] describes, checkpointing into `run_dir`.
    pub fn from_config(config: &RunConfig, run_dir: &Path) -> Self {
        FitOptions {
            epochs: config.train.epochs,
            batch_size: config.train.batch_size,
            shuffle_seed: config.seed,
            early_stopping: config.train.early_stopping.clone(),
            relations: config.train.relations.clone(),
            checkpoints: Some(CheckpointPolicy {
                dir: run_dir.to_path_buf(),
                keep: checkpoint::KEEP,
                config: Some(config.clone()),
            }),
            resume: false,
            stop_after: None,
        }
    }
}

/// Where checkpoints are written: `dir/ckpt-NNNNN` after every epoch (the
/// newest `keep` are kept) and `dir/best` whenever the selection score
/// improves. Each is written atomically (see [`checkpoint`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointPolicy {
    /// The directory.
    pub dir: PathBuf,
    /// Epoch checkpoints kept besides `best`.
    pub keep: usize,
    /// The configuration a resumed run must match (checked on resume).
    pub config: Option<RunConfig>,
}

impl CheckpointPolicy {
    /// Checkpoints in `dir`, keeping the newest two epochs and the best.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        CheckpointPolicy {
            dir: dir.into(),
            keep: checkpoint::KEEP,
            config: None,
        }
    }
}

/// The best validation score so far and the patience left: the early
/// stopping rule, and the selection of the epoch to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// The score: `"loss"` (mean validation loss), `"<task>.<metric>"` or
    /// a custom metric a hook adds.
    pub metric: String,
    /// Epochs without improvement before stopping; `None`: never stop.
    pub patience: Option<usize>,
    /// The best score and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs since the best one.
    pub stale: usize,
}

impl EarlyStopping {
    /// A rule from the optional configuration (`None`: select on the mean
    /// validation loss and never stop).
    pub fn new(config: Option<&EarlyStoppingConfig>) -> Self {
        EarlyStopping {
            metric: config.map_or_else(|| "loss".to_string(), |c| c.metric.clone()),
            patience: config.map(|c| c.patience),
            best: None,
            stale: 0,
        }
    }

    /// Records the score of `epoch` (`higher`: whether higher is better);
    /// returns whether it improved on the best.
    pub fn observe(&mut self, score: f64, higher: bool, epoch: usize) -> bool {
        let improved = match self.best {
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
            self.best = Some((score, epoch));
            self.stale = 0;
        } else {
            self.stale += 1;
        }
        improved
    }

    /// Whether the patience is used up.
    pub fn should_stop(&self) -> bool {
        self.patience.is_some_and(|p| self.stale >= p)
    }
}

/// Running sums of one epoch's steps: the loss and weight of every task.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    loss_sum: Vec<f64>,
    weight_sum: Vec<f64>,
    steps: usize,
}

impl EpochStats {
    /// Empty sums for `tasks` tasks.
    pub fn new(tasks: usize) -> Self {
        EpochStats {
            loss_sum: vec![0.0; tasks],
            weight_sum: vec![0.0; tasks],
            steps: 0,
        }
    }

    /// Adds one step's losses and weights.
    pub fn add(&mut self, losses: &[f32], weights: &[f32]) {
        for (s, &l) in self.loss_sum.iter_mut().zip(losses) {
            *s += l as f64;
        }
        for (s, &w) in self.weight_sum.iter_mut().zip(weights) {
            *s += w as f64;
        }
        self.steps += 1;
    }

    /// Steps added so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The sum of every task's loss so far.
    pub fn loss_sums(&self) -> &[f64] {
        &self.loss_sum
    }

    fn mean(&self, sums: &[f64]) -> Vec<f32> {
        sums.iter()
            .map(|v| (v / self.steps.max(1) as f64) as f32)
            .collect()
    }

    /// The mean loss of every task.
    pub fn mean_losses(&self) -> Vec<f32> {
        self.mean(&self.loss_sum)
    }

    /// The mean weight of every task.
    pub fn mean_weights(&self) -> Vec<f32> {
        self.mean(&self.weight_sum)
    }
}

/// What [`Trainer::fit`] returns: one record per completed epoch and the
/// epoch whose parameters were kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The completed epochs, resumed ones included.
    pub epochs: Vec<EpochRecord>,
    /// The epoch with the best selection score (0 when none ran).
    pub best_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Damaged checkpoints skipped when resuming, one message each.
    pub warnings: Vec<String>,
}

impl History {
    /// Wall-clock seconds of all epochs.
    pub fn train_seconds(&self) -> f64 {
        self.epochs.iter().map(|r| r.seconds).sum()
    }
}

/// Everything the loop carries from one epoch to the next, saved in checkpoints.
struct LoopState {
    warnings: Vec<String>,
    epoch: usize,
    stopping: EarlyStopping,
    history: Vec<EpochRecord>,
    relations: Option<RelationTracker>,
}

impl Trainer {
    /// Trains on every example of `train` for `options.epochs` epochs,
    /// evaluating on `validation` after each (the training data when `None`),
    /// and returns the history. The parameters at the end are those of the
    /// best epoch when checkpoints are written, of the last epoch otherwise.
    ///
    /// Each hook sees every step and every epoch and may stop the run, add
    /// metrics to the epoch record, or save the model.
    ///
    /// # Errors
    /// Bad data, a diverged step, an early-stopping metric that no task
    /// scores, a checkpoint that cannot be written or resumed, or a hook's
    /// error.
    pub fn fit(
        &mut self,
        train: &dyn BatchSource,
        validation: Option<&dyn BatchSource>,
        options: &FitOptions,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<History> {
        let validation = validation.unwrap_or(train);
        let names = self.task_names();
        self.check_selection_metric(options, hooks)?;
        // Data parallelism: every rank runs the same configuration, and every
        // global batch has a row for every rank.
        self.check_parallel_start(
            &format!(
                "{:?} {} {} {} {} {} {} {}",
                options.checkpoints.as_ref().and_then(|c| c.config.as_ref()),
                self.balancer.name(),
                self.ps.len(),
                self.seed(),
                options.batch_size,
                options.epochs,
                options.shuffle_seed,
                train.len()
            ),
            options.batch_size.min(train.len()),
            train.len() % options.batch_size.max(1),
        )?;
        let mut state = match self.restore(options)? {
            Some(s) => {
                // The run may have stopped between the restored epoch's
                // checkpoint and its reports (metrics, plots): they are made
                // again before training goes on, so a run that had finished
                // its last epoch still ends with every report.
                let replayed = each_hook(hooks, |h| {
                    h.after_epoch(
                        self,
                        &s.history,
                        s.relations.as_ref(),
                        s.stopping.should_stop(),
                    )
                    .map(|()| Control::Continue)
                });
                self.agreed(replayed)?;
                s
            }
            None => LoopState {
                warnings: Vec::new(),
                epoch: 0,
                stopping: EarlyStopping::new(options.early_stopping.as_ref()),
                history: Vec::new(),
                relations: new_tracker(&options.relations, names.len())?,
            },
        };
        let all: Vec<usize> = (0..train.len()).collect();
        let loader = DataLoader::new(
            train,
            &all,
            LoaderConfig {
                batch_size: options.batch_size,
                shuffle: true,
                drop_last: false,
                seed: options.shuffle_seed,
            },
        )?;
        let end = options
            .stop_after
            .map_or(options.epochs, |s| s.min(options.epochs));
        let mut stopped_early = state.stopping.should_stop();
        while state.epoch < end && !stopped_early {
            let epoch = state.epoch;
            let started = Instant::now();
            let lr = self.scheduler.lr();
            self.optimizer.set_lr(lr)?;
            let mut stats = EpochStats::new(names.len());
            let mut first = None;
            let batches = loader.batches_per_epoch();
            let mut stop = false;
            let mut relations_seconds = 0.0;
            for batch in loader.epoch(epoch as u64) {
                let batch = batch?;
                if let Some(t) = state.relations.as_mut() {
                    let measured = Instant::now();
                    // Its passes, like a step's, run with the workers awake.
                    keep_awake(|| t.observe_step(self, &batch))?;
                    relations_seconds += measured.elapsed().as_secs_f64();
                }
                let second = match self.balancer.needs_second_batch() {
                    true => Some(draw_batch(train, batch.len(), self.seed(), self.step, 1)?),
                    false => None,
                };
                let held_out = match self.balancer.lookahead_weights() {
                    Some(_) => Some(draw_batch(
                        validation,
                        batch.len(),
                        self.seed(),
                        self.step,
                        2,
                    )?),
                    None => None,
                };
                let extra = StepBatches {
                    second: second.as_ref(),
                    validation: held_out.as_ref(),
                };
                let log = self.train_step_with(&batch, epoch as u64, &extra)?;
                stats.add(&log.losses, &log.weights);
                let event = StepEvent {
                    epoch: epoch + 1,
                    epochs: end,
                    step_in_epoch: stats.steps(),
                    steps_in_epoch: batches,
                    step: self.step,
                    losses: &log.losses,
                    weights: &log.weights,
                    loss_sums: stats.loss_sums(),
                    tasks: &names,
                };
                // Data parallelism: a hook's error or stop on any rank
                // (hooks may differ between ranks) ends every rank here.
                let control = each_hook(hooks, |h| h.on_step(&event));
                if self.agreed_control(control)? == Control::Stop {
                    stop = true;
                }
                if first.is_none() {
                    first = Some(batch);
                }
                if stop {
                    break;
                }
            }
            let train_loss = stats.mean_losses();
            self.balancer.end_epoch(&train_loss)?;
            let cosines = match &first {
                Some(b) => self.task_cosines(b)?,
                None => vec![0.0; names.len() * names.len()],
            };
            let validation_scores = self.evaluate(validation)?;
            let mean_val_loss = validation_scores.score("loss").map_or(0.0, |s| s.0);
            self.scheduler.step(Some(mean_val_loss))?;
            let mut record = EpochRecord {
                epoch: epoch + 1,
                step: self.step,
                lr,
                train_loss,
                weights: stats.mean_weights(),
                validation: validation_scores,
                cosines,
                learnable: self.balancer.learnable(),
                seconds: 0.0,
                relations_seconds,
                custom: Vec::new(),
            };
            let control = each_hook(hooks, |h| h.on_epoch(self, &mut record));
            if self.agreed_control(control)? == Control::Stop {
                stop = true;
            }
            record.seconds = started.elapsed().as_secs_f64();
            let (score, higher) =
                record
                    .score(&state.stopping.metric)
                    .ok_or_else(|| TrainError::Config {
                        path: "[train] early_stopping.metric".into(),
                        message: format!(
                            "{:?} is not a validation score; use one of: {}",
                            state.stopping.metric,
                            record.score_names().join(", ")
                        ),
                    })?;
            let improved = state.stopping.observe(score, higher, epoch + 1);
            if let Some(t) = state.relations.as_mut() {
                t.end_epoch(epoch + 1);
            }
            state.history.push(record);
            state.epoch = epoch + 1;
            stopped_early = state.stopping.should_stop();
            // Data parallelism: rank 0 alone writes (checkpoints here, the
            // run directory's reports and plots in the hooks); every rank
            // learns the outcome, so a failed write stops all of them with
            // one message and one status instead of leaving the others
            // waiting in the next collective.
            let written = match &options.checkpoints {
                Some(policy) if self.is_root() => {
                    let saved = self.training_state(&state, policy);
                    save_epoch(policy, &self.ps, saved, improved)
                }
                _ => Ok(()),
            };
            let reported = written.and_then(|()| {
                each_hook(hooks, |h| {
                    h.after_epoch(
                        self,
                        &state.history,
                        state.relations.as_ref(),
                        stopped_early,
                    )
                    .map(|()| Control::Continue)
                })
            });
            self.agreed(reported)?;
            if stop {
                break;
            }
        }
        if let Some(policy) = &options.checkpoints {
            let best = policy.dir.join(BEST_DIR);
            if best.exists() {
                checkpoint::load(&best, &mut self.ps)?;
            }
        }
        Ok(History {
            epochs: state.history,
            best_epoch: state.stopping.best.map_or(0, |b| b.1),
            stopped_early,
            warnings: state.warnings,
        })
    }

    /// Refuses, before any training, an early-stopping metric that neither
    /// a task nor a hook scores.
    fn check_selection_metric(&self, options: &FitOptions, hooks: &[&mut dyn Hook]) -> Result<()> {
        let Some(es) = &options.early_stopping else {
            return Ok(());
        };
        let mut names = Evaluation::score_names_for(&self.tasks);
        for h in hooks {
            names.extend(h.metric_names());
        }
        if names.contains(&es.metric) {
            return Ok(());
        }
        Err(TrainError::Config {
            path: "[train] early_stopping.metric".into(),
            message: format!(
                "{:?} is not a validation score; use one of: {}",
                es.metric,
                names.join(", ")
            ),
        })
    }

    fn training_state(&self, state: &LoopState, policy: &CheckpointPolicy) -> TrainingState {
        TrainingState {
            epoch: state.epoch,
            step: self.step,
            config: policy.config.clone(),
            optimizer: self.optimizer.state(),
            scheduler: self.scheduler.clone(),
            balancer: self.balancer.state(),
            best: state.stopping.best,
            stale_epochs: state.stopping.stale,
            history: state.history.clone(),
            buffers: Vec::new(),
            relations: state.relations.clone(),
            params_crc32: 0,
        }
    }

    /// Restores the newest good checkpoint when resuming; damaged
    /// checkpoints are skipped with a warning on standard error.
    fn restore(&mut self, options: &FitOptions) -> Result<Option<LoopState>> {
        if !options.resume {
            return Ok(None);
        }
        let Some(policy) = &options.checkpoints else {
            return Err(TrainError::Mismatch {
                what: "resume".into(),
                message: "resuming needs a checkpoint directory".into(),
            });
        };
        let resumed = self.resume_from(&policy.dir, policy.config.as_ref());
        let (state, warnings) = self.agreed(resumed)?;
        // A run stopped between writing the newest epoch checkpoint and
        // `best` (see `save_epoch`) may have left `best` stale or missing;
        // when the newest epoch is the best one, its parameters (now loaded)
        // are rewritten as `best`, the checkpoint the run would have left.
        let repaired = match state.best {
            Some((_, epoch)) if epoch == state.epoch && self.is_root() => {
                checkpoint::save(&policy.dir.join(BEST_DIR), &self.ps, state.clone())
            }
            _ => Ok(()),
        };
        self.agreed(repaired)?;
        let mut stopping = EarlyStopping::new(options.early_stopping.as_ref());
        stopping.best = state.best;
        stopping.stale = state.stale_epochs;
        Ok(Some(LoopState {
            warnings,
            epoch: state.epoch,
            stopping,
            history: state.history,
            relations: state.relations,
        }))
    }

    /// Restores the optimizer, schedule, balancer and step count of a
    /// checkpoint's state (the parameters are loaded with
    /// [`checkpoint::load`]).
    ///
    /// # Errors
    /// A state that does not fit this trainer's optimizer or balancer.
    pub fn restore_state(&mut self, state: &TrainingState) -> Result<()> {
        self.optimizer.load_state(state.optimizer.clone())?;
        self.scheduler = state.scheduler.clone();
        self.balancer.load_state(&state.balancer)?;
        self.step = state.step;
        Ok(())
    }

    /// Loads the newest good checkpoint of `dir` into the parameters,
    /// optimizer, schedule and balancer, and returns its state with one
    /// message per damaged checkpoint skipped. A checkpoint written with a
    /// configuration other than `config` is refused.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when no checkpoint loads.
    pub fn resume_from(
        &mut self,
        dir: &Path,
        config: Option<&RunConfig>,
    ) -> Result<(TrainingState, Vec<String>)> {
        let mut errors = Vec::new();
        for ckpt in checkpoint::list(dir)? {
            match checkpoint::load(&ckpt, &mut self.ps) {
                Ok(state) => {
                    if let (Some(saved), Some(now)) = (&state.config, config) {
                        if saved != now {
                            return Err(TrainError::Checkpoint {
                                path: ckpt,
                                message: format!(
                                    "was written with another configuration than {}",
                                    dir.join(crate::run::CONFIG_FILE).display()
                                ),
                            });
                        }
                    }
                    self.restore_state(&state)?;
                    let warnings = errors
                        .into_iter()
                        .map(|e| format!("skipped damaged checkpoint: {e}"))
                        .collect();
                    return Ok((state, warnings));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(TrainError::Checkpoint {
            path: dir.to_path_buf(),
            message: if errors.is_empty() {
                "no checkpoint to resume from".into()
            } else {
                format!("no loadable checkpoint: {}", errors.join("; "))
            },
        })
    }
}

/// Calls `call` on every hook in order and returns [`Control::Stop`] when
/// any asked to stop; the first error ends the calls.
fn each_hook(
    hooks: &mut [&mut dyn Hook],
    mut call: impl FnMut(&mut dyn Hook) -> Result<Control>,
) -> Result<Control> {
    let mut control = Control::Continue;
    for h in hooks.iter_mut() {
        if call(&mut **h)? == Control::Stop {
            control = Control::Stop;
        }
    }
    Ok(control)
}

/// Writes the checkpoint of the epoch `saved.epoch`, then `best` when the
/// epoch `improved`, then prunes old checkpoints. In this order a crash
/// leaves `best` stale or missing only while the newest epoch checkpoint
/// holds the best parameters, which is what resuming repairs.
fn save_epoch(
    policy: &CheckpointPolicy,
    ps: &mtl_core::ParamStore,
    saved: TrainingState,
    improved: bool,
) -> Result<()> {
    let epoch_dir = checkpoint::dir_for(&policy.dir, saved.epoch);
    checkpoint::save(&epoch_dir, ps, saved.clone())?;
    if improved {
        checkpoint::save(&policy.dir.join(BEST_DIR), ps, saved)?;
    }
    checkpoint::prune(&policy.dir, policy.keep)
}

/// `size` examples of `source` drawn without replacement by a generator
/// seeded from the run seed, the step and `stream` (1: MoDo's and SDMGrad's
/// second training batch; 2: Auto-Lambda's validation batch), so the draw
/// depends on nothing else and a resumed run draws the same batches.
fn draw_batch(
    source: &dyn BatchSource,
    size: usize,
    seed: u64,
    step: u64,
    stream: u64,
) -> Result<mtl_data::Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(stream);
    let n = source.len();
    if n == 0 {
        return Err(TrainError::Mismatch {
            what: "data".into(),
            message: format!(
                "{:?} has no example to draw an extra batch from",
                source.name()
            ),
        });
    }
    let rows = rand::seq::index::sample(&mut rng, n, size.min(n)).into_vec();
    Ok(source.gather(&rows)?)
}

/// A tracker of task relations as `config` asks, or none.
fn new_tracker(config: &RelationsConfig, tasks: usize) -> Result<Option<RelationTracker>> {
    if config.every == 0 {
        return Ok(None);
    }
    let mut tracker = RelationTracker::new(tasks, config.every)?;
    if let Some(lr) = config.lookahead_lr {
        tracker = tracker.with_lookahead_lr(lr)?;
    }
    if config.rows > 0 {
        tracker = tracker.with_rows(config.rows)?;
    }
    Ok(Some(tracker))
}
