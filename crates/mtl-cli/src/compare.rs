//! `mtl compare`: one configuration trained with several balancers on the
//! same data and model under the same seeds (the configuration's seed, +1,
//! ...), optionally beside single-task baselines trained under those seeds.
//! Every metric and Δm% is reported as mean ± standard deviation over the
//! seeds, the balancers are ranked by mean Δm%, and each is compared with
//! equal weighting seed by seed (a paired t statistic on the per-seed Δm%).
//! The results are written as `compare.csv` (one row per balancer and seed,
//! then the mean and standard deviation rows) and as charts.

mod charts;
mod stats;
mod table;

use std::fs;
use std::path::{Path, PathBuf};

use mtl_losses::balance::FixedConfig;
use mtl_losses::metric::{delta_m, Metric, Score};
use mtl_losses::task::TaskConfig;
use mtl_losses::BalancerConfig;

use crate::error::{io, CliError, Result};

// The training API this module uses, all in one place: a configuration, the
// tasks its data defines, one training run and what it reports.
use mtl_train::prepare::prepare;
use mtl_train::run::{RunOptions, RunSummary};
use mtl_train::{RunConfig, TrainError};

/// Trains one run of a comparison, quietly.
fn fit(config: RunConfig, opts: &RunOptions) -> mtl_train::Result<RunSummary> {
    mtl_train::run::fit(config, opts, &mut [])
}

pub use charts::write_charts;
pub use stats::{
    decimals, mean_pm, signed_pm, significant, t_critical_95, Paired, Spread, Verdict,
};
pub use table::{to_csv, to_json, to_text};

/// The balancer every other one is compared with, seed by seed.
pub const EQUAL: &str = "equal";

/// How to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Balancer names (default parameters each), or the single name `all`.
    pub balancers: Vec<String>,
    /// Directory holding one run directory per balancer and seed, and the
    /// table and charts.
    pub out: PathBuf,
    /// Also train one single-task model per task and seed, the reference of
    /// Δm%.
    pub baselines: bool,
    /// How many seeds: the configuration's seed, then +1, +2, ... (at least 1).
    pub seeds: u64,
}

/// What one training run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Test scores of the kept parameters, one per task and metric.
    pub scores: Vec<Score>,
    /// Mean wall-clock seconds of a training epoch.
    pub seconds_per_epoch: f64,
    /// Epochs completed.
    pub epochs: usize,
    /// The run directory.
    pub run_dir: PathBuf,
}

impl Measured {
    /// The score of `task` on `metric`, if the run reports it.
    pub fn value(&self, task: &str, metric: Metric) -> Option<f64> {
        value_of(&self.scores, task, metric)
    }
}

fn value_of(scores: &[Score], task: &str, metric: Metric) -> Option<f64> {
    scores
        .iter()
        .find(|s| s.task == task && s.metric == metric)
        .map(|s| s.value)
}

/// How one balancer fared under one seed.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The run finished.
    Trained {
        /// What it measured.
        measured: Measured,
        /// Δm% against the [`Reference`] of the same seed.
        delta_m: Option<f64>,
    },
    /// The run could not be trained (diverged, or the balancer does not fit
    /// the architecture); the message says why.
    Failed(String),
}

/// One seed's run of one balancer (or of the single-task baselines).
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRun {
    /// The seed of the run.
    pub seed: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// Every seed's run of one balancer.
#[derive(Clone, Debug, PartialEq)]
pub struct BalancerRuns {
    /// The balancer's name.
    pub balancer: String,
    /// Remarks the table prints under the rows: parameters chosen for the
    /// comparison, a Δm% that could not be computed.
    pub notes: Vec<String>,
    /// One run per seed, in seed order.
    pub runs: Vec<SeedRun>,
}

/// What Δm% is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The single-task baselines of the same seed (`--baselines`).
    SingleTask,
    /// Equal weighting under the same seed (no baselines, equal compared).
    Equal,
    /// Neither: no Δm%, no ranking.
    Nothing,
}

