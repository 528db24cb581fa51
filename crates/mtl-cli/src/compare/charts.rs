//! The charts of a comparison: Δm% as sorted horizontal bars with error
//! bars, and per task each metric as points with error bars beside the
//! single-task baseline.

use std::path::Path;

use crate::error::Result;
use crate::plot::{self, Interval, IntervalBars, IntervalPoints, PointPanel};

use super::stats::{signed_pm, Spread};
use super::Comparison;

/// File stem of the Δm% chart.
pub const DELTA_M_CHART: &str = "compare-delta-m";

fn interval(spread: &Spread) -> Interval {
    Interval {
        mean: spread.mean,
        std: spread.std,
    }
}

fn seeds_phrase(n: usize) -> String {
    if n == 1 {
        "1 seed".into()
    } else {
        format!("mean ± sd over {n} seeds")
    }
}

/// Writes, as SVG and PNG: `compare-delta-m` (when there is a Δm%), the
/// balancers best first, and `compare-<task>` for each task, one panel per
/// metric, the balancers in the same order.
pub fn write_charts(dir: &Path, comparison: &Comparison) -> Result<()> {
    let aggregates = comparison.aggregates();
    let n = comparison.seeds.len();
    let ranked: Vec<(String, Interval)> = aggregates
        .iter()
        .filter_map(|a| {
            let d = a.delta_m.as_ref()?;
            Some((format!("{}  {}", a.balancer, signed_pm(d)), interval(d)))
        })
        .collect();
    if !ranked.is_empty() {
        let against = match comparison.reference {
            super::Reference::SingleTask => "single-task baselines",
            _ => "equal weighting",
        };
        plot::save(
            &dir.join(DELTA_M_CHART),
            &IntervalBars {
                title: format!(
                    "Δm% against {against} ({}), higher is better",
                    seeds_phrase(n)
                ),
                x_label: "Δm% (bars: mean; whiskers: ± sd)".into(),
                rows: ranked,
            },
        )?;
    }
    let columns = comparison.columns();
    let baselines = comparison.baseline_metrics();
    let shown: Vec<_> = aggregates.iter().filter(|a| a.trained > 0).collect();
    let mut tasks: Vec<&str> = Vec::new();
    for (task, _) in &columns {
        if !tasks.contains(&task.as_str()) {
            tasks.push(task);
        }
    }
    for task in tasks {
        let panels = columns
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| t == task)
            .map(|(c, (_, metric))| PointPanel {
                x_label: if metric.higher_is_better() {
                    format!("{metric} (higher is better)")
                } else {
                    format!("{metric} (lower is better)")
                },
                points: shown
                    .iter()
                    .map(|a| a.metrics[c].as_ref().map(interval))
                    .collect(),
                baseline: baselines.get(c).and_then(|b| b.as_ref().map(interval)),
            })
            .collect();
        plot::save(
            &dir.join(format!("compare-{task}")),
            &IntervalPoints {
                title: format!("{task}: test metrics by balancer ({})", seeds_phrase(n)),
                rows: shown.iter().map(|a| a.balancer.clone()).collect(),
                point_label: format!("balancer: {}", seeds_phrase(n)),
                baseline_label: "single-task baseline (band: ± sd)".into(),
                panels,
            },
        )?;
    }
    Ok(())
}
