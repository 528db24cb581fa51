//! Every configuration in the workspace's `examples/` folder parses,
//! validates, trains, and reaches the quality its header states.

use std::path::{Path, PathBuf};

use mtl_train::{RunConfig, RunOptions, RunSummary};

/// Trains a run directory without hooks.
fn fit(config: RunConfig, opts: &RunOptions) -> mtl_train::Result<mtl_train::RunSummary> {
    mtl_train::run::fit(config, opts, &mut [])
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn examples() -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    out
}

fn metric(summary: &RunSummary, name: &str) -> f64 {
    summary
        .test
        .metrics
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no test metric {name}: {:?}", summary.test.metrics))
        .1
}

/// Trains `examples/<file>` (with `edit` applied) and checks each
/// `(metric, bound, higher_is_better)`; the bounds are those stated in the
/// file's header.
fn check(file: &str, edit: impl FnOnce(&mut RunConfig), bounds: &[(&str, f64, bool)]) {
    let path = examples_dir().join(file);
    let header = std::fs::read_to_string(&path).unwrap();
    assert!(
        header.contains("Stated quality"),
        "{file} states no quality"
    );
    let mut config = RunConfig::load(&path).unwrap().into_inner();
    edit(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out: dir.path().to_path_buf(),
        resume: false,
        stop_after: None,
        memory: None,
    };
    let summary = fit(config, &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
    for &(name, bound, higher) in bounds {
        let v = metric(&summary, name);
        eprintln!("{file}: {name} = {v:.4} (bound {bound})");
        if higher {
            assert!(v >= bound, "{file}: {name} = {v} < {bound}");
        } else {
            assert!(v <= bound, "{file}: {name} = {v} > {bound}");
        }
    }
}

#[test]
fn every_example_configuration_is_valid() {
    let all = examples();
    assert!(all.len() >= 6, "found {all:?}");
    for path in all {
        RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn autompg_reaches_its_stated_quality() {
    check(
        "autompg.toml",
        |_| {},
        &[("mpg.mae", 3.0, false), ("origin.accuracy", 0.70, true)],
    );
}

#[test]
fn the_csv_example_reaches_its_stated_quality() {
    check(
        "cars.toml",
        |_| {},
        &[("mpg.mae", 3.0, false), ("origin.accuracy", 0.70, true)],
    );
}

#[test]
fn digits_with_clustering_reach_their_stated_quality() {
    check(
        "digits.toml",
        |_| {},
        &[("digit.accuracy", 0.95, true), ("groups.nmi", 0.40, true)],
    );
}

#[test]
fn the_gradnorm_toy_reaches_its_stated_quality() {
    check(
        "gradnorm_toy.toml",
        |_| {},
        &[("task_0.rmse", 0.8, false), ("task_1.rmse", 65.0, false)],
    );
}

#[test]
fn linnerud_reaches_its_stated_quality() {
    check(
        "linnerud.toml",
        |_| {},
        &[
            ("weight.mae", 30.0, false),
            ("waist.mae", 3.0, false),
            ("pulse.mae", 6.0, false),
        ],
    );
}

#[test]
fn multimnist_reaches_its_stated_quality_in_three_short_epochs() {
    check(
        "multimnist.toml",
        |c| {
            c.data.limit = std::num::NonZeroUsize::new(6000);
            c.train.epochs = 3;
        },
        &[("left.accuracy", 0.50, true)],
    );
}