impl Reference {
    /// What the reference is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Reference::SingleTask => "the single-task baselines of the same seed",
            Reference::Equal => "equal weighting under the same seed (no --baselines)",
            Reference::Nothing => "nothing: train with --baselines or include equal",
        }
    }
}

/// The whole comparison: every balancer under every seed, and the baselines.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// The single-task baselines, one run per seed whose scores join every
    /// task's single-task model; empty without `--baselines`.
    pub baselines: Vec<SeedRun>,
    /// The balancers, in the order given.
    pub balancers: Vec<BalancerRuns>,
    /// What Δm% is measured against.
    pub reference: Reference,
}

/// One balancer's results over the seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// The balancer's name.
    pub balancer: String,
    /// 1 for the best mean Δm%; `None` without Δm%.
    pub rank: Option<usize>,
    /// Seeds whose run finished.
    pub trained: usize,
    /// Every metric over the trained seeds, in [`Comparison::columns`] order.
    pub metrics: Vec<Option<Spread>>,
    /// Δm% over the seeds that have one.
    pub delta_m: Option<Spread>,
    /// Seconds per epoch over the trained seeds.
    pub seconds_per_epoch: Option<Spread>,
    /// Epochs over the trained seeds.
    pub epochs: Option<Spread>,
    /// The paired comparison of the per-seed Δm% with equal weighting's
    /// (absent for equal weighting itself and without Δm%).
    pub vs_equal: Option<Paired>,
}

impl Comparison {
    /// Every `(task, metric)` some run reports, in the order first seen.
    pub fn columns(&self) -> Vec<(String, Metric)> {
        let mut out: Vec<(String, Metric)> = Vec::new();
        let runs = self
            .balancers
            .iter()
            .flat_map(|b| &b.runs)
            .chain(&self.baselines);
        for run in runs {
            if let Outcome::Trained { measured, .. } = &run.outcome {
                for s in &measured.scores {
                    if !out.iter().any(|(t, m)| *t == s.task && *m == s.metric) {
                        out.push((s.task.clone(), s.metric));
                    }
                }
            }
        }
        out
    }

    /// The baselines' metrics over the seeds, in [`Comparison::columns`]
    /// order; empty without baselines.
    pub fn baseline_metrics(&self) -> Vec<Option<Spread>> {
        if self.baselines.is_empty() {
            return Vec::new();
        }
        let measured: Vec<&Measured> = trained(&self.baselines).map(|(m, _)| m).collect();
        metric_spreads(&self.columns(), &measured)
    }

    /// One [`Aggregate`] per balancer, best mean Δm% first; balancers
    /// without Δm% follow in the order given.
    pub fn aggregates(&self) -> Vec<Aggregate> {
        let columns = self.columns();
        let equal = self.balancers.iter().find(|b| b.balancer == EQUAL);
        let mut out: Vec<Aggregate> = self
            .balancers
            .iter()
            .map(|b| {
                let measured: Vec<&Measured> = trained(&b.runs).map(|(m, _)| m).collect();
                let deltas: Vec<f64> = trained(&b.runs).filter_map(|(_, d)| d).collect();
                let vs_equal = match equal {
                    Some(e) if e.balancer != b.balancer => Paired::of(&paired_deltas(b, e)),
                    _ => None,
                };
                Aggregate {
                    balancer: b.balancer.clone(),
                    rank: None,
                    trained: measured.len(),
                    metrics: metric_spreads(&columns, &measured),
                    delta_m: Spread::of(&deltas),
                    seconds_per_epoch: Spread::of(
                        &measured
                            .iter()
                            .map(|m| m.seconds_per_epoch)
                            .collect::<Vec<_>>(),
                    ),
                    epochs: Spread::of(
                        &measured.iter().map(|m| m.epochs as f64).collect::<Vec<_>>(),
                    ),
                    vs_equal,
                }
            })
            .collect();
        // Stable: ties and rows without Δm% keep the order given.
        out.sort_by(|a, b| {
            let key = |x: &Aggregate| x.delta_m.map_or(f64::NEG_INFINITY, |d| d.mean);
            key(b).total_cmp(&key(a))
        });
        for (i, a) in out.iter_mut().filter(|a| a.delta_m.is_some()).enumerate() {
            a.rank = Some(i + 1);
        }
        out
    }
}

