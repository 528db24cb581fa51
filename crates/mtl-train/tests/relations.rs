//! Task relations on a problem with planted task clusters: the affinity
//! matrix, the embeddings and the suggested grouping find them; measuring
//! never changes training; the grouping search matches brute force.

use std::path::Path;

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor};
use mtl_data::{DataLoader, Dataset, LoaderConfig};
use mtl_losses::task::Task;
use mtl_train::relations::{
    self, exhaustive_groups, greedy_groups, suggest_groups, RelationTracker, Relations, TaskMatrix,
};
use mtl_train::{RunConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FEATURES: usize = 8;
const ROWS: usize = 2048;
/// Tasks in the order a1, b1, a2, b2, a3, b3: even tasks form cluster A,
/// odd ones cluster B.
const TASKS: usize = 6;

fn names() -> Vec<String> {
    (0..TASKS)
        .map(|t| format!("{}{}", if t % 2 == 0 { 'a' } else { 'b' }, t / 2 + 1))
        .collect()
}

fn cluster(t: usize) -> usize {
    t % 2
}

/// Cluster A predicts `u·x`, cluster B `v·x` with `u ⟂ v`, each task with its
/// own small noise. The shared trunk ends in a single unit, so it can serve
/// one direction only: the clusters pull it apart.
fn planted_dataset() -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut u = [0.0f32; FEATURES];
    let mut v = [0.0f32; FEATURES];
    for k in 0..4 {
        u[k] = 0.5;
        v[k + 2] = 0.5;
    }
    let x: Vec<f32> = (0..ROWS * FEATURES)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    let dot = |w: &[f32; FEATURES], r: usize| -> f32 {
        (0..FEATURES).map(|k| w[k] * x[r * FEATURES + k]).sum()
    };
    let tasks = names()
        .into_iter()
        .enumerate()
        .map(|(t, name)| {
            let w = if cluster(t) == 0 { &u } else { &v };
            let y: Vec<f32> = (0..ROWS)
                .map(|r| dot(w, r) + 0.05 * rng.gen_range(-1.0f32..1.0))
                .collect();
            (
                TaskSpec {
                    name,
                    kind: TaskKind::Regression { outputs: 1 },
                },
                Targets::Values(Tensor::from_vec(y, &[ROWS, 1]).unwrap()),
            )
        })
        .collect();
    Dataset::new(
        "planted",
        Tensor::from_vec(x, &[ROWS, FEATURES]).unwrap(),
        tasks,
    )
    .unwrap()
}

fn config(optimizer: &str, dropout: f32) -> RunConfig {
    let text = format!(
        r#"
seed = 5
[data]
builtin = "digits"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [16, 1]
activation = "tanh"
dropout = {dropout}
[train]
epochs = 4
batch_size = 32
optimizer = {optimizer}
"#
    );
    RunConfig::parse(&text, Path::new("planted.toml")).unwrap()
}

/// The batch size of the configurations below.
const BATCH: usize = 32;

fn trainer(config: RunConfig, ds: &Dataset) -> Trainer {
    let tasks: Vec<Task> = ds
        .tasks()
        .iter()
        .map(|s| Task::with_default_loss(s.clone()).unwrap())
        .collect();
    Trainer::from_config(&config, ds.feature_shape(), tasks, (0..TASKS).collect()).unwrap()
}

/// Trains epochs `from..to`, measuring with `tracker` when given; returns the
/// losses of every step.
fn train(
    trainer: &mut Trainer,
    ds: &Dataset,
    mut tracker: Option<&mut RelationTracker>,
    epochs: std::ops::Range<usize>,
) -> Vec<Vec<f32>> {
    let rows: Vec<usize> = (0..ds.len()).collect();
    let loader = DataLoader::new(
        ds,
        &rows,
        LoaderConfig {
            batch_size: BATCH,
            shuffle: true,
            drop_last: false,
            seed: trainer.seed(),
        },
    )
    .unwrap();
    let mut losses = Vec::new();
    for epoch in epochs {
        for batch in loader.epoch(epoch as u64) {
            let batch = batch.unwrap();
            if let Some(t) = tracker.as_deref_mut() {
                t.observe_step(trainer, &batch).unwrap();
            }
            losses.push(trainer.train_step(&batch, epoch as u64).unwrap().losses);
        }
        if let Some(t) = tracker.as_deref_mut() {
            t.end_epoch(epoch + 1);
        }
    }
    losses
}

