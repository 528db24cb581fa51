//! Evaluation split across ranks: with `W = 2` and `W = 3` ranks (threads of
//! a `ThreadGroup`; uneven shares on three) each rank runs the model on its
//! contiguous share of the rows, and every rank's losses and metrics are
//! bit-identical to the single-process evaluation: on bundled data with
//! classification, regression and clustering tasks, binary and multilabel
//! tasks (ROC-AUC, F1), rows with missing labels, splits longer than one
//! evaluation chunk, and fewer rows than ranks.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mtl_core::arch::{build_model, ArchConfig, EncoderConfig, HeadConfig, MultiTaskModel};
use mtl_core::arch::{Head, MultiTaskOutput};
use mtl_core::nn::Activation;
use mtl_core::{Graph, ParamId, ParamStore, Targets, TaskKind, TaskSpec, Tensor, Var};
use mtl_core::{Result as CoreResult, MISSING_CLASS};
use mtl_data::{BatchSource, InMemory};
use mtl_dist::{split_counts, Communicator, ThreadGroup};
use mtl_losses::task::Task;
use mtl_train::prepare::{prepare, Prepared};
use mtl_train::trainer::EVAL_CHUNK;
use mtl_train::{Evaluation, RunConfig, Trainer};

use rand::SeedableRng;

/// A model that counts the rows it runs on, around a built one.
#[derive(Debug)]
struct Counting {
    inner: Box<dyn MultiTaskModel>,
    rows: Arc<AtomicUsize>,
}

impl MultiTaskModel for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn tasks(&self) -> &[TaskSpec] {
        self.inner.tasks()
    }
    fn heads(&self) -> &[Head] {
        self.inner.heads()
    }
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> CoreResult<MultiTaskOutput> {
        let rows = g.shape(x)?[0];
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.inner.forward(g, ps, x)
    }
    fn has_representation(&self) -> bool {
        self.inner.has_representation()
    }
    fn last_shared_params(&self) -> Vec<ParamId> {
        self.inner.last_shared_params()
    }
}

/// A trainer for `tasks` on features of `shape` (seeded, so every rank
/// builds the same parameters) whose model counts rows into `rows`.
fn trainer(
    specs: &[TaskSpec],
    shape: &[usize],
    target_index: Vec<usize>,
    comm: Box<dyn Communicator + Send>,
    rows: Arc<AtomicUsize>,
) -> Trainer {
    let mut ps = ParamStore::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let encoder = EncoderConfig::Mlp {
        hidden: vec![24],
        dropout: 0.0,
        activation: Activation::Relu,
        layer_norm: false,
    };
    let arch = ArchConfig::Hps {
        head: HeadConfig::default(),
    };
    let inner = build_model(&arch, &encoder, shape, specs, &mut ps, &mut rng).unwrap();
    let tasks = specs
        .iter()
        .cloned()
        .map(Task::with_default_loss)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Trainer::builder(Box::new(Counting { inner, rows }), ps, tasks)
        .target_index(target_index)
        .seed(4)
        .communicator(comm)
        .build()
        .unwrap()
}