/// The trained runs of a list: what they measured and their Δm%.
fn trained(runs: &[SeedRun]) -> impl Iterator<Item = (&Measured, Option<f64>)> {
    runs.iter().filter_map(|r| match &r.outcome {
        Outcome::Trained { measured, delta_m } => Some((measured, *delta_m)),
        Outcome::Failed(_) => None,
    })
}

fn metric_spreads(columns: &[(String, Metric)], measured: &[&Measured]) -> Vec<Option<Spread>> {
    columns
        .iter()
        .map(|(task, metric)| {
            let values: Vec<f64> = measured
                .iter()
                .filter_map(|m| m.value(task, *metric))
                .collect();
            Spread::of(&values)
        })
        .collect()
}

/// `(Δm% of b, Δm% of equal)` for each seed where both have one. Against
/// equal weighting itself, equal's Δm% is 0 by definition.
fn paired_deltas(b: &BalancerRuns, equal: &BalancerRuns) -> Vec<(f64, f64)> {
    let delta = |runs: &BalancerRuns, seed: u64| {
        runs.runs
            .iter()
            .find(|r| r.seed == seed)
            .and_then(|r| match &r.outcome {
                Outcome::Trained { delta_m, .. } => *delta_m,
                Outcome::Failed(_) => None,
            })
    };
    b.runs
        .iter()
        .filter_map(|r| Some((delta(b, r.seed)?, delta(equal, r.seed)?)))
        .collect()
}

/// The balancer names `all` stands for, or the names as given.
pub fn expand(balancers: &[String]) -> Vec<String> {
    if balancers.len() == 1 && balancers[0] == "all" {
        mtl_losses::balance::methods()
            .iter()
            .map(|m| m.name.to_string())
            .collect()
    } else {
        balancers.to_vec()
    }
}

/// The configuration of `name` with default parameters, and a note when the
/// comparison chose a parameter: `fixed` takes the configuration's own fixed
/// weights when they fit, else weight 1 for every task.
fn balancer_config(
    name: &str,
    base: &RunConfig,
    tasks: usize,
) -> Result<(BalancerConfig, Option<String>)> {
    let config = BalancerConfig::default_for(name)
        .map_err(|e| CliError::usage("--balancers", e.to_string()))?;
    if let BalancerConfig::Fixed(_) = config {
        return Ok(match &base.train.balancer {
            BalancerConfig::Fixed(own) if own.weights.len() == tasks => (
                BalancerConfig::Fixed(own.clone()),
                Some(format!("the configuration's weights {:?}", own.weights)),
            ),
            _ => (
                BalancerConfig::Fixed(FixedConfig {
                    weights: vec![1.0; tasks],
                }),
                Some("weight 1 for every task (no weights given)".into()),
            ),
        });
    }
    Ok((config, None))
}

/// The tasks of `base`, resolved against its data (every task of the data
/// set when the configuration lists none).
fn task_configs(base: &RunConfig) -> Result<Vec<TaskConfig>> {
    Ok(
        prepare(&base.clone().validate(Path::new("<configuration>"))?)?
            .tasks
            .into_iter()
            .map(TaskConfig::from)
            .collect(),
    )
}

/// Trains `config` quietly into `dir`.
fn train(config: RunConfig, dir: PathBuf) -> Result<Measured> {
    let opts = RunOptions {
        out: dir,
        resume: false,
        stop_after: None,
        memory: None,
    };
    Ok(measure(fit(config, &opts)?))
}

