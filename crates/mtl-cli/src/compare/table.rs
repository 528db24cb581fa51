//! The comparison as text (the table `mtl compare` prints), as CSV
//! (`compare.csv`) and as JSON (`mtl compare --json`).

use std::fmt::Write as _;

use mtl_losses::metric::Metric;
use serde_json::{json, Map, Value};

use super::stats::{decimals, mean_pm, signed_pm, significant, Spread};
use super::{Aggregate, BalancerRuns, Comparison, Outcome, Reference, SeedRun, EQUAL};

/// The name of the baselines' rows.
pub const SINGLE_TASK: &str = "single-task";

/// Significant digits of seconds per epoch: a 1 ms epoch prints `0.00100`.
const SECONDS_DIGITS: usize = 3;

fn column_name((task, metric): &(String, Metric)) -> String {
    format!("{task}.{metric}")
}

/// Significant digits of the largest mean or deviation of a metric column;
/// every cell of the column shows as many decimals.
const METRIC_DIGITS: usize = 4;

/// The decimals of each metric column: those that show [`METRIC_DIGITS`]
/// significant digits of the column's largest mean or deviation.
fn column_decimals(
    baseline: &[Option<Spread>],
    aggregates: &[Aggregate],
    columns: usize,
) -> Vec<usize> {
    (0..columns)
        .map(|c| {
            let largest = aggregates
                .iter()
                .filter_map(|a| a.metrics.get(c).copied().flatten())
                .chain(baseline.get(c).copied().flatten())
                .flat_map(|s| [s.mean.abs(), s.std.unwrap_or(0.0)])
                .filter(|m| m.is_finite())
                .fold(0.0, f64::max);
            decimals(largest, METRIC_DIGITS)
        })
        .collect()
}

fn cells(spreads: &[Option<Spread>], places: &[usize]) -> Vec<String> {
    spreads
        .iter()
        .zip(places)
        .map(|(s, &p)| s.as_ref().map_or("-".into(), |s| mean_pm(s, p)))
        .collect()
}

/// Lines of cells, padded so that every column lines up: the first two
/// columns (rank, name) to the left, the others to the right.
fn align(grid: &[Vec<String>]) -> String {
    let columns = grid.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            grid.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in grid {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if c < 2 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn seed_list(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn failures(runs: &[SeedRun]) -> impl Iterator<Item = (u64, &str)> {
    runs.iter().filter_map(|r| match &r.outcome {
        Outcome::Failed(message) => Some((r.seed, message.as_str())),
        Outcome::Trained { .. } => None,
    })
}

/// The table as aligned text: a header saying over which seeds and against
/// what, one row per balancer in rank order (the single-task baselines
/// first), the paired comparisons with equal weighting, and notes.
pub fn to_text(comparison: &Comparison) -> String {
    let columns = comparison.columns();
    let aggregates = comparison.aggregates();
    let n = comparison.seeds.len();
    let mut out = String::new();
    let seeds = if n == 1 {
        format!("1 seed ({})", comparison.seeds[0])
    } else {
        format!(
            "{n} seeds ({}): mean ± standard deviation",
            seed_list(&comparison.seeds)
        )
    };
    writeln!(out, "test scores over {seeds}").expect("writing to a string");
    match comparison.reference {
        Reference::Nothing => writeln!(
            out,
            "not ranked: Δm% needs --baselines or equal weighting among the balancers; rows in the order given"
        ),
        reference => writeln!(
            out,
            "Δm% against {}; ranked by mean Δm% (higher is better)",
            reference.describe()
        ),
    }
    .expect("writing to a string");
    out.push('\n');
    let mut header = vec!["rank".to_string(), "balancer".to_string()];
    header.extend(columns.iter().map(column_name));
    header.extend(["Δm%".into(), "s/epoch".into(), "seeds".into()]);
    let mut grid = vec![header];
    let baseline = comparison.baseline_metrics();
    let places = column_decimals(&baseline, &aggregates, columns.len());
    if !comparison.baselines.is_empty() {
        let trained = comparison
            .baselines
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Trained { .. }))
            .count();
        let seconds: Vec<f64> = comparison
            .baselines
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Trained { measured, .. } => Some(measured.seconds_per_epoch),
                Outcome::Failed(_) => None,
            })
            .collect();
        let mut row = vec![String::new(), SINGLE_TASK.to_string()];
        row.extend(cells(&baseline, &places));
        row.push("0".into());
        row.push(Spread::of(&seconds).map_or("-".into(), |s| significant(s.mean, SECONDS_DIGITS)));
        row.push(format!("{trained}/{n}"));
        grid.push(row);
    }
    for a in &aggregates {
        let mut row = vec![
            a.rank.map_or("-".into(), |r| r.to_string()),
            a.balancer.clone(),
        ];
        if a.trained == 0 {
            row.push("failed under every seed (see notes)".into());
            grid.push(row);
            continue;
        }
        row.extend(cells(&a.metrics, &places));
        row.push(a.delta_m.as_ref().map_or("-".into(), signed_pm));
        row.push(
            a.seconds_per_epoch
                .map_or("-".into(), |s| significant(s.mean, SECONDS_DIGITS)),
        );
        row.push(format!("{}/{n}", a.trained));
        grid.push(row);
    }
    out.push_str(&align(&grid));
    if !comparison.baselines.is_empty() {
        out.push_str("(single-task s/epoch: the sum over the task models)\n");
    }
    out.push_str(&paired_text(comparison, &aggregates));
    let mut notes: Vec<String> = Vec::new();
    for (seed, message) in failures(&comparison.baselines) {
        notes.push(format!(
            "{SINGLE_TASK}, seed {seed}: {message} (no Δm% for this seed)"
        ));
    }
    for b in &comparison.balancers {
        notes.extend(b.notes.iter().cloned());
        for (seed, message) in failures(&b.runs) {
            notes.push(format!("{}, seed {seed}: {message}", b.balancer));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for note in notes {
            writeln!(out, "  {note}").expect("writing to a string");
        }
    }
    out
}

