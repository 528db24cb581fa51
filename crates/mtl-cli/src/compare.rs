//! `mtl compare`: one configuration trained with several balancers on the
//! same data, model and seed, optionally beside single-task baselines, and a
//! table of per-task test metrics, Δm% and seconds per epoch, written as
//! `compare.csv` and one bar chart per task.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use mtl_losses::metric::{delta_m, Metric, Score};
use mtl_losses::task::TaskConfig;
use mtl_losses::BalancerConfig;

use mtl_train::prepare::prepare;
use mtl_train::run::{self, RunOptions, RunSummary};
use mtl_train::{RunConfig, TrainError};

use crate::error::{io, CliError, Result};
use crate::plot::{self, Bars};

/// Trains one run of a comparison, quietly.
fn fit(config: RunConfig, opts: &RunOptions) -> mtl_train::Result<RunSummary> {
    run::fit(config, opts, &mut [])
}

/// How to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Balancer names (default parameters each), or the single name `all`.
    pub balancers: Vec<String>,
    /// Directory holding one run directory per balancer and the table.
    pub out: PathBuf,
    /// Also train one single-task model per task, the reference of Δm%.
    pub baselines: bool,
}

/// How one balancer fared.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The run finished; Δm% when baselines were trained.
    Trained {
        /// The run's summary.
        summary: Box<RunSummary>,
        /// Δm% against the single-task baselines.
        delta_m: Option<f64>,
    },
    /// The run could not be trained (diverged, or the balancer does not fit
    /// the architecture); the message says why.
    Failed(String),
}

/// One row of the comparison.
#[derive(Clone, Debug)]
pub struct CompareRow {
    /// The balancer.
    pub balancer: String,
    /// What happened.
    pub outcome: Outcome,
}

impl CompareRow {
    /// The row as `--json` prints it: the object of a single run (see
    /// [`RunSummary::to_json`]) or `{"balancer", "error"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.outcome {
            Outcome::Trained { summary, delta_m } => summary.to_json(*delta_m),
            Outcome::Failed(message) => {
                serde_json::json!({ "balancer": self.balancer, "error": message })
            }
        }
    }
}

/// The test scores of a run that `delta_m` can use.
fn scores(summary: &RunSummary) -> Vec<Score> {
    summary
        .test
        .metrics
        .iter()
        .filter_map(|(name, value)| {
            let (task, metric) = name.rsplit_once('.')?;
            Some(Score::new(task, metric.parse::<Metric>().ok()?, *value))
        })
        .collect()
}