/// SGD with momentum; the look-ahead is a plain SGD step with the same rate.
/// The trunk settles between the clusters' directions within the first
/// epoch, where each cluster pulls it its own way.
const PLANTED_SGD: &str = r#"{ name = "sgd", lr = 0.1, momentum = 0.9 }"#;

fn planted_relations() -> Relations {
    let ds = planted_dataset();
    let mut tr = trainer(config(PLANTED_SGD, 0.0), &ds);
    let mut tracker = RelationTracker::new(TASKS, 4).unwrap();
    train(&mut tr, &ds, Some(&mut tracker), 0..4);
    tracker.relations()
}

/// Off-diagonal entries inside and across the planted clusters.
fn split_entries(m: &TaskMatrix) -> (Vec<f64>, Vec<f64>) {
    let mut inside = Vec::new();
    let mut across = Vec::new();
    for i in 0..TASKS {
        for j in 0..TASKS {
            if i == j {
                continue;
            }
            if cluster(i) == cluster(j) {
                inside.push(m.get(i, j));
            } else {
                across.push(m.get(i, j));
            }
        }
    }
    (inside, across)
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)))
}

#[test]
fn planted_clusters_show_in_affinity_embeddings_and_grouping() {
    let rel = planted_relations();
    let names = names();
    eprintln!("{}", relations::render_text(&rel, &names, None));
    // 4 epochs of 64 steps, every fourth step measured.
    assert_eq!(rel.samples, 64);
    assert_eq!(rel.skipped, 0);

    let (inside, across) = split_entries(&rel.affinity);
    let (in_lo, in_hi) = range(&inside);
    let (across_lo, across_hi) = range(&across);
    eprintln!("affinity inside clusters {in_lo:.4e}..{in_hi:.4e}, across {across_lo:.4e}..{across_hi:.4e}");
    assert!(in_lo > 0.0, "affinity inside a cluster is positive");
    assert!(
        across_hi < in_lo,
        "every pair across is below every pair inside"
    );
    for t in 0..TASKS {
        assert!(
            rel.affinity.get(t, t) > 0.0,
            "a task's own step lowers its loss"
        );
    }

    let (inside, across) = split_entries(&rel.cosine_mean);
    let (cos_in_lo, _) = range(&inside);
    let (_, cos_across_hi) = range(&across);
    eprintln!("cosine inside >= {cos_in_lo:.4}, across <= {cos_across_hi:.4}");
    assert!(cos_across_hi < cos_in_lo);

    let grouping = suggest_groups(&rel.affinity, 2).unwrap();
    eprintln!("{}", relations::render_text(&rel, &names, Some(&grouping)));
    assert_eq!(grouping.groups, vec![vec![0, 2, 4], vec![1, 3, 5]]);
    assert!(grouping.exhaustive);
    assert!(grouping.score > 0.0);
    let one = suggest_groups(&rel.affinity, 1).unwrap();
    assert!(grouping.score > one.score, "splitting the clusters pays");

    let e = rel.embeddings.as_ref().expect("an epoch was measured");
    assert_eq!(e.epoch, 4);
    let mut worst_inside = 0.0f64;
    let mut best_across = f64::MAX;
    for a in 0..TASKS {
        for b in a + 1..TASKS {
            let d = e.distance(a, b);
            if cluster(a) == cluster(b) {
                worst_inside = worst_inside.max(d);
            } else {
                best_across = best_across.min(d);
            }
        }
    }
    eprintln!("embedding distance inside <= {worst_inside:.4}, across >= {best_across:.4}");
    assert!(worst_inside < best_across);
}