/// The paired comparisons with equal weighting, one line per balancer.
fn paired_text(comparison: &Comparison, aggregates: &[Aggregate]) -> String {
    if comparison.reference == Reference::Nothing {
        return String::new();
    }
    if !comparison.balancers.iter().any(|b| b.balancer == EQUAL) {
        return "\nno paired comparison: equal weighting is not among the balancers\n".into();
    }
    let mut out = String::from(
        "\nagainst equal weighting, seed by seed: the difference in Δm% (balancer − equal), \
         mean ± sd over the seeds both trained;\npaired t = mean / (sd / √n), larger than the \
         spread when |t| exceeds the two-sided 5 % critical value of Student's t (n − 1 df)\n",
    );
    let mut grid = Vec::new();
    for a in aggregates {
        let Some(p) = &a.vs_equal else {
            continue;
        };
        let t = match (p.t, p.critical) {
            (Some(t), Some(c)) => format!("t = {t:+.2}, critical {c:.3}"),
            _ => "t: -".into(),
        };
        grid.push(vec![
            String::new(),
            a.balancer.clone(),
            signed_pm(&p.difference),
            t,
            format!("better in {}/{} seeds", p.wins, p.difference.n),
            p.verdict.as_str().to_string(),
        ]);
    }
    out.push_str(&align(&grid));
    out
}

/// A CSV cell holding `value` exactly (the shortest form that reads back to
/// the same number; scientific notation for very small or large values),
/// empty when there is none.
fn cell(value: Option<f64>) -> String {
    match value {
        Some(v) if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e15) => format!("{v:e}"),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// A CSV field quoted when it holds a comma, a quote or a line break.
fn quoted(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Appends one balancer's per-seed rows, then its `mean` and `std` rows
/// (sample standard deviation; empty with fewer than two values).
fn csv_rows(out: &mut String, name: &str, runs: &[SeedRun], columns: &[(String, Metric)]) {
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); columns.len() + 3];
    for run in runs {
        write!(out, "{},{}", quoted(name), run.seed).expect("writing to a string");
        match &run.outcome {
            Outcome::Trained { measured, delta_m } => {
                let row: Vec<Option<f64>> = columns
                    .iter()
                    .map(|(task, metric)| measured.value(task, *metric))
                    .chain([
                        *delta_m,
                        Some(measured.seconds_per_epoch),
                        Some(measured.epochs as f64),
                    ])
                    .collect();
                for (i, v) in row.iter().enumerate() {
                    if let Some(v) = v {
                        values[i].push(*v);
                    }
                    write!(out, ",{}", cell(*v)).expect("writing to a string");
                }
                out.push_str(",\n");
            }
            Outcome::Failed(message) => {
                out.push_str(&",".repeat(columns.len() + 3));
                writeln!(out, ",{}", quoted(message)).expect("writing to a string");
            }
        }
    }
    let spreads: Vec<Option<Spread>> = values.iter().map(|v| Spread::of(v)).collect();
    for (label, pick) in [
        (
            "mean",
            (|s: &Spread| Some(s.mean)) as fn(&Spread) -> Option<f64>,
        ),
        ("std", |s: &Spread| s.std),
    ] {
        write!(out, "{},{label}", quoted(name)).expect("writing to a string");
        for s in &spreads {
            write!(out, ",{}", cell(s.as_ref().and_then(pick))).expect("writing to a string");
        }
        out.push_str(",\n");
    }
}

