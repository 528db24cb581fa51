//! Every built-in data set: documented shapes, sizes and class balance,
//! deterministic for a seed and different between seeds.

use mtl_core::{Targets, TaskKind, Tensor};
use mtl_data::datasets::{self, GradNormToy, MultiMnist, CANVAS};
use mtl_data::{DataError, Dataset};

/// Sums of a few hundred f32 values agree with numpy's f64 sums to this much.
const SUM_TOL: f64 = 1e-3;
/// Standardised training columns have mean 0 and std 1 up to f32 rounding.
const STANDARD_TOL: f64 = 1e-4;

fn classes(ds: &Dataset, task: &str) -> Vec<usize> {
    ds.class_labels(task).unwrap().to_vec()
}

fn counts(labels: &[usize], k: usize) -> Vec<usize> {
    let mut c = vec![0; k];
    labels.iter().for_each(|&l| c[l] += 1);
    c
}

fn values(ds: &Dataset, task: &str) -> Tensor {
    match ds.task_targets(task) {
        Some(Targets::Values(t)) => t.clone(),
        other => panic!("{task}: {other:?}"),
    }
}

fn column_stats(x: &Tensor, rows: &[usize], j: usize) -> (f64, f64) {
    let w = x.shape()[1];
    let v: Vec<f64> = rows
        .iter()
        .map(|&i| f64::from(x.data()[i * w + j]))
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt())
}

#[test]
fn registry_lists_builds_and_describes() {
    let names: Vec<&str> = datasets::list().iter().map(|b| b.name).collect();
    assert_eq!(
        names,
        [
            "multimnist",
            "autompg",
            "linnerud",
            "digits",
            "blobs",
            "gradnorm-toy",
            "gradnorm-toy-10"
        ]
    );
    assert!(datasets::list()
        .iter()
        .all(|b| !b.description.is_empty() && !b.description.contains('\n')));
    let d = datasets::describe("linnerud").unwrap();
    assert_eq!(d.rows, 20);
    assert_eq!(d.feature_shape, vec![3]);
    assert_eq!(d.split, Some([14, 3, 3]));
    let text = d.to_string();
    assert!(text.contains("task pulse: regression (width 1)"), "{text}");
    let err = datasets::load("mnist", 0).unwrap_err();
    assert!(matches!(err, DataError::UnknownDataset { .. }));
    assert!(err.to_string().contains("multimnist, autompg"), "{err}");
    assert_eq!(
        datasets::load("three_blobs", 3).unwrap(),
        datasets::load("blobs", 3).unwrap()
    );
}

#[test]
fn multimnist_default_shapes_labels_and_balance() {
    let ds = datasets::load("multimnist", 0).unwrap();
    assert_eq!(ds.features().unwrap().shape(), &[25_000, 1, CANVAS, CANVAS]);
    let split = ds.split().unwrap();
    assert_eq!(
        (split.train.len(), split.validation.len(), split.test.len()),
        (20_000, 0, 5_000)
    );
    assert!(ds
        .features()
        .unwrap()
        .data()
        .iter()
        .all(|&p| (0.0..=1.0).contains(&p)));
    let (left, right) = (classes(&ds, "left"), classes(&ds, "right"));
    let sum = values(&ds, "sum");
    assert_eq!(sum.shape(), &[25_000, 1]);
    for i in 0..ds.len() {
        assert_eq!(sum.data()[i], (left[i] + right[i]) as f32);
    }
    // Uniform draws from class-balanced pools: 2,000 per class expected in
    // training (binomial std about 42); allow 10 %.
    for labels in [&left[..20_000], &right[..20_000]] {
        assert!(
            counts(labels, 10)
                .iter()
                .all(|&c| (1_800..=2_200).contains(&c)),
            "{:?}",
            counts(labels, 10)
        );
    }
    // No canvas is blank: the faintest source digit has far more ink than
    // 10 full-intensity pixels.
    let ink: Vec<f32> = ds
        .features()
        .unwrap()
        .data()
        .chunks(CANVAS * CANVAS)
        .map(|c| c.iter().sum())
        .collect();
    assert!(ink.iter().all(|&s| s > 10.0));
}

