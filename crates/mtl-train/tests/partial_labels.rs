//! Rows labelled for some tasks only: MultiMNIST with a third of the `right`
//! labels and another third of the `sum` labels removed trains with every
//! kind of balancer, without NaN, and the metrics count the labelled rows.

use std::path::Path;

use mtl_core::{Targets, Tensor, MISSING_CLASS};
use mtl_data::{datasets, BatchSource, InMemory};
use mtl_losses::task::Task;
use mtl_train::{FitOptions, RunConfig, Trainer};

/// Training and validation rows taken from the bundled set.
const TRAIN: usize = 384;
const VALIDATION: usize = 192;

const CONFIG: &str = r#"
seed = 3
[data]
builtin = "multimnist"
[model]
arch = "hps"
[model.encoder]
name = "lenet"
fc = 32
[[tasks]]
name = "left"
kind = "classification"
classes = 10
[[tasks]]
name = "right"
kind = "classification"
classes = 10
[[tasks]]
name = "sum"
kind = "regression"
loss = "l1"
[train]
batch_size = 64
optimizer = { name = "adam", lr = 1e-3 }
"#;

/// Rows `range` of MultiMNIST's training pool with row `i` missing its
/// `right` label when `i % 3 == 0` and its `sum` when `i % 3 == 1`.
fn masked(ds: &mtl_data::Dataset, range: std::ops::Range<usize>) -> InMemory {
    let rows: Vec<usize> = range.collect();
    let batch = ds.gather(&rows).unwrap();
    let mut targets = batch.targets;
    if let Targets::Classes(c) = &mut targets[1] {
        for (i, v) in c.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = MISSING_CLASS;
            }
        }
    }
    if let Targets::Values(t) = &targets[2] {
        let mut v = t.data().to_vec();
        for (i, x) in v.iter_mut().enumerate() {
            if i % 3 == 1 {
                *x = f32::NAN;
            }
        }
        targets[2] = Targets::Values(Tensor::from_vec(v, t.shape()).unwrap());
    }
    InMemory::new(batch.x, targets).unwrap()
}

#[test]
fn every_kind_of_balancer_trains_on_partly_labelled_rows() {
    let ds = datasets::load("multimnist", 0).unwrap();
    let train = masked(&ds, 0..TRAIN);
    let validation = masked(&ds, TRAIN..TRAIN + VALIDATION);
    for balancer in [
        "equal",
        "mgda",
        "nash-mtl",
        "gradnorm",
        "dwa",
        "famo",
        "uncertainty",
        "upgrad",
        "pcgrad",
        "modo",
        "auto-lambda",
    ] {
        let mut config = RunConfig::parse(CONFIG, Path::new("partial.toml")).unwrap();
        config.train.balancer = balancer.parse().unwrap();
        let tasks: Vec<Task> = config.tasks.iter().map(|t| t.build().unwrap()).collect();
        let mut trainer =
            Trainer::from_config(&config, train.feature_shape(), tasks, vec![0, 1, 2]).unwrap();
        let options = FitOptions {
            epochs: 2,
            batch_size: 64,
            shuffle_seed: 3,
            ..Default::default()
        };
        let history = trainer
            .fit(&train, Some(&validation), &options, &mut [])
            .unwrap_or_else(|e| panic!("{balancer}: {e}"));
        for record in &history.epochs {
            assert!(
                record
                    .train_loss
                    .iter()
                    .chain(&record.weights)
                    .all(|v| v.is_finite()),
                "{balancer}: {:?} {:?}",
                record.train_loss,
                record.weights
            );
            assert!(
                record.validation.losses.iter().all(|v| v.is_finite()),
                "{balancer}: {:?}",
                record.validation.losses
            );
        }
        assert!(
            trainer.params().flat().iter().all(|v| v.is_finite()),
            "{balancer}"
        );
        let last = &history.epochs.last().unwrap().validation;
        // Two thirds of the validation rows keep each masked label.
        assert_eq!(last.labelled, vec![VALIDATION, 128, 128], "{balancer}");
        assert!(last.score("left.accuracy").is_some(), "{balancer}");
    }
}

#[test]
fn a_batch_without_any_label_of_a_task_leaves_it_out() {
    let ds = datasets::load("multimnist", 0).unwrap();
    let mut data = masked(&ds, 0..64);
    // No `right` label at all.
    let batch = data.gather(&(0..64).collect::<Vec<_>>()).unwrap();
    let mut targets = batch.targets;
    targets[1] = Targets::Classes(vec![MISSING_CLASS; 64]);
    data = InMemory::new(batch.x, targets).unwrap();
    let config = RunConfig::parse(CONFIG, Path::new("partial.toml")).unwrap();
    for balancer in ["mgda", "nash-mtl", "gradnorm", "famo", "upgrad"] {
        let mut config = config.clone();
        config.train.balancer = balancer.parse().unwrap();
        let tasks: Vec<Task> = config.tasks.iter().map(|t| t.build().unwrap()).collect();
        let mut trainer =
            Trainer::from_config(&config, data.feature_shape(), tasks, vec![0, 1, 2]).unwrap();
        let b = data.gather(&(0..64).collect::<Vec<_>>()).unwrap();
        let log = trainer.train_step(&b, 0).unwrap();
        assert_eq!(log.losses[1], 0.0, "{balancer}");
        assert_eq!(log.weights[1], 0.0, "{balancer}: {:?}", log.weights);
        assert!(log.weights.iter().all(|w| w.is_finite()), "{balancer}");
    }
}