/// The comparison as CSV: columns `balancer,seed`, one per `task.metric`,
/// then `delta_m,seconds_per_epoch,epochs,error`. For each balancer in rank
/// order (the single-task baselines first, whose seconds are the sum over
/// the task models): one row per seed, then a row whose `seed` is `mean`
/// and one whose `seed` is `std` (sample standard deviation over the
/// seeds that trained).
pub fn to_csv(comparison: &Comparison) -> String {
    let columns = comparison.columns();
    let mut out = String::from("balancer,seed");
    for c in &columns {
        write!(out, ",{}", column_name(c)).expect("writing to a string");
    }
    out.push_str(",delta_m,seconds_per_epoch,epochs,error\n");
    if !comparison.baselines.is_empty() {
        csv_rows(&mut out, SINGLE_TASK, &comparison.baselines, &columns);
    }
    for a in comparison.aggregates() {
        if let Some(b) = comparison
            .balancers
            .iter()
            .find(|b| b.balancer == a.balancer)
        {
            csv_rows(&mut out, &b.balancer, &b.runs, &columns);
        }
    }
    out
}

/// `{task: {metric: value}}` for the columns that have a value.
fn by_task(columns: &[(String, Metric)], values: impl Iterator<Item = Option<f64>>) -> Value {
    let mut tasks = Map::new();
    for ((task, metric), value) in columns.iter().zip(values) {
        let Some(v) = value else { continue };
        let entry = tasks
            .entry(task.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(metric.to_string(), json!(v));
        }
    }
    Value::Object(tasks)
}

fn run_json(run: &SeedRun, columns: &[(String, Metric)]) -> Value {
    match &run.outcome {
        Outcome::Trained { measured, delta_m } => json!({
            "seed": run.seed,
            "tasks": by_task(columns, columns.iter().map(|(t, m)| measured.value(t, *m))),
            "delta_m": delta_m,
            "seconds_per_epoch": measured.seconds_per_epoch,
            "epochs": measured.epochs,
            "run_dir": measured.run_dir.to_string_lossy(),
        }),
        Outcome::Failed(message) => json!({ "seed": run.seed, "error": message }),
    }
}

fn balancer_json(
    a: &Aggregate,
    b: &BalancerRuns,
    columns: &[(String, Metric)],
    reference: Reference,
) -> Value {
    let mut out = Map::new();
    out.insert("balancer".into(), json!(a.balancer));
    out.insert("rank".into(), json!(a.rank));
    out.insert("trained_seeds".into(), json!(a.trained));
    if a.trained == 0 {
        let message = failures(&b.runs).next().map_or("", |(_, m)| m);
        out.insert("error".into(), json!(message));
    } else {
        out.insert(
            "tasks".into(),
            by_task(columns, a.metrics.iter().map(|s| s.map(|s| s.mean))),
        );
        out.insert(
            "std".into(),
            by_task(columns, a.metrics.iter().map(|s| s.and_then(|s| s.std))),
        );
        out.insert(
            "seconds_per_epoch".into(),
            json!(a.seconds_per_epoch.map(|s| s.mean)),
        );
        out.insert("epochs".into(), json!(a.epochs.map(|s| s.mean)));
    }
    if let Some(d) = a.delta_m {
        out.insert("delta_m".into(), json!(d.mean));
        out.insert("delta_m_std".into(), json!(d.std));
        let against = match reference {
            Reference::SingleTask => SINGLE_TASK,
            _ => EQUAL,
        };
        out.insert("delta_m_reference".into(), json!(against));
    }
    if let Some(p) = a.vs_equal {
        out.insert(
            "vs_equal".into(),
            json!({
                "difference": p.difference.mean,
                "difference_std": p.difference.std,
                "paired_seeds": p.difference.n,
                "better_seeds": p.wins,
                "t": p.t.filter(|t| t.is_finite()),
                "critical_t": p.critical,
                "verdict": p.verdict.as_str(),
            }),
        );
    }
    out.insert(
        "runs".into(),
        b.runs.iter().map(|r| run_json(r, columns)).collect(),
    );
    out.insert("notes".into(), json!(b.notes));
    Value::Object(out)
}

/// The comparison as `--json` prints it: one object per balancer, in the
/// order given, with its `rank`, the means (`tasks`, `delta_m`,
/// `seconds_per_epoch`, `epochs`), the standard deviations (`std`,
/// `delta_m_std`), the paired comparison with equal weighting (`vs_equal`),
/// and one object per seed (`runs`); a balancer that failed under every
/// seed has an `error` instead of scores.
pub fn to_json(comparison: &Comparison) -> Value {
    let columns = comparison.columns();
    let aggregates = comparison.aggregates();
    comparison
        .balancers
        .iter()
        .filter_map(|b| {
            let a = aggregates.iter().find(|a| a.balancer == b.balancer)?;
            Some(balancer_json(a, b, &columns, comparison.reference))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_read_back_to_the_same_number() {
        for v in [
            0.0,
            1.5,
            -2.25e-16,
            1.3597399555105182e-16,
            0.0046868597,
            3e20,
        ] {
            let text = cell(Some(v));
            assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
            assert!(text.len() < 26, "{text}");
        }
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(1.0e-16)), "1e-16");
    }
}