#[test]
fn multimnist_pools_are_disjoint_and_respected() {
    let pools = MultiMnist::pools(4).unwrap();
    assert_eq!(
        (pools.train.len(), pools.validation.len(), pools.test.len()),
        (4_000, 0, 1_000)
    );
    assert!(pools
        .train
        .iter()
        .all(|i| pools.test.binary_search(i).is_err()));
    let config = MultiMnist {
        train: 2_000,
        test: 500,
        sum_task: false,
    };
    let comps = config.compositions(4).unwrap();
    assert_eq!(comps.len(), 2_500);
    for (i, c) in comps.iter().enumerate() {
        let pool = if i < 2_000 { &pools.train } else { &pools.test };
        assert!(
            pool.binary_search(&c.left_source).is_ok()
                && pool.binary_search(&c.right_source).is_ok()
        );
        assert_ne!(c.left_source, c.right_source);
        assert!(c.left_at.0 <= 4 && c.left_at.1 <= 4);
        assert!((4..=8).contains(&c.right_at.0) && (4..=8).contains(&c.right_at.1));
    }
    // Every shift value occurs.
    for s in 0..=4 {
        assert!(
            comps.iter().any(|c| c.left_at.0 == s) && comps.iter().any(|c| c.right_at.1 == 8 - s)
        );
    }
    let ds = config.build(4).unwrap();
    assert_eq!(ds.tasks().len(), 2);
    assert_eq!(ds.len(), 2_500);
}

#[test]
fn multimnist_is_deterministic_and_seed_dependent() {
    let config = MultiMnist {
        train: 300,
        test: 100,
        sum_task: true,
    };
    let a = config.build(11).unwrap();
    assert_eq!(a, config.build(11).unwrap());
    let b = config.build(12).unwrap();
    assert_ne!(a.features().unwrap(), b.features().unwrap());
    assert_ne!(
        MultiMnist::pools(11).unwrap(),
        MultiMnist::pools(12).unwrap()
    );
    assert!(MultiMnist {
        train: 0,
        test: 1,
        sum_task: false
    }
    .build(0)
    .is_err());
}

#[test]
fn autompg_shapes_balance_and_standardisation() {
    let ds = datasets::load("autompg", 0).unwrap();
    assert_eq!(ds.features().unwrap().shape(), &[392, 6]);
    assert_eq!(counts(&classes(&ds, "origin"), 3), [245, 68, 79]);
    let mpg = values(&ds, "mpg");
    let total: f64 = mpg.data().iter().map(|&v| f64::from(v)).sum();
    assert!((total - 9190.8).abs() < SUM_TOL * 10.0, "{total}");
    let split = ds.split().unwrap();
    assert_eq!((split.validation.len(), split.test.len()), (59, 59));
    for j in 0..6 {
        let (mean, std) = column_stats(ds.features().unwrap(), &split.train, j);
        assert!(
            mean.abs() < STANDARD_TOL && (std - 1.0).abs() < STANDARD_TOL,
            "column {j}: {mean} {std}"
        );
    }
    // Fitted on training rows only: the held-out rows are not exactly standard.
    let held: Vec<usize> = split
        .validation
        .iter()
        .chain(&split.test)
        .copied()
        .collect();
    assert!((0..6).any(|j| column_stats(ds.features().unwrap(), &held, j).0.abs() > STANDARD_TOL));
    assert_eq!(ds.standardizer().unwrap().width(), 6);
    assert_ne!(ds, datasets::load("autompg", 1).unwrap());
    assert_eq!(ds, datasets::load("autompg", 0).unwrap());
}

#[test]
fn linnerud_shapes_and_targets() {
    let ds = datasets::load("linnerud", 5).unwrap();
    assert_eq!(ds.features().unwrap().shape(), &[20, 3]);
    let names: Vec<&str> = ds.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["weight", "waist", "pulse"]);
    for (task, total) in [("weight", 3572.0), ("waist", 708.0), ("pulse", 1122.0)] {
        let s: f64 = values(&ds, task).data().iter().map(|&v| f64::from(v)).sum();
        assert!((s - total).abs() < SUM_TOL, "{task}: {s}");
    }
    // Undo the standardisation: the exercise columns sum to 189, 2911, 1406.
    let st = ds.standardizer().unwrap();
    for (j, total) in [189.0, 2911.0, 1406.0].into_iter().enumerate() {
        let s: f64 = (0..20)
            .map(|i| f64::from(st.invert_column(j, ds.features().unwrap().data()[i * 3 + j])))
            .sum();
        assert!((s - total).abs() < SUM_TOL * 10.0, "column {j}: {s}");
    }
    assert_ne!(ds.split(), datasets::load("linnerud", 6).unwrap().split());
}