#[test]
fn measuring_relations_leaves_training_bit_identical() {
    let ds = planted_dataset();
    let cfg = config(r#"{ name = "adam", lr = 1e-2 }"#, 0.2);
    let mut plain = trainer(cfg.clone(), &ds);
    let mut measured = trainer(cfg, &ds);
    let mut tracker = RelationTracker::new(TASKS, 1)
        .unwrap()
        .with_lookahead_lr(0.1)
        .unwrap();
    let a = train(&mut plain, &ds, None, 0..2);
    let b = train(&mut measured, &ds, Some(&mut tracker), 0..2);
    assert_eq!(tracker.samples(), 128, "every step was measured");
    assert_eq!(a, b, "step losses differ");
    let bits = |t: &Trainer| {
        t.params()
            .flat()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&plain), bits(&measured), "parameters differ");
    assert_eq!(plain.optimizer().state(), measured.optimizer().state());
}

#[test]
fn a_restored_tracker_measures_what_an_uninterrupted_one_does() {
    let ds = planted_dataset();
    let cfg = config(PLANTED_SGD, 0.0);
    let mut whole = trainer(cfg.clone(), &ds);
    let mut tracker = RelationTracker::new(TASKS, 3).unwrap();
    train(&mut whole, &ds, Some(&mut tracker), 0..3);

    let mut parts = trainer(cfg, &ds);
    let mut first = RelationTracker::new(TASKS, 3).unwrap();
    train(&mut parts, &ds, Some(&mut first), 0..2);
    let json = serde_json::to_string(&first).unwrap();
    let mut restored: RelationTracker = serde_json::from_str(&json).unwrap();
    train(&mut parts, &ds, Some(&mut restored), 2..3);
    assert_eq!(restored.relations(), tracker.relations());
}

#[test]
fn relations_are_written_read_and_printed() {
    let rel = planted_relations();
    let names = names();
    let dir = tempfile::tempdir().unwrap();
    relations::write(dir.path(), &rel, &names).unwrap();
    for file in [relations::RELATIONS_FILE, relations::EMBEDDINGS_FILE] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        assert!(!bytes.is_empty(), "{file} is empty");
    }
    let saved = relations::read(dir.path()).unwrap();
    assert_eq!(saved.relations, rel);
    assert_eq!(saved.tasks, names);
    assert_eq!(saved.suggestions.len(), TASKS);
    assert_eq!(
        saved.suggestions[1].groups,
        vec![vec![0, 2, 4], vec![1, 3, 5]]
    );

    let csv = std::fs::read_to_string(dir.path().join(relations::EMBEDDINGS_FILE)).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "task,dim1,dim2,dim3");
    assert_eq!(lines.len(), TASKS + 1);
    assert!(lines[1].starts_with("a1,"));
    let coord: f64 = lines[1].split(',').nth(1).unwrap().parse().unwrap();
    assert_eq!(coord, rel.embeddings.as_ref().unwrap().coords[0][0]);

    let text = relations::render_text(&rel, &names, Some(&saved.suggestions[1]));
    for needle in [
        "inter-task affinity",
        "task embeddings",
        "group 1: a1, a2, a3",
        "group 2: b1, b2, b3",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    // Names that do not fit, damaged files and bad group counts are errors.
    assert!(relations::write(dir.path(), &rel, &names[..3]).is_err());
    std::fs::write(dir.path().join(relations::RELATIONS_FILE), "{").unwrap();
    assert!(relations::read(dir.path()).is_err());
    assert!(suggest_groups(&rel.affinity, 0).is_err());
    assert!(suggest_groups(&rel.affinity, TASKS + 1).is_err());
    assert!(RelationTracker::new(TASKS, 0).is_err());
}

