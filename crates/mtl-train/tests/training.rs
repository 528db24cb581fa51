//! End-to-end runs of the training loop: accuracy reached, every kind of
//! balancer requirement, bit-identical resume, damaged checkpoints and
//! divergence.

use std::path::Path;

use mtl_train::{RunConfig, RunOptions, TrainError};

/// Trains a run directory without hooks.
fn fit(config: RunConfig, opts: &RunOptions) -> mtl_train::Result<mtl_train::RunSummary> {
    mtl_train::run::fit(config, opts, &mut [])
}

/// Digit classification plus 10-group clustering on the bundled 8x8 digits
/// with an MLP trunk: small enough to train in seconds.
fn digits_config(balancer: &str, epochs: usize) -> RunConfig {
    let text = format!(
        r#"
seed = 3
[data]
builtin = "digits"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [64, 32]
[train]
epochs = {epochs}
batch_size = 32
optimizer = {{ name = "adam", lr = 3e-3 }}
balancer = {{ name = "{balancer}" }}
"#
    );
    RunConfig::parse(&text, Path::new("digits.toml")).unwrap()
}

fn opts(dir: &Path) -> RunOptions {
    RunOptions {
        out: dir.to_path_buf(),
        resume: false,
        stop_after: None,
        memory: None,
    }
}

fn metric(summary: &mtl_train::RunSummary, name: &str) -> f64 {
    summary
        .test
        .metrics
        .iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
}

#[test]
fn digits_reach_the_stated_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let summary = fit(digits_config("equal", 12), &opts(dir.path())).unwrap();
    let acc = metric(&summary, "digit.accuracy");
    eprintln!("digits test accuracy {acc:.4}");
    assert!(acc >= 0.93, "digit test accuracy {acc}");
    for file in [
        "config.toml",
        "metrics.csv",
        "summary.json",
        "best/params.safetensors",
    ] {
        assert!(dir.path().join(file).exists(), "{file} is missing");
    }
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13, "a header and one row per epoch");
}

