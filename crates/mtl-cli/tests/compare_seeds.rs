//! `mtl compare --seeds N`: per-seed and aggregated rows, Δm% per seed
//! against the same seed's baselines, the ranking, the paired comparison
//! with equal weighting, and `all` including `fixed` without weights.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use mtl_cli::compare::{
    self, BalancerRuns, Comparison, Measured, Outcome, Reference, SeedRun, Verdict,
};
use mtl_losses::metric::{Metric, Score};

/// The CSV holds values printed with Rust's shortest round-trip form, so a
/// mean recomputed from the per-seed rows agrees to rounding of the sums.
const RECOMPUTED: f64 = 1e-9;

/// A tiny configuration: Auto MPG (mpg regression, origin classification),
/// one hidden layer of 8 units, one epoch.
const TINY: &str = "seed = 5\n[data]\nbuiltin = \"autompg\"\n[model]\narch = \"hps\"\n\
[model.encoder]\nname = \"mlp\"\nhidden = [8]\n[train]\nepochs = 1\nbatch_size = 64\n";

fn mtl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mtl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tiny(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, TINY).unwrap();
    path
}

/// `(balancer, seed) -> column -> value` of a `compare.csv`, and its header.
type Table = (
    Vec<String>,
    BTreeMap<(String, String), BTreeMap<String, String>>,
);

fn read_csv(text: &str) -> Table {
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let mut rows = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.splitn(header.len(), ',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(cells.iter().map(|c| c.to_string()))
            .collect();
        rows.insert((cells[0].to_string(), cells[1].to_string()), row);
    }
    (header, rows)
}