#[test]
fn digits_classification_and_clustering() {
    let ds = datasets::load("digits", 2).unwrap();
    assert_eq!(ds.features().unwrap().shape(), &[1797, 1, 8, 8]);
    let digit = classes(&ds, "digit");
    assert_eq!(
        counts(&digit, 10),
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    let ink: f64 = ds
        .features()
        .unwrap()
        .data()
        .iter()
        .map(|&v| f64::from(v))
        .sum();
    assert!((ink - 561_718.0 / 16.0).abs() < SUM_TOL * 100.0, "{ink}");
    assert!(ds
        .features()
        .unwrap()
        .data()
        .iter()
        .all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(ds.tasks()[1].kind, TaskKind::Clustering { clusters: 10 });
    assert_eq!(
        ds.targets()[1],
        Targets::Unsupervised {
            reference: Some(digit.clone())
        }
    );
    let split = ds.split().unwrap();
    let test_counts = counts(
        &split.test.iter().map(|&i| digit[i]).collect::<Vec<_>>(),
        10,
    );
    // 15 % of each class, rounded: 178 -> 27, 174 -> 26, 183 -> 27.
    assert_eq!(test_counts, [27, 27, 27, 27, 27, 27, 27, 27, 26, 27]);
    assert_ne!(ds.split(), datasets::load("digits", 3).unwrap().split());
}

#[test]
fn blobs_three_equal_groups() {
    let ds = datasets::load("blobs", 0).unwrap();
    assert_eq!(ds.features().unwrap().shape(), &[150, 2]);
    match &ds.targets()[0] {
        Targets::Unsupervised { reference: Some(g) } => assert_eq!(counts(g, 3), [50, 50, 50]),
        other => panic!("{other:?}"),
    }
    let sx: f64 = ds
        .features()
        .unwrap()
        .data()
        .iter()
        .step_by(2)
        .map(|&v| f64::from(v))
        .sum();
    assert!((sx - 70.172_636_28).abs() < SUM_TOL, "{sx}");
    assert_eq!(ds.split().unwrap().test.len(), 24);
    assert_ne!(ds.split(), datasets::load("blobs", 1).unwrap().split());
}

#[test]
fn gradnorm_toy_scales_and_determinism() {
    let ds = datasets::load("gradnorm-toy", 0).unwrap();
    assert_eq!(ds.features().unwrap().shape(), &[10_000, 250]);
    assert!(ds
        .features()
        .unwrap()
        .data()
        .iter()
        .all(|&v| (0.0..1.0).contains(&v)));
    let (t0, t1) = (values(&ds, "task_0"), values(&ds, "task_1"));
    assert_eq!(t1.shape(), &[10_000, 100]);
    let max_abs = |t: &Tensor| t.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max_abs(&t0) <= 1.0 && max_abs(&t1) <= 100.0);
    // tanh of a sum of 250 terms with std about 10 * 0.58 * 16 saturates:
    // most outputs are near ±σ, so the scales differ by about 100.
    let rms = |t: &Tensor| {
        (t.data().iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / t.len() as f64).sqrt()
    };
    assert!(
        rms(&t0) > 0.9 && (rms(&t1) / rms(&t0) - 100.0).abs() < 5.0,
        "{} {}",
        rms(&t0),
        rms(&t1)
    );
    let small = GradNormToy {
        samples: 200,
        ..GradNormToy::default()
    };
    let a = small.build(3).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(a, one.install(|| small.build(3)).unwrap());
    assert_ne!(a, small.build(4).unwrap());
    let ten = datasets::load("gradnorm-toy-10", 0).unwrap();
    assert_eq!(ten.tasks().len(), 10);
    assert_eq!(ten.name(), "gradnorm-toy-10");
    assert!(GradNormToy {
        sigmas: vec![-1.0],
        ..GradNormToy::default()
    }
    .build(0)
    .is_err());
}
