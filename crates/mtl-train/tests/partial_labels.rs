//! Rows labelled for some tasks only: MultiMNIST with a third of the `right`
//! labels and another third of the `sum` labels removed trains with every
//! kind of balancer, without NaN, and the metrics count the labelled rows.

mod support;

use std::path::Path;

use mtl_core::{Targets, Tensor, MISSING_CLASS};
use mtl_data::{datasets, BatchSource, InMemory};
use mtl_losses::task::Task;
use mtl_train::{FitOptions, RunConfig, Trainer};

/// Training and validation rows taken from the bundled set.
const TRAIN: usize = 384;
const VALIDATION: usize = 192;

/// The run configuration: hard sharing on MultiMNIST's LeNet trunk, Adam.
fn config() -> RunConfig {
    let text = format!(
        "seed = 3\n[model]\narch = \"hps\"\n{}\n[train]\nbatch_size = 64\noptimizer = {{ name = \"adam\", lr = 1e-3 }}\n",
        support::MULTIMNIST
    );
    RunConfig::parse(&text, Path::new("partial.toml")).unwrap()
}

/// Rows `range` of MultiMNIST's training pool with row `i` missing its
/// `right` label when `i % 3 == 0` and its `sum` when `i % 3 == 1`.
fn masked(ds: &mtl_data::Dataset, range: std::ops::Range<usize>) -> InMemory {
    masked_where(ds, range, |i| i % 3 == 0)
}

/// [`masked`] with row `i` missing its `right` label when `right_missing(i)`.
fn masked_where(
    ds: &mtl_data::Dataset,
    range: std::ops::Range<usize>,
    right_missing: impl Fn(usize) -> bool,
) -> InMemory {
    let rows: Vec<usize> = range.collect();
    let batch = ds.gather(&rows).unwrap();
    let mut targets = batch.targets;
    if let Targets::Classes(c) = &mut targets[1] {
        for (i, v) in c.iter_mut().enumerate() {
            if right_missing(i) {
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
        let mut config = config();
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
    let config = config();
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

/// One epoch of `balancer` on `train` on the ranks of `comm`; the
/// parameters.
fn fit_on_ranks(
    comm: Box<dyn mtl_dist::Communicator + Send>,
    balancer: &str,
    train: &InMemory,
    validation: &InMemory,
) -> Vec<f32> {
    let mut config = config();
    config.train.balancer = balancer.parse().unwrap();
    let tasks: Vec<Task> = config.tasks.iter().map(|t| t.build().unwrap()).collect();
    let mut trainer =
        Trainer::from_config(&config, train.feature_shape(), tasks, vec![0, 1, 2]).unwrap();
    trainer.set_communicator(comm);
    let options = FitOptions {
        epochs: 1,
        batch_size: 64,
        shuffle_seed: 3,
        ..Default::default()
    };
    trainer
        .fit(train, Some(validation), &options, &mut [])
        .unwrap_or_else(|e| panic!("{balancer}: {e}"));
    trainer.params().flat().to_vec()
}

/// Data parallelism with partly labelled rows (shards whose share of a
/// task's labels differs from their share of the rows), a task absent from
/// every batch, and balancers that read a second training batch (MoDo,
/// SDMGrad) or a validation look-ahead (Auto-Lambda): after one epoch, every
/// parameter on 2 and 3 ranks is within 1e-4 relative of one rank's.
#[test]
fn partly_labelled_rows_and_extra_batches_on_many_ranks_match_one_rank() {
    let ds = datasets::load("multimnist", 0).unwrap();
    let validation = masked(&ds, TRAIN..TRAIN + VALIDATION);
    let partly = masked(&ds, 0..TRAIN);
    let absent = masked_where(&ds, 0..TRAIN, |_| true);
    let mut failures = Vec::new();
    for (data, what) in [(&partly, "a third unlabelled"), (&absent, "right absent")] {
        for balancer in [
            "mgda-ub",
            "upgrad",
            "famo",
            "modo",
            "sdmgrad",
            "auto-lambda",
        ] {
            let one = support::on_ranks(1, |c| fit_on_ranks(c, balancer, data, &validation));
            for size in [2, 3] {
                let many =
                    support::on_ranks(size, |c| fit_on_ranks(c, balancer, data, &validation));
                let rel = support::max_relative(&many, &one);
                println!("{what}, {balancer}, W={size}: max relative difference {rel:.2e}");
                if rel.is_nan() || rel > 1e-4 {
                    failures.push(format!("{what} {balancer} W={size}: {rel:.2e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