fn number(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} = {:?}", row[column]))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= RECOMPUTED * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn three_seeds_give_per_seed_rows_and_means_and_stds_that_recompute() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(dir.path());
    let out = dir.path().join("cmp");
    let (code, stdout, err) = mtl(&[
        "compare",
        config.to_str().unwrap(),
        "--balancers",
        "equal,pcgrad,fixed",
        "--baselines",
        "--seeds",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (header, rows) = read_csv(&std::fs::read_to_string(out.join("compare.csv")).unwrap());
    let metrics: Vec<&String> = header[2..header.len() - 4].iter().collect();
    assert!(metrics.iter().any(|m| *m == "mpg.rmse"), "{header:?}");
    assert!(
        metrics.iter().any(|m| *m == "origin.accuracy"),
        "{header:?}"
    );
    let seeds = ["5", "6", "7"];
    for balancer in ["single-task", "equal", "pcgrad", "fixed"] {
        for seed in seeds.iter().chain(&["mean", "std"]) {
            assert!(
                rows.contains_key(&(balancer.to_string(), seed.to_string())),
                "{balancer} {seed}"
            );
        }
        let mut columns: Vec<&str> = metrics.iter().map(|m| m.as_str()).collect();
        columns.push("seconds_per_epoch");
        if balancer != "single-task" {
            columns.push("delta_m");
        }
        for column in columns {
            let values: Vec<f64> = seeds
                .iter()
                .map(|s| number(&rows[&(balancer.to_string(), s.to_string())], column))
                .collect();
            let mean = values.iter().sum::<f64>() / 3.0;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0;
            let row = |s: &str| &rows[&(balancer.to_string(), s.to_string())];
            assert!(
                close(number(row("mean"), column), mean),
                "{balancer} {column}"
            );
            assert!(
                close(number(row("std"), column), var.sqrt()),
                "{balancer} {column}"
            );
        }
    }
    // Δm% of each seed, recomputed from the CSV against that seed's baselines.
    for balancer in ["equal", "pcgrad", "fixed"] {
        for seed in seeds {
            let mine = &rows[&(balancer.to_string(), seed.to_string())];
            let base = &rows[&("single-task".to_string(), seed.to_string())];
            let terms: Vec<f64> = metrics
                .iter()
                .map(|m| {
                    let (_, metric) = m.rsplit_once('.').unwrap();
                    let sign = if metric.parse::<Metric>().unwrap().higher_is_better() {
                        1.0
                    } else {
                        -1.0
                    };
                    let (x, b) = (number(mine, m), number(base, m));
                    sign * (x - b) / b * 100.0
                })
                .collect();
            let expected = terms.iter().sum::<f64>() / terms.len() as f64;
            assert!(
                close(number(mine, "delta_m"), expected),
                "{balancer} seed {seed}: {} vs {expected}",
                mine["delta_m"]
            );
        }
    }
    // The table: ranked rows with Δm% non-increasing and readable seconds.
    let ranked: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|t| t.first().is_some_and(|r| r.parse::<usize>().is_ok()))
        .collect();
    assert_eq!(ranked.len(), 3, "{stdout}");
    let mut previous = f64::INFINITY;
    for (i, tokens) in ranked.iter().enumerate() {
        assert_eq!(tokens[0], (i + 1).to_string(), "{stdout}");
        assert_eq!(tokens[tokens.len() - 1], "3/3", "{stdout}");
        let seconds = tokens[tokens.len() - 2];
        assert!(
            seconds.parse::<f64>().unwrap() > 0.0
                && seconds.chars().any(|c| ('1'..='9').contains(&c)),
            "{seconds}: {stdout}"
        );
        // `+1.23 ± 0.45 s/epoch seeds`: the mean Δm% is 5th from the end.
        let delta: f64 = tokens[tokens.len() - 5].parse().unwrap();
        assert!(delta <= previous, "{stdout}");
        previous = delta;
    }
    assert!(stdout.contains("3 seeds (5, 6, 7)"), "{stdout}");
    assert!(stdout.contains("against equal weighting"), "{stdout}");
    assert!(
        stdout.contains("fixed: weight 1 for every task"),
        "{stdout}"
    );
    for file in [
        "compare-delta-m.png",
        "compare-delta-m.svg",
        "compare-mpg.png",
        "compare-origin.svg",
        "pcgrad/seed-7/summary.json",
        "single-origin/seed-6/summary.json",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
}

#[test]
fn all_trains_every_method_with_its_defaults_and_fixed_with_unit_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(dir.path());
    let out = dir.path().join("cmp");
    let (code, stdout, err) = mtl(&[
        "compare",
        config.to_str().unwrap(),
        "--balancers",
        "all",
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON array");
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["balancer"].as_str().unwrap())
        .collect();
    let methods: Vec<&str> = mtl_losses::balance::methods()
        .iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, methods);
    let fixed = rows.iter().find(|r| r["balancer"] == "fixed").unwrap();
    assert_eq!(fixed["trained_seeds"], 2, "{fixed}");
    assert!(
        fixed["notes"][0].as_str().unwrap().contains("weight 1"),
        "{fixed}"
    );
    // Without baselines Δm% is measured against equal weighting, which is
    // therefore 0 under every seed.
    let equal = rows.iter().find(|r| r["balancer"] == "equal").unwrap();
    assert_eq!(equal["delta_m"], 0.0, "{equal}");
    assert_eq!(equal["delta_m_reference"], "equal", "{equal}");
    // Ranks follow the mean Δm%, best first.
    let mut ranked: Vec<(u64, f64)> = rows
        .iter()
        .filter(|r| r["rank"].is_u64())
        .map(|r| (r["rank"].as_u64().unwrap(), r["delta_m"].as_f64().unwrap()))
        .collect();
    ranked.sort_by_key(|r| r.0);
    assert_eq!(
        ranked.len(),
        rows.iter().filter(|r| r["trained_seeds"] != 0).count()
    );
    for (i, pair) in ranked.windows(2).enumerate() {
        assert_eq!(pair[0].0, i as u64 + 1);
        assert!(pair[0].1 >= pair[1].1, "{ranked:?}");
    }
    for r in rows
        .iter()
        .filter(|r| r["balancer"] != "equal" && r["trained_seeds"] == 2)
    {
        let paired = &r["vs_equal"];
        assert_eq!(paired["paired_seeds"], 2, "{r}");
        assert_eq!(paired["critical_t"], 12.706, "{r}");
        assert_eq!(r["runs"].as_array().unwrap().len(), 2, "{r}");
    }
}