/// The score as documented, computed independently of the library.
fn reference_score(a: &TaskMatrix, labels: &[usize], k: usize) -> f64 {
    let mut total = 0.0;
    for g in 0..k {
        let members: Vec<usize> = (0..labels.len()).filter(|&t| labels[t] == g).collect();
        if members.len() < 2 {
            continue;
        }
        for &j in &members {
            let onto: f64 = members
                .iter()
                .filter(|&&i| i != j)
                .map(|&i| a.get(i, j))
                .sum();
            total += onto / (members.len() - 1) as f64;
        }
    }
    total
}

/// The best score over every assignment of `t` tasks to `k` labels that uses
/// each label.
fn brute_force(a: &TaskMatrix, k: usize) -> f64 {
    let t = a.tasks();
    let mut best = f64::NEG_INFINITY;
    let mut labels = vec![0usize; t];
    for code in 0..k.pow(t as u32) {
        let mut c = code;
        for l in labels.iter_mut() {
            *l = c % k;
            c /= k;
        }
        if (0..k).all(|g| labels.contains(&g)) {
            best = best.max(reference_score(a, &labels, k));
        }
    }
    best
}

fn random_matrix(rng: &mut ChaCha8Rng, t: usize) -> TaskMatrix {
    TaskMatrix::from_fn(t, |_, _| rng.gen_range(-1.0..1.0)).unwrap()
}

fn labels_of(groups: &[Vec<usize>], t: usize) -> Vec<usize> {
    let mut labels = vec![usize::MAX; t];
    for (g, members) in groups.iter().enumerate() {
        for &m in members {
            assert_eq!(labels[m], usize::MAX, "task {m} is in two groups");
            labels[m] = g;
        }
    }
    assert!(
        labels.iter().all(|&l| l != usize::MAX),
        "a task is in no group"
    );
    labels
}

#[test]
fn the_grouping_search_matches_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(2021);
    let mut greedy_optimal = 0;
    let mut cases = 0;
    for t in 1..=7 {
        for _ in 0..4 {
            let a = random_matrix(&mut rng, t);
            for k in 1..=t {
                let want = brute_force(&a, k);
                let got = exhaustive_groups(&a, k).unwrap();
                assert_eq!(got.groups.len(), k);
                let labels = labels_of(&got.groups, t);
                let own = reference_score(&a, &labels, k);
                assert!(
                    (own - got.score).abs() < 1e-12,
                    "reported score {} vs {own}",
                    got.score
                );
                assert!(
                    (got.score - want).abs() < 1e-12,
                    "t {t} k {k}: {} vs brute force {want}",
                    got.score
                );
                let greedy = greedy_groups(&a, k).unwrap();
                assert_eq!(greedy.groups.len(), k);
                let labels = labels_of(&greedy.groups, t);
                assert!((reference_score(&a, &labels, k) - greedy.score).abs() < 1e-12);
                assert!(greedy.score <= want + 1e-12);
                cases += 1;
                if greedy.score >= want - 1e-12 {
                    greedy_optimal += 1;
                }
            }
        }
    }
    eprintln!("greedy search optimal in {greedy_optimal} of {cases} random cases");
}

#[test]
fn the_greedy_search_recovers_planted_clusters_beyond_the_exhaustive_limit() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let t = 15;
    let of = |x: usize| (x * 7) % 3; // clusters interleaved over the indices
    let a = TaskMatrix::from_fn(t, |i, j| {
        let base = if of(i) == of(j) { 0.4 } else { -0.2 };
        base + rng.gen_range(-0.15..0.15)
    })
    .unwrap();
    let g = suggest_groups(&a, 3).unwrap();
    assert!(!g.exhaustive);
    let mut want: Vec<Vec<usize>> = (0..3)
        .map(|c| (0..t).filter(|&x| of(x) == c).collect())
        .collect();
    want.sort_by_key(|m| m[0]);
    assert_eq!(g.groups, want);
}