/// Every rank's evaluation of `data` on `size` ranks, with the rows each
/// rank's model ran on.
fn evaluate(
    specs: &[TaskSpec],
    target_index: &[usize],
    data: &dyn BatchSource,
    size: usize,
) -> Vec<(Evaluation, usize)> {
    let comms = ThreadGroup::new(size).unwrap().communicators();
    std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|comm| {
                s.spawn(move || {
                    let rows = Arc::new(AtomicUsize::new(0));
                    let shape = data.feature_shape().to_vec();
                    let index = target_index.to_vec();
                    let mut t = trainer(specs, &shape, index, Box::new(comm), rows.clone());
                    let e = t.evaluate(data).unwrap();
                    (e, rows.load(Ordering::Relaxed))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Checks that every rank of `W = 2` and `W = 3` evaluates `data` exactly as
/// one process does, each rank running the model on its share of the rows;
/// returns the single-process evaluation.
fn check_split_evaluation(
    specs: &[TaskSpec],
    target_index: &[usize],
    data: &dyn BatchSource,
) -> Evaluation {
    let mut one = evaluate(specs, target_index, data, 1);
    let (reference, rows) = one.remove(0);
    assert_eq!(rows, data.len());
    assert!(!reference.metrics.is_empty());
    for size in [2, 3] {
        let counts = split_counts(data.len(), size).unwrap();
        for (rank, (e, rows)) in evaluate(specs, target_index, data, size)
            .into_iter()
            .enumerate()
        {
            assert_eq!(rows, counts[rank], "rows of rank {rank} of {size}");
            // Exact equality: the same bits of every loss and metric.
            assert_eq!(e, reference, "rank {rank} of {size}");
        }
    }
    reference
}

/// The bundled data set `builtin`: its tasks, target columns and
/// preprocessed rows.
fn prepared(builtin: &str) -> (Vec<TaskSpec>, Vec<usize>, Prepared) {
    let text = format!("seed = 2\n[data]\nbuiltin = \"{builtin}\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [8]\n");
    let config = RunConfig::parse(&text, Path::new("eval.toml")).unwrap();
    let prepared = prepare(&config.validate(Path::new("eval.toml")).unwrap()).unwrap();
    let specs = prepared.tasks.iter().map(|t| t.spec().clone()).collect();
    (specs, prepared.target_index.clone(), prepared)
}

/// Rows `rows` of `ds` in memory, with the classes of task column `class`
/// missing where `i % 4 == 0` and the values of column `value` missing
/// (`NaN`) where `i % 3 == 1`.
fn masked(
    ds: &dyn BatchSource,
    rows: &[usize],
    class: Option<usize>,
    value: Option<usize>,
) -> InMemory {
    let batch = ds.gather(rows).unwrap();
    let mut targets = batch.targets;
    if let Some(Targets::Classes(c)) = class.map(|i| &mut targets[i]) {
        for (i, v) in c.iter_mut().enumerate() {
            if i % 4 == 0 {
                *v = MISSING_CLASS;
            }
        }
    }
    if let Some(i) = value {
        let Targets::Values(t) = &targets[i] else {
            panic!("column {i} holds no values");
        };
        let width = t.len() / rows.len();
        let mut v = t.data().to_vec();
        for (r, row) in v.chunks_mut(width).enumerate() {
            if r % 3 == 1 {
                row.fill(f32::NAN);
            }
        }
        targets[i] = Targets::Values(Tensor::from_vec(v, t.shape()).unwrap());
    }
    InMemory::new(batch.x, targets).unwrap()
}

fn labelled_of(e: &Evaluation) -> Vec<usize> {
    e.labelled.clone()
}

#[test]
fn digits_classification_and_clustering() {
    // Clustering: the DEC loss and NMI/ARI need every prediction.
    let (specs, index, p) = prepared("digits");
    assert!(matches!(specs[1].kind, TaskKind::Clustering { .. }));
    let test = mtl_data::Subset::new(&p.dataset, &p.split.test).unwrap();
    check_split_evaluation(&specs, &index, &test);
    let masked = masked(&p.dataset, &p.split.test, Some(index[0]), None);
    let e = check_split_evaluation(&specs, &index, &masked);
    let n = p.split.test.len();
    assert_eq!(labelled_of(&e), [n - n.div_ceil(4), n]);
}

#[test]
fn autompg_regression_and_classification_with_missing_labels() {
    let (specs, index, p) = prepared("autompg");
    let (mpg, origin) = (index[0], index[1]);
    assert!(matches!(specs[0].kind, TaskKind::Regression { .. }));
    let all: Vec<usize> = (0..p.dataset.len()).collect();
    let data = masked(&p.dataset, &all, Some(origin), Some(mpg));
    let e = check_split_evaluation(&specs, &index, &data);
    let n = all.len();
    assert_eq!(labelled_of(&e), [n - (n + 1) / 3, n - n.div_ceil(4)]);
    for name in [
        "mpg.rmse",
        "mpg.mae",
        "mpg.r2",
        "origin.accuracy",
        "origin.macro_f1",
    ] {
        assert!(e.score(name).is_some(), "{name} missing");
    }
}

#[test]
fn multimnist_across_evaluation_chunks() {
    // More rows than two evaluation chunks, so shares start inside chunks.
    let (specs, index, p) = prepared("multimnist");
    let rows: Vec<usize> = p.split.test[..2 * EVAL_CHUNK + 77].to_vec();
    let data = masked(&p.dataset, &rows, Some(index[1]), Some(index[2]));
    check_split_evaluation(&specs, &index, &data);
}

#[test]
fn binary_and_multilabel_scores_need_every_prediction() {
    // ROC-AUC and F1 of yes/no labels from the digits' features: "digit ≥ 5"
    // (binary, some rows unlabelled) and "even, ≥ 5" (multilabel).
    let (_, index, p) = prepared("digits");
    let rows = &p.split.test;
    let batch = p.dataset.gather(rows).unwrap();
    let Targets::Classes(digit) = &batch.targets[index[0]] else {
        panic!("digit is a classification");
    };
    let yes = |b: bool| if b { 1.0f32 } else { 0.0 };
    let binary: Vec<f32> = digit
        .iter()
        .enumerate()
        .map(|(i, &d)| if i % 5 == 2 { f32::NAN } else { yes(d >= 5) })
        .collect();
    let multilabel: Vec<f32> = digit
        .iter()
        .flat_map(|&d| [yes(d % 2 == 0), yes(d >= 5)])
        .collect();
    let n = rows.len();
    let data = InMemory::new(
        batch.x,
        vec![
            Targets::Values(Tensor::from_vec(binary, &[n, 1]).unwrap()),
            Targets::Values(Tensor::from_vec(multilabel, &[n, 2]).unwrap()),
        ],
    )
    .unwrap();
    let specs = vec![
        TaskSpec {
            name: "high".into(),
            kind: TaskKind::Binary,
        },
        TaskSpec {
            name: "parity_high".into(),
            kind: TaskKind::Multilabel { labels: 2 },
        },
    ];
    let e = check_split_evaluation(&specs, &[0, 1], &data);
    for name in ["high.roc_auc", "high.macro_f1", "parity_high.roc_auc"] {
        assert!(e.score(name).is_some(), "{name} missing");
    }
}

#[test]
fn fewer_rows_than_ranks() {
    // Two rows on three ranks: the last rank runs the model on none.
    let (specs, index, p) = prepared("autompg");
    let rows = [3usize, 11];
    let data = mtl_data::Subset::new(&p.dataset, &rows).unwrap();
    check_split_evaluation(&specs, &index, &data);
}