fn run(seed: u64, accuracy: f64, seconds: f64, delta_m: Option<f64>) -> SeedRun {
    SeedRun {
        seed,
        outcome: Outcome::Trained {
            measured: Measured {
                scores: vec![Score::new("a", Metric::Accuracy, accuracy)],
                seconds_per_epoch: seconds,
                epochs: 1,
                run_dir: PathBuf::from("runs"),
            },
            delta_m,
        },
    }
}

fn balancer(name: &str, runs: Vec<SeedRun>) -> BalancerRuns {
    BalancerRuns {
        balancer: name.into(),
        notes: Vec::new(),
        runs,
    }
}

#[test]
fn aggregates_rank_by_mean_delta_m_and_pair_each_seed_with_equal() {
    let comparison = Comparison {
        seeds: vec![0, 1, 2],
        baselines: Vec::new(),
        balancers: vec![
            balancer(
                "equal",
                vec![
                    run(0, 0.8, 0.001, Some(1.0)),
                    run(1, 0.8, 0.001, Some(2.0)),
                    run(2, 0.8, 0.001, Some(3.0)),
                ],
            ),
            balancer(
                "worse",
                vec![
                    run(0, 0.7, 0.001, Some(0.0)),
                    run(1, 0.7, 0.001, Some(1.1)),
                    run(2, 0.7, 0.001, Some(1.9)),
                ],
            ),
            balancer(
                "better",
                vec![
                    run(0, 0.9, 0.001, Some(3.0)),
                    SeedRun {
                        seed: 1,
                        outcome: Outcome::Failed("diverged".into()),
                    },
                    run(2, 0.9, 0.001, Some(5.0)),
                ],
            ),
        ],
        reference: Reference::SingleTask,
    };
    let aggregates = comparison.aggregates();
    let order: Vec<&str> = aggregates.iter().map(|a| a.balancer.as_str()).collect();
    assert_eq!(order, ["better", "equal", "worse"]);
    let ranks: Vec<Option<usize>> = aggregates.iter().map(|a| a.rank).collect();
    assert_eq!(ranks, [Some(1), Some(2), Some(3)]);
    let better = &aggregates[0];
    assert_eq!(better.trained, 2);
    assert!((better.delta_m.unwrap().mean - 4.0).abs() < RECOMPUTED);
    // Paired with equal on seeds 0 and 2: differences 2 and 2, no spread.
    let p = better.vs_equal.unwrap();
    assert_eq!(p.difference.n, 2);
    assert_eq!(p.verdict, Verdict::Better);
    // Differences −1, −0.9, −1.1: mean −1, sd 0.1, t = −1 / (0.1 / √3).
    let p = aggregates[2].vs_equal.unwrap();
    assert!((p.t.unwrap() + 3f64.sqrt() * 10.0).abs() < 1e-9, "{p:?}");
    assert_eq!(p.verdict, Verdict::Worse);
    assert!(
        aggregates[1].vs_equal.is_none(),
        "equal is not paired with itself"
    );
    let text = compare::to_text(&comparison);
    assert!(
        text.contains("0.00100"),
        "a 1 ms epoch keeps its digits:\n{text}"
    );
    assert!(text.contains("better, seed 1: diverged"), "{text}");
    let csv = compare::to_csv(&comparison);
    assert!(csv.contains("better,1,,,,,diverged"), "{csv}");
}

#[test]
fn without_baselines_or_equal_weighting_the_table_says_it_is_not_ranked() {
    let comparison = Comparison {
        seeds: vec![0],
        baselines: Vec::new(),
        balancers: vec![
            balancer("pcgrad", vec![run(0, 0.8, 0.002, None)]),
            balancer("mgda", vec![run(0, 0.9, 0.002, None)]),
        ],
        reference: Reference::Nothing,
    };
    let text = compare::to_text(&comparison);
    assert!(text.contains("not ranked"), "{text}");
    let aggregates = comparison.aggregates();
    let order: Vec<&str> = aggregates.iter().map(|a| a.balancer.as_str()).collect();
    assert_eq!(order, ["pcgrad", "mgda"], "the order given");
    assert!(aggregates.iter().all(|a| a.rank.is_none()));
}