#[test]
fn every_kind_of_balancer_requirement_trains() {
    // losses only, last shared layer, shared parameters, representation,
    // and a balancer that looks at the losses after the step.
    for name in [
        "uncertainty",
        "gradnorm",
        "pcgrad",
        "mgda-ub",
        "famo",
        "cagrad",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let summary = fit(digits_config(name, 3), &opts(dir.path()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let acc = metric(&summary, "digit.accuracy");
        eprintln!("{name}: digit accuracy {acc:.4} after 3 epochs");
        // Chance is 0.10. Three epochs with the clustering task competing for
        // the trunk is short; the bound checks that each gradient path trains
        // the shared parameters, not which balancer is best.
        assert!(acc >= 0.5, "{name}: digit accuracy {acc} after 3 epochs");
    }
}

fn params(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("best/params.safetensors")).unwrap()
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    for balancer in ["uncertainty", "pcgrad"] {
        let whole = tempfile::tempdir().unwrap();
        let a = fit(digits_config(balancer, 4), &opts(whole.path())).unwrap();
        let parts = tempfile::tempdir().unwrap();
        let mut first = opts(parts.path());
        first.stop_after = Some(2);
        fit(digits_config(balancer, 4), &first).unwrap();
        let mut rest = opts(parts.path());
        rest.resume = true;
        let b = fit(digits_config(balancer, 4), &rest).unwrap();
        assert_eq!(
            params(whole.path()),
            params(parts.path()),
            "{balancer}: parameters differ"
        );
        assert_eq!(a.test, b.test, "{balancer}: test scores differ");
        let csv = |d: &Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
        // Without the wall times (`seconds`, `relations_seconds`).
        let strip = |s: String| {
            s.lines()
                .map(|l| {
                    l.split(',')
                        .enumerate()
                        .filter(|(i, _)| *i != 3 && *i != 4)
                        .map(|(_, c)| c)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strip(csv(whole.path())),
            strip(csv(parts.path())),
            "{balancer}: histories differ (timing aside)"
        );
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = opts(dir.path());
    first.stop_after = Some(2);
    fit(digits_config("equal", 3), &first).unwrap();
    let newest = dir.path().join("ckpt-00002/params.safetensors");
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&newest, bytes).unwrap();
    let mut rest = opts(dir.path());
    rest.resume = true;
    let summary = fit(digits_config("equal", 3), &rest).unwrap();
    assert_eq!(summary.epochs, 3);
    // The damaged checkpoint was refused by its checksum, so epoch 2 was redone.
    let whole = tempfile::tempdir().unwrap();
    fit(digits_config("equal", 3), &opts(whole.path())).unwrap();
    assert_eq!(params(whole.path()), params(dir.path()));
}

#[test]
fn a_run_stopped_before_best_was_written_resumes_to_the_same_end() {
    // Epoch 2 is the best; the run stops after writing `ckpt-00002` and
    // before `best` (here, in the middle of replacing it: `best` renamed
    // away, the new one not yet in place). Resuming rewrites `best` from
    // the newest checkpoint.
    let whole = tempfile::tempdir().unwrap();
    let a = fit(digits_config("equal", 2), &opts(whole.path())).unwrap();
    assert_eq!(a.best_epoch, 2, "the test needs epoch 2 to be the best");
    let dir = tempfile::tempdir().unwrap();
    fit(digits_config("equal", 2), &opts(dir.path())).unwrap();
    let best = dir.path().join("best");
    std::fs::rename(&best, dir.path().join(".best.old")).unwrap();
    std::fs::remove_file(dir.path().join("summary.json")).unwrap();
    let mut rest = opts(dir.path());
    rest.resume = true;
    let b = fit(digits_config("equal", 2), &rest).unwrap();
    assert_eq!(params(whole.path()), params(dir.path()));
    assert_eq!((a.best_epoch, a.test), (b.best_epoch, b.test));
}

#[test]
fn a_run_stopped_before_its_last_reports_resumes_to_every_report() {
    // The run stops after writing the last epoch's checkpoint and before
    // that epoch's reports: `metrics.csv` holds one epoch less and
    // `relations.json` is missing. Resuming has no epoch left to train and
    // must still end with both, as the uninterrupted run does.
    let whole = tempfile::tempdir().unwrap();
    fit(digits_config("equal", 2), &opts(whole.path())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fit(digits_config("equal", 2), &opts(dir.path())).unwrap();
    let metrics = dir.path().join("metrics.csv");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let first_epoch: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&metrics, first_epoch.join("\n") + "\n").unwrap();
    std::fs::remove_file(dir.path().join("relations.json")).unwrap();
    let mut rest = opts(dir.path());
    rest.resume = true;
    fit(digits_config("equal", 2), &rest).unwrap();
    // Every column but the wall times.
    let columns = |d: &Path| {
        std::fs::read_to_string(d.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| *i != 3 && *i != 4)
                    .map(|(_, c)| c.to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(columns(dir.path()).len(), 3, "a header and two epochs");
    assert_eq!(columns(dir.path()), columns(whole.path()));
    assert!(dir.path().join("relations.json").exists());
}

#[test]
fn divergence_names_the_task_and_the_step() {
    let mut config = digits_config("equal", 2);
    config.train.optimizer = serde_json::from_str(r#"{"name": "sgd", "lr": 1e30}"#).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = fit(config, &opts(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::Diverged { .. }), "{msg}");
    assert!(
        msg.contains("step") && (msg.contains("task") || msg.contains("parameter")),
        "{msg}"
    );
}

#[test]
fn a_representation_balancer_with_cross_stitch_is_refused_by_name() {
    let text = r#"
[data]
builtin = "digits"
[model]
arch = "cross-stitch"
[model.encoder]
name = "mlp"
hidden = [16]
[train]
balancer = { name = "mgda-ub" }
"#;
    let config = RunConfig::parse(text, Path::new("x.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let msg = fit(config, &opts(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains("cross-stitch") && msg.contains("mgda-ub"),
        "{msg}"
    );
}

#[test]
fn regression_heads_start_at_the_mean_of_their_training_targets() {
    let text = r#"
[data]
builtin = "linnerud"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [8]
"#;
    let config = RunConfig::parse_valid(text, Path::new("linnerud.toml")).unwrap();
    let prepared = mtl_train::prepare::prepare(&config).unwrap();
    let mut trainer = mtl_train::Trainer::from_prepared(&config, &prepared).unwrap();
    trainer
        .init_regression_bias(&prepared.dataset, &prepared.split.train)
        .unwrap();
    for (t, task) in prepared.tasks.iter().enumerate() {
        let mtl_core::Targets::Values(values) =
            &prepared.dataset.targets()[prepared.target_index[t]]
        else {
            panic!("linnerud's tasks are regressions");
        };
        let train = &prepared.split.train;
        let mean = train.iter().map(|&i| values.data()[i] as f64).sum::<f64>() / train.len() as f64;
        let id = trainer
            .params()
            .find(&format!("heads.{}.0.bias", task.name()))
            .unwrap();
        let bias = trainer.params().values(id).unwrap()[0] as f64;
        assert!(
            (bias - mean).abs() < 1e-3 * mean.abs().max(1.0),
            "{}: bias {bias}, training mean {mean}",
            task.name()
        );
        assert!(
            mean.abs() > 30.0,
            "the targets are raw, not standardised: {mean}"
        );
    }
}