/// What a comparison keeps of a run's summary.
fn measure(summary: RunSummary) -> Measured {
    let scores = summary
        .test
        .metrics
        .iter()
        .filter_map(|(name, value)| {
            let (task, metric) = name.rsplit_once('.')?;
            Some(Score::new(task, metric.parse::<Metric>().ok()?, *value))
        })
        .collect();
    Measured {
        scores,
        seconds_per_epoch: summary.seconds_per_epoch(),
        epochs: summary.epochs,
        run_dir: summary.run_dir,
    }
}

/// The message of an error that fails one run but not the comparison
/// (divergence, a balancer that does not fit the architecture); any other
/// error is returned.
fn run_failure(e: CliError) -> Result<String> {
    match e {
        CliError::Train(
            TrainError::Diverged { .. }
            | TrainError::Core(_)
            | TrainError::Losses(_)
            | TrainError::Mismatch { .. },
        ) => Ok(e.to_string()),
        other => Err(other),
    }
}

/// Δm% of `scores` over the metrics both they and `reference` report.
fn delta_against(scores: &[Score], reference: &[Score]) -> mtl_losses::Result<f64> {
    let shared: Vec<Score> = scores
        .iter()
        .filter(|s| value_of(reference, &s.task, s.metric).is_some())
        .cloned()
        .collect();
    let refs: Vec<Score> = shared
        .iter()
        .filter_map(|s| {
            value_of(reference, &s.task, s.metric).map(|v| Score::new(s.task.clone(), s.metric, v))
        })
        .collect();
    delta_m(&shared, &refs)
}

/// Trains one single-task model per task of `base` under `seed` (equal
/// weighting of one task is plain training) and joins their scores; the
/// seconds are the sum over the task models. A task whose run fails makes
/// the seed's baseline a failure, so that seed has no Δm%.
fn train_baselines(
    base: &RunConfig,
    tasks: &[TaskConfig],
    seed: u64,
    out: &Path,
    log: bool,
) -> Result<SeedRun> {
    let mut scores = Vec::new();
    let mut seconds = 0.0;
    let mut epochs = 0;
    for task in tasks {
        let mut cfg = base.clone();
        cfg.seed = seed;
        cfg.tasks = vec![task.clone()];
        cfg.train.balancer = BalancerConfig::default();
        let dir = out
            .join(format!("single-{}", task.name))
            .join(format!("seed-{seed}"));
        let m = match train(cfg, dir) {
            Ok(m) => m,
            Err(e) => {
                let message = format!("single-task {}: {}", task.name, run_failure(e)?);
                if log {
                    eprintln!("the baseline of seed {seed} failed: {message}");
                }
                return Ok(SeedRun {
                    seed,
                    outcome: Outcome::Failed(message),
                });
            }
        };
        if log {
            eprintln!(
                "trained the single-task baseline of {}, seed {seed} ({} s/epoch)",
                task.name,
                significant(m.seconds_per_epoch, 3)
            );
        }
        seconds += m.seconds_per_epoch;
        epochs = epochs.max(m.epochs);
        scores.extend(m.scores);
    }
    Ok(SeedRun {
        seed,
        outcome: Outcome::Trained {
            measured: Measured {
                scores,
                seconds_per_epoch: seconds,
                epochs,
                run_dir: out.to_path_buf(),
            },
            delta_m: None,
        },
    })
}

