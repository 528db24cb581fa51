//! `mtl compare`: the same configuration, data and seed trained with several
//! balancers, and a table of test metrics with the multi-task score Δm%
//! against the first balancer.

use std::path::Path;

use mtl_losses::metric::{delta_m, Metric, Score};
use mtl_losses::BalancerConfig;
use serde::Serialize;

use crate::config::RunConfig;
use crate::error::{CliError, Result};
use crate::run::{fit, RunOptions, RunSummary};

/// One row of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct CompareRow {
    /// The balancer.
    pub balancer: String,
    /// Test metrics of its best epoch.
    pub metrics: Vec<(String, f64)>,
    /// Δm% against the first balancer (0 for the first).
    pub delta_m: f64,
}

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

/// Trains `config` once per balancer (default parameters) under `out` and
/// returns the table rows; prints them as text or JSON.
pub fn compare(config: &Path, balancers: &[String], out: &Path, json: bool) -> Result<()> {
    let base = RunConfig::load(config)?;
    let mut rows = Vec::new();
    let mut baseline: Option<Vec<Score>> = None;
    for name in balancers {
        let mut cfg = base.clone();
        cfg.train.balancer = BalancerConfig::default_for(name).map_err(|e| CliError::Config {
            path: "--balancers".into(),
            message: e.to_string(),
        })?;
        let opts = RunOptions {
            out: out.join(name),
            resume: false,
            quiet: true,
            stop_after: None,
        };
        let summary = fit(cfg, &opts)?;
        let s = scores(&summary);
        let dm = match &baseline {
            None => {
                baseline = Some(s.clone());
                0.0
            }
            Some(b) => delta_m(&s, b)?,
        };
        rows.push(CompareRow {
            balancer: name.clone(),
            metrics: summary.test.metrics.clone(),
            delta_m: dm,
        });
        if !json {
            eprintln!("trained {name}");
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if let Some(first) = rows.first() {
        print!("{:<14}", "balancer");
        for (n, _) in &first.metrics {
            print!(" {n:>22}");
        }
        println!(" {:>9}", "Δm%");
        for r in &rows {
            print!("{:<14}", r.balancer);
            for (_, v) in &r.metrics {
                print!(" {v:>22.4}");
            }
            println!(" {:>9.2}", r.delta_m);
        }
    }
    Ok(())
}