/// Δm% over the metrics both runs report.
fn delta_against(summary: &RunSummary, baselines: &[Score]) -> Result<f64> {
    let key = |s: &Score| (s.task.clone(), s.metric);
    let mine = scores(summary);
    let shared: Vec<Score> = mine
        .iter()
        .filter(|s| baselines.iter().any(|b| key(b) == key(s)))
        .cloned()
        .collect();
    let refs: Vec<Score> = baselines
        .iter()
        .filter(|b| shared.iter().any(|s| key(s) == key(b)))
        .cloned()
        .collect();
    Ok(delta_m(&shared, &refs)?)
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

fn quiet(out: PathBuf) -> RunOptions {
    RunOptions {
        out,
        resume: false,
        stop_after: None,
    }
}

/// Trains one single-task model per task of `base` (equal weighting of one
/// task is plain training) and returns their test scores.
fn train_baselines(base: &RunConfig, out: &Path, log: bool) -> Result<Vec<Score>> {
    let tasks = prepare(base)?.tasks;
    let mut all = Vec::new();
    for task in tasks {
        let name = task.name().to_string();
        let mut cfg = base.clone();
        cfg.tasks = vec![TaskConfig::from(task)];
        cfg.train.balancer = BalancerConfig::default();
        let summary = fit(cfg, &quiet(out.join(format!("single-{name}"))))?;
        if log {
            eprintln!(
                "trained the single-task baseline of {name} ({:.1} s/epoch)",
                summary.seconds_per_epoch()
            );
        }
        all.extend(scores(&summary));
    }
    Ok(all)
}

/// Trains `base` once per balancer under `opts.out` and returns the rows.
/// A balancer whose run fails is reported in its row; a bad configuration or
/// an unknown balancer name stops the comparison before any training.
pub fn compare(base: &RunConfig, opts: &CompareOptions, log: bool) -> Result<Vec<CompareRow>> {
    let names = expand(&opts.balancers);
    let configs = names
        .iter()
        .map(|name| {
            let mut cfg = base.clone();
            cfg.train.balancer = BalancerConfig::default_for(name)
                .map_err(|e| CliError::usage("--balancers", e.to_string()))?;
            Ok(cfg)
        })
        .collect::<Result<Vec<_>>>()?;
    let baselines = if opts.baselines {
        Some(train_baselines(base, &opts.out, log)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for (name, cfg) in names.iter().zip(configs) {
        let outcome = match fit(cfg, &quiet(opts.out.join(name))) {
            Ok(summary) => {
                let delta_m = match &baselines {
                    Some(b) => Some(delta_against(&summary, b)?),
                    None => None,
                };
                if log {
                    eprintln!(
                        "trained {name} ({:.1} s/epoch)",
                        summary.seconds_per_epoch()
                    );
                }
                Outcome::Trained {
                    summary: Box::new(summary),
                    delta_m,
                }
            }
            Err(
                e @ (TrainError::Diverged { .. }
                | TrainError::Core(_)
                | TrainError::Losses(_)
                | TrainError::Mismatch { .. }),
            ) => {
                if log {
                    eprintln!("{name} failed: {e}");
                }
                Outcome::Failed(e.to_string())
            }
            Err(e) => return Err(e.into()),
        };
        rows.push(CompareRow {
            balancer: name.clone(),
            outcome,
        });
    }
    Ok(rows)
}

/// The metric columns of the table: every `task.metric` any row reports, in
/// the order first seen.
fn columns(rows: &[CompareRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for row in rows {
        if let Outcome::Trained { summary, .. } = &row.outcome {
            for (name, _) in &summary.test.metrics {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
    }
    out
}

fn value(summary: &RunSummary, column: &str) -> Option<f64> {
    summary
        .test
        .metrics
        .iter()
        .find(|(n, _)| n == column)
        .map(|(_, v)| *v)
}

/// The table as CSV: one row per balancer, one column per metric, then
/// `delta_m`, `seconds_per_epoch`, `epochs` and `error`.
pub fn to_csv(rows: &[CompareRow]) -> String {
    let cols = columns(rows);
    let mut out = String::from("balancer");
    for c in &cols {
        write!(out, ",{c}").expect("writing to a string");
    }
    out.push_str(",delta_m,seconds_per_epoch,epochs,error\n");
    for row in rows {
        out.push_str(&row.balancer);
        match &row.outcome {
            Outcome::Trained { summary, delta_m } => {
                for c in &cols {
                    out.push(',');
                    if let Some(v) = value(summary, c) {
                        write!(out, "{v}").expect("writing to a string");
                    }
                }
                let dm = delta_m.map(|d| d.to_string()).unwrap_or_default();
                writeln!(
                    out,
                    ",{dm},{},{},",
                    summary.seconds_per_epoch(),
                    summary.epochs
                )
                .expect("writing to a string");
            }
            Outcome::Failed(message) => {
                out.push_str(&",".repeat(cols.len() + 3));
                // Quote the message: it may hold commas.
                writeln!(out, ",\"{}\"", message.replace('"', "\"\""))
                    .expect("writing to a string");
            }
        }
    }
    out
}

/// The table as aligned text.
pub fn to_text(rows: &[CompareRow]) -> String {
    let cols = columns(rows);
    let width = cols.iter().map(|c| c.len()).max().unwrap_or(8).max(8);
    let name_width = rows
        .iter()
        .map(|r| r.balancer.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!("{:<name_width$}", "balancer");
    for c in &cols {
        write!(out, "  {c:>width$}").expect("writing to a string");
    }
    out.push_str(&format!("  {:>8}  {:>9}\n", "Δm%", "s/epoch"));
    for row in rows {
        write!(out, "{:<name_width$}", row.balancer).expect("writing to a string");
        match &row.outcome {
            Outcome::Trained { summary, delta_m } => {
                for c in &cols {
                    match value(summary, c) {
                        Some(v) => write!(out, "  {v:>width$.4}"),
                        None => write!(out, "  {:>width$}", "-"),
                    }
                    .expect("writing to a string");
                }
                let dm = delta_m.map_or("-".to_string(), |d| format!("{d:+.2}"));
                writeln!(out, "  {dm:>8}  {:>9.2}", summary.seconds_per_epoch())
                    .expect("writing to a string");
            }
            Outcome::Failed(message) => {
                writeln!(out, "  failed: {message}").expect("writing to a string");
            }
        }
    }
    out
}

/// Writes `compare.csv` and, per task, `compare-<task>.svg`/`.png`: a bar per
/// balancer for each of the task's test metrics.
pub fn write(dir: &Path, rows: &[CompareRow]) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let csv = dir.join("compare.csv");
    fs::write(&csv, to_csv(rows)).map_err(io(&csv))?;
    let cols = columns(rows);
    let mut tasks: Vec<&str> = Vec::new();
    for c in &cols {
        let task = c.rsplit_once('.').map_or(c.as_str(), |(t, _)| t);
        if !tasks.contains(&task) {
            tasks.push(task);
        }
    }
    for task in tasks {
        let groups: Vec<String> = cols
            .iter()
            .filter(|c| c.rsplit_once('.').is_some_and(|(t, _)| t == task))
            .cloned()
            .collect();
        let members = rows
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Trained { summary, .. } => Some((
                    r.balancer.clone(),
                    groups
                        .iter()
                        .map(|g| value(summary, g).unwrap_or(f64::NAN))
                        .collect(),
                )),
                Outcome::Failed(_) => None,
            })
            .collect();
        plot::save(
            &dir.join(format!("compare-{task}")),
            &Bars {
                title: format!("{task}: test metrics by balancer"),
                groups,
                members,
            },
        )?;
    }
    Ok(())
}