/// Trains `base` once per balancer and seed under `opts.out` (run
/// directories `<balancer>/seed-<s>`, baselines `single-<task>/seed-<s>`)
/// and computes each run's Δm%. A run that fails is reported in its row; a
/// bad configuration, an unknown balancer name or zero seeds stops the
/// comparison before any training.
pub fn compare(base: &RunConfig, opts: &CompareOptions, log: bool) -> Result<Comparison> {
    if opts.seeds == 0 {
        return Err(CliError::usage("--seeds", "at least one seed is needed"));
    }
    let mut names = expand(&opts.balancers);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    for name in &names {
        BalancerConfig::default_for(name)
            .map_err(|e| CliError::usage("--balancers", e.to_string()))?;
    }
    let tasks = task_configs(base)?;
    let configs = names
        .iter()
        .map(|name| balancer_config(name, base, tasks.len()))
        .collect::<Result<Vec<_>>>()?;
    let seeds: Vec<u64> = (0..opts.seeds).map(|i| base.seed.wrapping_add(i)).collect();
    let mut balancers: Vec<BalancerRuns> = names
        .iter()
        .zip(&configs)
        .map(|(name, (_, note))| BalancerRuns {
            balancer: name.clone(),
            notes: note.iter().map(|n| format!("{name}: {n}")).collect(),
            runs: Vec::new(),
        })
        .collect();
    let mut baselines = Vec::new();
    for &seed in &seeds {
        if opts.baselines {
            baselines.push(train_baselines(base, &tasks, seed, &opts.out, log)?);
        }
        for (runs, (config, _)) in balancers.iter_mut().zip(&configs) {
            let mut cfg = base.clone();
            cfg.seed = seed;
            cfg.train.balancer = config.clone();
            let name = &runs.balancer;
            let dir = opts.out.join(name).join(format!("seed-{seed}"));
            let outcome = match train(cfg, dir) {
                Ok(measured) => {
                    if log {
                        eprintln!(
                            "trained {name}, seed {seed} ({} s/epoch)",
                            significant(measured.seconds_per_epoch, 3)
                        );
                    }
                    Outcome::Trained {
                        measured,
                        delta_m: None,
                    }
                }
                Err(e) => {
                    let message = run_failure(e)?;
                    if log {
                        eprintln!("{name}, seed {seed} failed: {message}");
                    }
                    Outcome::Failed(message)
                }
            };
            runs.runs.push(SeedRun { seed, outcome });
        }
    }
    let reference = if opts.baselines {
        Reference::SingleTask
    } else if names.iter().any(|n| n == EQUAL) {
        Reference::Equal
    } else {
        Reference::Nothing
    };
    let mut comparison = Comparison {
        seeds,
        baselines,
        balancers,
        reference,
    };
    fill_delta_m(&mut comparison, log);
    Ok(comparison)
}

/// Sets every trained run's Δm% against the reference of its seed; a Δm%
/// that cannot be computed (a zero or non-finite score) stays empty with a
/// note saying why.
fn fill_delta_m(comparison: &mut Comparison, log: bool) {
    let source = match comparison.reference {
        Reference::SingleTask => comparison.baselines.clone(),
        Reference::Equal => comparison
            .balancers
            .iter()
            .find(|b| b.balancer == EQUAL)
            .map(|b| b.runs.clone())
            .unwrap_or_default(),
        Reference::Nothing => return,
    };
    let reference_of = |seed: u64| {
        source
            .iter()
            .find(|r| r.seed == seed)
            .and_then(|r| match &r.outcome {
                Outcome::Trained { measured, .. } => Some(measured.scores.clone()),
                Outcome::Failed(_) => None,
            })
    };
    for b in &mut comparison.balancers {
        for run in &mut b.runs {
            let Outcome::Trained { measured, delta_m } = &mut run.outcome else {
                continue;
            };
            let Some(reference) = reference_of(run.seed) else {
                continue;
            };
            match delta_against(&measured.scores, &reference) {
                Ok(d) => *delta_m = Some(d),
                Err(e) => {
                    let note = format!("{}: no Δm% for seed {}: {e}", b.balancer, run.seed);
                    if log {
                        eprintln!("{note}");
                    }
                    b.notes.push(note);
                }
            }
        }
    }
}

/// Writes `compare.csv` and the charts (see [`write_charts`]) into `dir`.
pub fn write(dir: &Path, comparison: &Comparison) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let csv = dir.join("compare.csv");
    fs::write(&csv, to_csv(comparison)).map_err(io(&csv))?;
    write_charts(dir, comparison)
}
