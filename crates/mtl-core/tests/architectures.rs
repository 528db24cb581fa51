//! Behaviour of the multi-task architectures: output shapes, parameter
//! groups and counts, gates, gradients against finite differences, PLE versus
//! CGC, and training on a small seeded two-task problem.

use mtl_core::arch::{build_model, ArchConfig, EncoderConfig, HeadConfig, MultiTaskModel};
use mtl_core::nn::Activation;
use mtl_core::{CoreError, Graph, ParamGroup, ParamStore, TaskKind, TaskSpec, Tensor, Var};
use mtl_optim::{OptimizerConfig, ParamGroup as OptimGroup};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Central-difference step for smooth (tanh) networks, extrapolated with the
/// half step (Richardson). The loss is a sum of ~50 f32 terms of order 1, so
/// rounding contributes ~3 · 1e-5 / 2e-2 ≈ 1.5e-3 at most; the truncation
/// left is `O(h⁴)`.
const STEP: f32 = 1e-2;
/// Smaller step for networks with max pooling, so that a perturbation rarely
/// moves a pooling window's maximum; rounding then costs ~1e-5 / 2e-3 ≈ 5e-3
/// in the worst case, ~5e-4 typically.
const POOL_STEP: f32 = 1e-3;
/// Absolute tolerance on a gradient entry (see [`STEP`], [`POOL_STEP`]).
const ABS_TOL: f32 = 3e-3;
/// Relative tolerance on a gradient entry.
const REL_TOL: f32 = 2e-2;
/// A softmax row sums to one up to f32 rounding of a handful of terms.
const SUM_TOL: f32 = 1e-6;

fn task(name: &str, kind: TaskKind) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        kind,
    }
}

fn every_kind() -> Vec<TaskSpec> {
    vec![
        task("digit", TaskKind::Classification { classes: 4 }),
        task("odd", TaskKind::Binary),
        task("tags", TaskKind::Multilabel { labels: 3 }),
        task("value", TaskKind::Regression { outputs: 2 }),
        task("groups", TaskKind::Clustering { clusters: 5 }),
    ]
}

fn mlp(hidden: &[usize], activation: Activation) -> EncoderConfig {
    EncoderConfig::Mlp {
        hidden: hidden.to_vec(),
        dropout: 0.0,
        activation,
        layer_norm: false,
    }
}

fn head() -> HeadConfig {
    HeadConfig::default()
}

fn every_arch() -> Vec<ArchConfig> {
    vec![
        ArchConfig::Hps { head: head() },
        ArchConfig::Mmoe {
            experts: 3,
            head: head(),
        },
        ArchConfig::Cgc {
            shared_experts: 2,
            task_experts: 1,
            head: head(),
        },
        ArchConfig::Ple {
            layers: 2,
            shared_experts: 2,
            task_experts: 1,
            head: head(),
        },
        ArchConfig::CrossStitch {
            self_weight: 0.9,
            head: head(),
        },
        ArchConfig::Mtan { head: head() },
        ArchConfig::DselectK {
            experts: 4,
            k: 2,
            gamma: 1.0,
            entropy: 0.05,
            head: head(),
        },
        ArchConfig::Ltb {
            blocks: vec![2],
            search_epochs: 20,
            temperature: 5.0,
            final_temperature: 0.1,
            head: head(),
        },
    ]
}

fn build(
    arch: &ArchConfig,
    encoder: &EncoderConfig,
    input: &[usize],
    tasks: &[TaskSpec],
    seed: u64,
) -> (Box<dyn MultiTaskModel>, ParamStore) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ps = ParamStore::new();
    let model = build_model(arch, encoder, input, tasks, &mut ps, &mut rng).unwrap();
    (model, ps)
}

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), shape).unwrap()
}

#[test]
fn outputs_have_the_shape_of_each_task_kind() {
    let tasks = every_kind();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = random(&[7, 6], &mut rng);
    for arch in every_arch() {
        let (model, mut ps) = build(&arch, &mlp(&[8, 4], Activation::Relu), &[6], &tasks, 1);
        assert_eq!(model.name(), arch.name());
        let mut g = Graph::new(0);
        let xv = g.input(x.clone());
        let out = model.forward(&mut g, &mut ps, xv).unwrap();
        let shapes: Vec<Vec<usize>> = out
            .outputs
            .iter()
            .map(|&y| g.shape(y).unwrap().to_vec())
            .collect();
        assert_eq!(
            shapes,
            vec![vec![7, 4], vec![7, 1], vec![7, 3], vec![7, 2], vec![7, 5]],
            "{}",
            arch.name()
        );
        // The clustering head returns probabilities.
        let q = g.value(out.outputs[4]).unwrap();
        for row in q.data().chunks(5) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < SUM_TOL);
            assert!(row.iter().all(|&p| p > 0.0));
        }
        let representation = out.representation.map(|z| g.shape(z).unwrap().to_vec());
        let expected = match arch.name() {
            "hps" => Some(vec![7, 4]),
            "mmoe" => Some(vec![7, 3 * 4]),
            "cgc" => Some(vec![7, 2 * 4]),
            "dselect-k" => Some(vec![7, 4 * 4]),
            _ => None, // ple with two layers, cross-stitch, mtan, ltb
        };
        assert_eq!(representation, expected, "{}", arch.name());
        assert_eq!(model.has_representation(), expected.is_some());
        let centroids = model.heads()[4].centroids().unwrap();
        assert_eq!(ps.view(centroids).unwrap().name, "heads.groups.centroids");
        assert_eq!(ps.view(centroids).unwrap().shape, vec![5, 5]);
        assert!(model.heads()[0].centroids().is_none());
    }
}

#[test]
fn lenet_encoder_reads_mnist_sized_images() {
    let lenet: EncoderConfig = toml::from_str("name = \"lenet\"").unwrap();
    let tasks = [
        task("left", TaskKind::Classification { classes: 10 }),
        task("right", TaskKind::Classification { classes: 10 }),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let images = random(&[3, 1, 28, 28], &mut rng);
    for mut arch in every_arch() {
        if let ArchConfig::Ltb { blocks, .. } = &mut arch {
            // LeNet has three stages: two layers of blocks, then the tasks'.
            *blocks = vec![2, 2];
        }
        let (model, mut ps) = build(&arch, &lenet, &[1, 28, 28], &tasks, 2);
        let mut g = Graph::new(0);
        // Evaluation mode: LTB would draw new Gumbel noise for the second pass.
        g.set_training(false);
        let x = g.input(images.clone());
        let out = model.forward(&mut g, &mut ps, x).unwrap();
        for &y in &out.outputs {
            assert_eq!(g.shape(y).unwrap(), &[3, 10], "{}", arch.name());
        }
        // A batch of flat images is read the same way.
        let flat = g.input(images.reshape(&[3, 784]).unwrap());
        let again = model.forward(&mut g, &mut ps, flat).unwrap();
        assert_eq!(
            g.value(again.outputs[1]).unwrap(),
            g.value(out.outputs[1]).unwrap()
        );
    }
    // The hard-sharing LeNet is Sener & Koltun's MultiLeNet: 21 330 shared parameters.
    let (_, ps) = build(&every_arch()[0], &lenet, &[1, 28, 28], &tasks, 2);
    assert_eq!(ps.group_range(&ParamGroup::Shared), Some(0..21_330));
}

#[test]
fn gate_weights_sum_to_one_for_every_example() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Binary),
        task("c", TaskKind::Regression { outputs: 1 }),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = random(&[11, 5], &mut rng).map(|v| 4.0 * v);
    let expected_gates = [
        ("mmoe", vec!["gates.a", "gates.b", "gates.c"], 3),
        ("cgc", vec!["gates.a", "gates.b", "gates.c"], 2 + 1),
        (
            "ple",
            vec![
                "layers.0.gates.a",
                "layers.0.gates.b",
                "layers.0.gates.c",
                "layers.0.shared_gate",
                "layers.1.gates.a",
                "layers.1.gates.b",
                "layers.1.gates.c",
            ],
            2 + 1,
        ),
    ];
    for (arch, (name, names, width)) in every_arch()[1..4].iter().zip(expected_gates) {
        assert_eq!(arch.name(), name);
        let (model, mut ps) = build(arch, &mlp(&[6], Activation::Relu), &[5], &tasks, 3);
        let mut g = Graph::new(0);
        let xv = g.input(x.clone());
        let out = model.forward(&mut g, &mut ps, xv).unwrap();
        let got: Vec<&str> = out.gates.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(got, names);
        for gate in &out.gates {
            let w = g.value(gate.weights).unwrap();
            // Task gates weigh their own experts and the shared ones; PLE's
            // shared gate weighs all 3 · 1 task experts and the 2 shared ones.
            let cols = if gate.name.ends_with("shared_gate") {
                3 + 2
            } else {
                width
            };
            assert_eq!(w.shape(), &[11, cols], "{}", gate.name);
            for row in w.data().chunks(cols) {
                assert!(
                    (row.iter().sum::<f32>() - 1.0).abs() < SUM_TOL,
                    "{}: {row:?}",
                    gate.name
                );
                assert!(row.iter().all(|&p| p > 0.0 && p < 1.0));
            }
            // Different inputs get different weights: the gate reads x.
            assert_ne!(w.data()[..cols], w.data()[cols..2 * cols]);
        }
    }
}

/// `Σ_t Σ w_t ⊙ y_t + Σ_t penalty_t` for fixed random weights, on a fresh
/// graph (the same seed, so the same dropout masks and Gumbel noise).
fn weighted_outputs(
    model: &dyn MultiTaskModel,
    ps: &mut ParamStore,
    x: &Tensor,
    weights: &[Tensor],
) -> f64 {
    let mut g = Graph::new(0);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, ps, xv).unwrap();
    let penalties: f64 = (0..out.outputs.len())
        .filter_map(|t| out.penalty(t))
        .map(|p| g.value(p).unwrap().item().unwrap() as f64)
        .sum();
    let outputs: f64 = out
        .outputs
        .iter()
        .zip(weights)
        .map(|(&y, w)| {
            g.value(y)
                .unwrap()
                .data()
                .iter()
                .zip(w.data())
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
        })
        .sum();
    outputs + penalties
}

/// Compares the backward pass (accumulated into the flat layout) with central
/// differences for every parameter; returns the number of entries checked
/// and the largest error relative to the tolerance's scale,
/// `|a − n| / (1 + max(|a|, |n|))`.
fn gradient_check(
    model: &dyn MultiTaskModel,
    ps: &mut ParamStore,
    input: &[usize],
    step: f32,
    seed: u64,
) -> (usize, f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shape = vec![3];
    shape.extend(input);
    let x = random(&shape, &mut rng);
    let mut g = Graph::new(0);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, ps, xv).unwrap();
    let weights: Vec<Tensor> = out
        .outputs
        .iter()
        .map(|&y| random(g.shape(y).unwrap(), &mut rng))
        .collect();
    let mut seeds: Vec<(Var, Tensor)> = out.outputs.iter().copied().zip(weights.clone()).collect();
    seeds.extend(
        (0..out.outputs.len())
            .filter_map(|t| out.penalty(t))
            .map(|p| (p, Tensor::scalar(1.0))),
    );
    let grads = g.backward_from(&seeds, &[]).unwrap();
    let mut analytic = vec![0.0f32; ps.len()];
    grads
        .accumulate_params(&g, 0..ps.len(), &mut analytic)
        .unwrap();
    let mut worst = 0.0f32;
    for (i, &a) in analytic.iter().enumerate() {
        let original = ps.flat()[i];
        let mut central = |h: f32| {
            ps.flat_mut()[i] = original + h;
            let plus = weighted_outputs(model, ps, &x, &weights);
            ps.flat_mut()[i] = original - h;
            let minus = weighted_outputs(model, ps, &x, &weights);
            ps.flat_mut()[i] = original;
            (plus - minus) / (2.0 * h as f64)
        };
        // Richardson extrapolation: the h² truncation terms of the two
        // central differences cancel, which matters where layer
        // normalisation over few features curves sharply.
        let (coarse, fine) = (central(step), central(step / 2.0));
        let numeric = ((4.0 * fine - coarse) / 3.0) as f32;
        worst = worst.max((a - numeric).abs() / (1.0 + numeric.abs().max(a.abs())));
        assert!(
            (a - numeric).abs() <= ABS_TOL + REL_TOL * numeric.abs().max(a.abs()),
            "{}: parameter {} (flat {i}): analytic {a} vs numeric {numeric}",
            model.name(),
            ps.views()
                .iter()
                .find(|v| v.range().contains(&i))
                .map_or("?", |v| v.name.as_str()),
        );
    }
    (ps.len(), worst)
}

#[test]
fn gradients_match_finite_differences_through_every_architecture() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Clustering { clusters: 2 }),
    ];
    let head = HeadConfig {
        tower: vec![3],
        activation: Activation::Tanh,
        embedding: Some(2),
        alpha: 1.0,
    };
    let encoder = EncoderConfig::Mlp {
        hidden: vec![4, 3],
        dropout: 0.0,
        activation: Activation::Tanh,
        layer_norm: true,
    };
    // Beyond the defaults: DSelect-k with 3 experts (one unused code) and the
    // entropy penalty, so both penalties are checked too.
    let mut archs = every_arch();
    archs.push(ArchConfig::DselectK {
        experts: 3,
        k: 2,
        gamma: 2.0,
        entropy: 0.1,
        head: head.clone(),
    });
    for mut arch in archs {
        match &mut arch {
            ArchConfig::Hps { head: h }
            | ArchConfig::Mmoe { head: h, .. }
            | ArchConfig::Cgc { head: h, .. }
            | ArchConfig::Ple { head: h, .. }
            | ArchConfig::CrossStitch { head: h, .. }
            | ArchConfig::Mtan { head: h }
            | ArchConfig::DselectK { head: h, .. }
            | ArchConfig::Ltb { head: h, .. } => *h = head.clone(),
        }
        let (model, mut ps) = build(&arch, &encoder, &[4], &tasks, 4);
        let (checked, worst) = gradient_check(model.as_ref(), &mut ps, &[4], STEP, 6);
        eprintln!(
            "{}: {checked} entries, worst scaled error {worst:.2e}",
            arch.name()
        );
        assert!(checked > 60, "{}: {checked}", arch.name());
    }
}

#[test]
fn gradients_match_finite_differences_through_lenet_encoders() {
    let lenet = EncoderConfig::Lenet {
        conv1: 2,
        conv2: 3,
        kernel: 3,
        fc: 4,
        dropout: 0.0,
        activation: Activation::Tanh,
    };
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Regression { outputs: 1 }),
    ];
    // 12 → conv3 → 10 → pool → 5 → conv3 → 3 → pool → 1.
    let archs = every_arch();
    let ltb = ArchConfig::Ltb {
        blocks: vec![2, 2],
        search_epochs: 3,
        temperature: 1.0,
        final_temperature: 0.1,
        head: head(),
    };
    for arch in [&archs[0], &archs[4], &archs[5], &archs[6], &ltb] {
        let (model, mut ps) = build(arch, &lenet, &[1, 12, 12], &tasks, 7);
        let (_, worst) = gradient_check(model.as_ref(), &mut ps, &[1, 12, 12], POOL_STEP, 8);
        eprintln!("{} (lenet): worst scaled error {worst:.2e}", arch.name());
    }
}

#[test]
fn ple_with_one_layer_equals_cgc_with_the_same_parameters() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Multilabel { labels: 2 }),
    ];
    let encoder = mlp(&[5, 4], Activation::Relu);
    let cgc = ArchConfig::Cgc {
        shared_experts: 2,
        task_experts: 2,
        head: head(),
    };
    let ple = ArchConfig::Ple {
        layers: 1,
        shared_experts: 2,
        task_experts: 2,
        head: head(),
    };
    let (cgc, cgc_ps) = build(&cgc, &encoder, &[6], &tasks, 10);
    let (ple, mut ple_ps) = build(&ple, &encoder, &[6], &tasks, 99);
    assert_eq!(cgc_ps.len(), ple_ps.len());
    assert_ne!(cgc_ps.flat(), ple_ps.flat());
    for view in cgc_ps.views() {
        let id = ple_ps
            .find(&format!("layers.0.{}", view.name))
            .or_else(|| ple_ps.find(&view.name))
            .unwrap_or_else(|| panic!("ple has no counterpart of {}", view.name));
        assert_eq!(ple_ps.view(id).unwrap().group, view.group);
        ple_ps
            .values_mut(id)
            .unwrap()
            .copy_from_slice(&cgc_ps.flat()[view.range()]);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x = random(&[9, 6], &mut rng);
    let mut g = Graph::new(0);
    let xv = g.input(x);
    let mut cgc_ps = cgc_ps;
    let a = cgc.forward(&mut g, &mut cgc_ps, xv).unwrap();
    let b = ple.forward(&mut g, &mut ple_ps, xv).unwrap();
    for (ya, yb) in a.outputs.iter().zip(&b.outputs) {
        assert_eq!(g.value(*ya).unwrap(), g.value(*yb).unwrap());
    }
    let (za, zb) = (a.representation.unwrap(), b.representation.unwrap());
    assert_eq!(g.value(za).unwrap(), g.value(zb).unwrap());
    assert!(ple.has_representation());
}

#[test]
fn parameter_counts_and_groups_follow_the_formulas() {
    // Input n = 6, encoder hidden [5, 4] (d = 4), tasks with 3 and 2 outputs.
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Regression { outputs: 2 }),
    ];
    let (n, d, t) = (6, 4, 2);
    let encoder_params = (n * 5 + 5) + (5 * d + d);
    let heads = (d * 3 + 3) + (d * 2 + 2);
    let dense = |i: usize, o: usize| i * o + o;
    let deeper = dense(d, d);
    // MTAN: per task, attention on stage 1 (5 → 5) and stage 2 ([4 ; 4] → 4).
    let attention = dense(5, 5) + dense(2 * d, d);
    let cases: [(ArchConfig, usize, usize); 8] = [
        (ArchConfig::Hps { head: head() }, encoder_params, heads),
        (
            ArchConfig::Mmoe {
                experts: 3,
                head: head(),
            },
            3 * encoder_params,
            t * dense(n, 3) + heads,
        ),
        (
            ArchConfig::Cgc {
                shared_experts: 2,
                task_experts: 1,
                head: head(),
            },
            2 * encoder_params,
            t * (encoder_params + dense(n, 1 + 2)) + heads,
        ),
        (
            ArchConfig::Ple {
                layers: 3,
                shared_experts: 2,
                task_experts: 1,
                head: head(),
            },
            // Layer 0: encoders and a shared gate over T·1 + 2 experts;
            // layer 1: d → d experts and a shared gate on d inputs; layer 2: no shared gate.
            2 * encoder_params + dense(n, t + 2) + 2 * deeper + dense(d, t + 2) + 2 * deeper,
            t * ((encoder_params + dense(n, 3)) + 2 * (deeper + dense(d, 3))) + heads,
        ),
        (
            ArchConfig::CrossStitch {
                self_weight: 0.9,
                head: head(),
            },
            2 * t * t,
            t * encoder_params + heads,
        ),
        (
            ArchConfig::Mtan { head: head() },
            encoder_params,
            t * attention + heads,
        ),
        (
            // 4 experts: m = 2 bits; per task k·m = 4 selector logits and k = 2
            // selector weights, each a dense layer on the input.
            ArchConfig::DselectK {
                experts: 4,
                k: 2,
                gamma: 1.0,
                entropy: 0.0,
                head: head(),
            },
            4 * encoder_params,
            t * (dense(n, 2 * 2) + dense(n, 2)) + heads,
        ),
        (
            // Layer 0: three shared first stages; layer 1: per task its
            // second stage and 3 branching logits.
            ArchConfig::Ltb {
                blocks: vec![3],
                search_epochs: 1,
                temperature: 1.0,
                final_temperature: 1.0,
                head: head(),
            },
            3 * dense(n, 5),
            t * (3 + dense(5, d)) + heads,
        ),
    ];
    for (arch, shared, specific) in cases {
        let (model, ps) = build(&arch, &mlp(&[5, 4], Activation::Relu), &[n], &tasks, 13);
        let name = arch.name();
        assert_eq!(
            ps.group_range(&ParamGroup::Shared),
            Some(0..shared),
            "{name}"
        );
        assert_eq!(ps.len(), shared + specific, "{name}");
        // The last shared layer is one contiguous range inside the shared group.
        let mut ranges: Vec<_> = model
            .last_shared_params()
            .iter()
            .map(|&id| ps.view(id).unwrap().clone())
            .collect();
        assert!(!ranges.is_empty(), "{name}");
        assert!(
            ranges.iter().all(|v| v.group == ParamGroup::Shared),
            "{name}"
        );
        ranges.sort_by_key(|v| v.offset);
        assert!(
            ranges.windows(2).all(|w| w[0].range().end == w[1].offset),
            "{name}"
        );
        // Every head is in its task's group.
        for task in &tasks {
            let id = ps.find(&format!("heads.{}.0.weight", task.name)).unwrap();
            assert_eq!(ps.view(id).unwrap().group, ParamGroup::task(&task.name));
        }
    }
}

#[test]
fn cross_stitch_units_start_near_the_identity() {
    let tasks = [
        task("a", TaskKind::Binary),
        task("b", TaskKind::Binary),
        task("c", TaskKind::Binary),
    ];
    let arch = ArchConfig::CrossStitch {
        self_weight: 0.5,
        head: head(),
    };
    let (_, ps) = build(&arch, &mlp(&[4, 4], Activation::Relu), &[2], &tasks, 14);
    let unit = ps.values(ps.find("cross_stitch.1").unwrap()).unwrap();
    // 0.5 on the diagonal, (1 − 0.5) / 2 elsewhere, all exact in f32.
    assert_eq!(unit, &[0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.25, 0.25, 0.5]);
    let column = ps.find("columns.c.0.weight").unwrap();
    assert_eq!(ps.view(column).unwrap().group, ParamGroup::task("c"));
}

#[test]
fn an_architecture_without_a_representation_says_why() {
    let tasks = [task("a", TaskKind::Binary), task("b", TaskKind::Binary)];
    let encoder = mlp(&[4, 4], Activation::Relu);
    for arch in every_arch() {
        let (model, _) = build(&arch, &encoder, &[3], &tasks, 15);
        assert_eq!(
            model.why_no_representation().is_empty(),
            model.has_representation(),
            "{}",
            arch.name()
        );
    }
}

#[test]
fn bad_inputs_and_tasks_are_errors() {
    let encoder = mlp(&[4], Activation::Relu);
    let arch = ArchConfig::Mmoe {
        experts: 2,
        head: head(),
    };
    let one = [task("a", TaskKind::Binary)];
    let (model, mut ps) = build(&arch, &encoder, &[3], &one, 16);
    let mut g = Graph::new(0);
    let x = g.input(Tensor::zeros(&[2, 5]));
    let err = model.forward(&mut g, &mut ps, x).unwrap_err();
    assert!(matches!(err, CoreError::InvalidShape { .. }), "{err}");

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ps = ParamStore::new();
    let twice = [task("a", TaskKind::Binary), task("a", TaskKind::Binary)];
    for tasks in [&twice[..], &[]] {
        for arch in every_arch() {
            assert!(build_model(&arch, &encoder, &[3], tasks, &mut ps, &mut rng).is_err());
        }
    }
    let lenet: EncoderConfig = toml::from_str("name = \"lenet\"").unwrap();
    let err = build_model(&arch, &lenet, &[784], &one, &mut ps, &mut rng).unwrap_err();
    assert!(err.to_string().contains("[784]"), "{err}");
}

/// A seeded two-task problem: `x ~ N(0, I_8)`, a random teacher
/// `h = tanh(W x)` with 16 units, task `a` = argmax of 3 linear scores of `h`,
/// task `b` = argmax of 2 others. Both depend on the same features.
struct TwoTasks {
    x: Tensor,
    a: Vec<usize>,
    b: Vec<usize>,
}

fn teacher_data(n: usize, seed: u64) -> TwoTasks {
    let mut teacher = ChaCha8Rng::seed_from_u64(1234);
    let w = Tensor::randn(&[16, 8], 0.0, 1.0 / 8f32.sqrt(), &mut teacher).unwrap();
    let sa = Tensor::randn(&[3, 16], 0.0, 1.0, &mut teacher).unwrap();
    let sb = Tensor::randn(&[2, 16], 0.0, 1.0, &mut teacher).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Tensor::randn(&[n, 8], 0.0, 1.0, &mut rng).unwrap();
    let h = x.matmul(&w, false, true).unwrap().map(f32::tanh);
    let a = h.matmul(&sa, false, true).unwrap().argmax_rows().unwrap();
    let b = h.matmul(&sb, false, true).unwrap().argmax_rows().unwrap();
    TwoTasks { x, a, b }
}

fn accuracy(pred: &[usize], truth: &[usize]) -> f32 {
    pred.iter().zip(truth).filter(|(p, t)| p == t).count() as f32 / truth.len() as f32
}

/// Trains with Adam (lr 0.01, batches of 64, 40 epochs) on the sum of the two
/// cross-entropies (and the architecture's penalties), calling the
/// architecture's schedule before every step as the training loop does;
/// returns the test accuracies.
fn train(arch: &ArchConfig, seed: u64) -> Trained {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Classification { classes: 2 }),
    ];
    let encoder = mlp(&[32, 16], Activation::Relu);
    let (model, mut ps) = build(arch, &encoder, &[8], &tasks, seed);
    let train = teacher_data(1024, 1);
    let test = teacher_data(1024, 2);
    let config: OptimizerConfig = serde_json::from_str(r#"{"name": "adam", "lr": 0.01}"#).unwrap();
    let mut opt = config.build(vec![OptimGroup::new(0..ps.len())]).unwrap();
    let mut g = Graph::new(seed);
    let mut grads = vec![0.0f32; ps.len()];
    let mut order: Vec<usize> = (0..1024).collect();
    let mut shuffle = ChaCha8Rng::seed_from_u64(seed);
    let mut step = 0;
    for epoch in 0..40 {
        for i in (1..order.len()).rev() {
            order.swap(i, shuffle.gen_range(0..=i));
        }
        for batch in order.chunks(64) {
            g.reset();
            model.begin_step(&mut ps, step, epoch).unwrap();
            step += 1;
            let x = g.input(train.x.gather_rows(batch).unwrap());
            let out = model.forward(&mut g, &mut ps, x).unwrap();
            let ya: Vec<usize> = batch.iter().map(|&i| train.a[i]).collect();
            let yb: Vec<usize> = batch.iter().map(|&i| train.b[i]).collect();
            let mut seeds = vec![
                (
                    g.cross_entropy(out.outputs[0], &ya, None, 0.0).unwrap(),
                    1.0,
                ),
                (
                    g.cross_entropy(out.outputs[1], &yb, None, 0.0).unwrap(),
                    1.0,
                ),
            ];
            seeds.extend((0..2).filter_map(|t| out.penalty(t)).map(|p| (p, 1.0)));
            let back = g.backward(&seeds).unwrap();
            grads.iter_mut().for_each(|v| *v = 0.0);
            back.accumulate_params(&g, 0..ps.len(), &mut grads).unwrap();
            opt.step(ps.flat_mut(), &grads).unwrap();
        }
    }
    g.reset();
    g.set_training(false);
    let x = g.input(test.x.clone());
    let out = model.forward(&mut g, &mut ps, x).unwrap();
    let pa = g.value(out.outputs[0]).unwrap().argmax_rows().unwrap();
    let pb = g.value(out.outputs[1]).unwrap().argmax_rows().unwrap();
    // The mean number of experts a gate gives a non-zero weight to, over
    // the gates and test examples (0 without gates).
    let counts: Vec<usize> = out
        .gates
        .iter()
        .flat_map(|gate| {
            let w = g.value(gate.weights).unwrap();
            let cols = w.shape()[1];
            w.data()
                .chunks(cols)
                .map(|row| row.iter().filter(|&&v| v > 0.0).count())
                .collect::<Vec<_>>()
        })
        .collect();
    let experts_used = counts.iter().sum::<usize>() as f32 / counts.len().max(1) as f32;
    Trained {
        a: accuracy(&pa, &test.a),
        b: accuracy(&pb, &test.b),
        experts_used,
    }
}

/// What [`train`] measures on the test set.
struct Trained {
    /// Accuracy on task `a`.
    a: f32,
    /// Accuracy on task `b`.
    b: f32,
    /// The mean number of experts a gate mixes for one example.
    experts_used: f32,
}

/// Every architecture learns both teacher tasks to at least this test
/// accuracy (reached: 0.92 to 0.95; the majority classes give 0.43 and 0.50).
const MIN_ACCURACY: f32 = 0.9;

#[test]
fn every_architecture_learns_a_two_task_teacher() {
    let test = teacher_data(1024, 2);
    let majority = |labels: &[usize], k: usize| {
        (0..k)
            .map(|c| labels.iter().filter(|&&l| l == c).count())
            .max()
            .unwrap_or(0) as f32
            / labels.len() as f32
    };
    eprintln!(
        "majority baselines: a {:.3}, b {:.3}",
        majority(&test.a, 3),
        majority(&test.b, 2)
    );
    for arch in every_arch() {
        let Trained { a, b, experts_used } = train(&arch, 21);
        eprintln!(
            "{}: a {a:.3}, b {b:.3}, {experts_used:.2} experts per gate and example",
            arch.name()
        );
        assert!(
            a >= MIN_ACCURACY && b >= MIN_ACCURACY,
            "{}: {a} {b}",
            arch.name()
        );
        if let ArchConfig::DselectK { k, experts, .. } = arch {
            // Softmax gates give every expert a share; DSelect-k's selectors
            // saturate on most examples (measured: 1.93 of 4 experts with
            // k = 2), so the mean stays well below the 4 experts.
            assert!(
                experts_used <= k as f32 + DSELECT_SLACK && experts_used < experts as f32,
                "dselect-k mixes {experts_used} experts on average"
            );
        }
    }
}

/// How far above `k` the mean number of mixed experts may be: a few test
/// examples still fall in a selector's cubic region after 40 epochs.
const DSELECT_SLACK: f32 = 0.5;

#[test]
fn same_seed_gives_bit_identical_outputs_with_dropout() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Binary),
    ];
    let encoder = EncoderConfig::Mlp {
        hidden: vec![8, 4],
        dropout: 0.3,
        activation: Activation::Gelu,
        layer_norm: false,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let x = random(&[5, 3], &mut rng);
    for arch in every_arch() {
        let run = || {
            let (model, mut ps) = build(&arch, &encoder, &[3], &tasks, 18);
            let mut g = Graph::new(19);
            let xv = g.input(x.clone());
            let out = model.forward(&mut g, &mut ps, xv).unwrap();
            let values: Vec<Vec<u32>> = out
                .outputs
                .iter()
                .map(|&y| {
                    g.value(y)
                        .unwrap()
                        .data()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect()
                })
                .collect();
            (ps.flat().to_vec(), values)
        };
        assert_eq!(run(), run(), "{}", arch.name());
    }
}

/// Shared gradients pushed through the representation agree with a full
/// backward pass up to the f32 rounding of a different summation order.
const CUT_TOL: f32 = 1e-5;

#[test]
fn the_representation_separates_shared_from_task_parameters() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Regression { outputs: 2 }),
    ];
    let single_layer_ple = ArchConfig::Ple {
        layers: 1,
        shared_experts: 2,
        task_experts: 1,
        head: head(),
    };
    let mut archs: Vec<ArchConfig> = every_arch()
        .into_iter()
        .filter(|a| matches!(a.name(), "hps" | "mmoe" | "cgc"))
        .collect();
    archs.push(single_layer_ple);
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let x = random(&[6, 5], &mut rng);
    for arch in archs {
        let (model, mut ps) = build(&arch, &mlp(&[7, 4], Activation::Tanh), &[5], &tasks, 21);
        let mut g = Graph::new(0);
        let xv = g.input(x.clone());
        let out = model.forward(&mut g, &mut ps, xv).unwrap();
        let z = out.representation.unwrap();
        let seeds: Vec<(Var, Tensor)> = out
            .outputs
            .iter()
            .map(|&y| (y, random(g.shape(y).unwrap(), &mut rng)))
            .collect();
        let shared = ps.group_range(&ParamGroup::Shared).unwrap();
        let mut full = vec![0.0f32; ps.len()];
        g.backward_from(&seeds, &[])
            .unwrap()
            .accumulate_params(&g, 0..ps.len(), &mut full)
            .unwrap();

        // Per task: stop at z, keep the task's own gradients and dL_t/dz.
        let mut staged = vec![0.0f32; ps.len()];
        let mut direction = Tensor::zeros(g.shape(z).unwrap());
        for seed in &seeds {
            let grads = g.backward_from(std::slice::from_ref(seed), &[z]).unwrap();
            direction.add_assign(grads.get(z).unwrap()).unwrap();
            let mut own = vec![0.0f32; ps.len()];
            grads.accumulate_params(&g, 0..ps.len(), &mut own).unwrap();
            assert!(
                own[shared.clone()].iter().all(|&v| v == 0.0),
                "{}: a shared parameter lies above the representation",
                arch.name()
            );
            staged.iter_mut().zip(&own).for_each(|(s, o)| *s += o);
        }
        // Then one pass from z reaches every shared parameter and nothing else.
        let mut trunk = vec![0.0f32; ps.len()];
        g.backward_from(&[(z, direction)], &[])
            .unwrap()
            .accumulate_params(&g, 0..ps.len(), &mut trunk)
            .unwrap();
        assert!(
            trunk[shared.end..].iter().all(|&v| v == 0.0),
            "{}",
            arch.name()
        );
        staged.iter_mut().zip(&trunk).for_each(|(s, t)| *s += t);
        for (i, (s, f)) in staged.iter().zip(&full).enumerate() {
            assert!(
                (s - f).abs() <= CUT_TOL * (1.0 + f.abs()),
                "{}: flat {i}: {s} vs {f}",
                arch.name()
            );
        }
        assert!(full[shared].iter().any(|&v| v != 0.0));
    }
}

fn ltb(blocks: &[usize], search_epochs: u64) -> ArchConfig {
    ArchConfig::Ltb {
        blocks: blocks.to_vec(),
        search_epochs,
        temperature: 4.0,
        final_temperature: 0.25,
        head: head(),
    }
}

/// The values of the buffer called `name`.
fn buffer(ps: &ParamStore, name: &str) -> Vec<f32> {
    let view = ps
        .buffer_views()
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no buffer {name}"));
    ps.buffers_flat()[view.offset..view.offset + view.len].to_vec()
}

fn set(ps: &mut ParamStore, name: &str, values: &[f32]) {
    let id = ps
        .find(name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    ps.values_mut(id).unwrap().copy_from_slice(values);
}

/// The outputs of a training-mode forward pass on a graph seeded with `seed`.
fn outputs_bits(
    model: &dyn MultiTaskModel,
    ps: &mut ParamStore,
    x: &Tensor,
    seed: u64,
) -> Vec<u32> {
    let mut g = Graph::new(seed);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, ps, xv).unwrap();
    out.outputs
        .iter()
        .flat_map(|&y| g.value(y).unwrap().data().to_vec())
        .map(f32::to_bits)
        .collect()
}

#[test]
fn ltb_searches_with_one_gumbel_sample_per_block_and_step() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Binary),
    ];
    let (model, mut ps) = build(
        &ltb(&[2, 3], 4),
        &mlp(&[5, 4, 3], Activation::Tanh),
        &[6],
        &tasks,
        30,
    );
    set(&mut ps, "branching.2.a", &[0.5, -1.0, 2.0]);
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let x = random(&[5, 6], &mut rng);

    model.begin_step(&mut ps, 0, 1).unwrap();
    // 4 · (1/16)^(1/4) = 2.
    assert_eq!(buffer(&ps, "branching.temperature"), vec![2.0]);
    assert_eq!(buffer(&ps, "branching.tree"), vec![-1.0; 5]);

    let mut g = Graph::new(32);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, &mut ps, xv).unwrap();
    let names: Vec<&str> = out.gates.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "branching.1.0",
            "branching.1.1",
            "branching.1.2",
            "branching.2.a",
            "branching.2.b"
        ]
    );
    for gate in &out.gates {
        let w = g.value(gate.weights).unwrap();
        let cols = w.shape()[1];
        let rows: Vec<&[f32]> = w.data().chunks(cols).collect();
        assert_eq!(rows.len(), 5);
        // One sample for the whole batch, a point of the simplex.
        assert!(rows.iter().all(|r| *r == rows[0]), "{}", gate.name);
        assert!((rows[0].iter().sum::<f32>() - 1.0).abs() < SUM_TOL);
    }
    // The same graph seed gives the same noise, another seed other noise.
    let first = outputs_bits(model.as_ref(), &mut ps, &x, 32);
    assert_eq!(first, outputs_bits(model.as_ref(), &mut ps, &x, 32));
    assert_ne!(first, outputs_bits(model.as_ref(), &mut ps, &x, 33));

    // Evaluation leaves the noise out: softmax(α/τ) with τ = 2.
    let mut g = Graph::new(0);
    g.set_training(false);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, &mut ps, xv).unwrap();
    let task_a = out
        .gates
        .iter()
        .find(|w| w.name == "branching.2.a")
        .unwrap();
    let got = &g.value(task_a.weights).unwrap().data()[..3];
    let e: Vec<f32> = [0.25f32, -0.5, 1.0].iter().map(|v| v.exp()).collect();
    let total: f32 = e.iter().sum();
    for (g, e) in got.iter().zip(&e) {
        assert!((g - e / total).abs() < 1e-6, "{got:?}");
    }
}

#[test]
fn ltb_fixes_the_likeliest_parents_and_keeps_them_in_its_buffers() {
    let tasks = [
        task("a", TaskKind::Classification { classes: 3 }),
        task("b", TaskKind::Binary),
    ];
    let arch = ltb(&[2, 3], 4);
    let encoder = mlp(&[5, 4, 3], Activation::Tanh);
    let (model, mut ps) = build(&arch, &encoder, &[6], &tasks, 40);
    // Layer 1: blocks 0 and 2 prefer block 1 of layer 0, block 1 ties (the
    // first wins). Layer 2: task a takes block 2, task b block 0. Block 1 of
    // layer 1, and block 0 of layer 0 below it, are then reached by no task.
    set(&mut ps, "branching.1.0", &[-1.0, 1.0]);
    set(&mut ps, "branching.1.1", &[0.3, 0.3]);
    set(&mut ps, "branching.1.2", &[0.0, 0.1]);
    set(&mut ps, "branching.2.a", &[0.5, -1.0, 2.0]);
    set(&mut ps, "branching.2.b", &[3.0, 2.9, -4.0]);
    for epoch in 0..4 {
        model.begin_step(&mut ps, 10 * epoch, epoch).unwrap();
        assert_eq!(buffer(&ps, "branching.tree"), vec![-1.0; 5]);
    }
    model.begin_step(&mut ps, 40, 4).unwrap();
    assert_eq!(buffer(&ps, "branching.tree"), vec![1.0, 0.0, 1.0, 2.0, 0.0]);
    let temperature = buffer(&ps, "branching.temperature");

    // Fixed: no more branching weights, and the logits no longer matter.
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let x = random(&[4, 6], &mut rng);
    let before = outputs_bits(model.as_ref(), &mut ps, &x, 1);
    set(&mut ps, "branching.2.a", &[9.0, 0.0, 0.0]);
    set(&mut ps, "branching.1.0", &[5.0, -5.0]);
    assert_eq!(before, outputs_bits(model.as_ref(), &mut ps, &x, 1));
    // Later steps keep the tree, whatever the logits have become.
    model.begin_step(&mut ps, 50, 5).unwrap();
    assert_eq!(buffer(&ps, "branching.tree"), vec![1.0, 0.0, 1.0, 2.0, 0.0]);
    assert_eq!(buffer(&ps, "branching.temperature"), temperature);

    // Only the reached blocks get gradients: the logits, layer 1's block 1
    // (which no task reads) and layer 0's block 0 (read only by it) get none. The gradients match finite
    // differences through the fixed tree.
    let mut g = Graph::new(1);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, &mut ps, xv).unwrap();
    assert!(out.gates.is_empty());
    let seeds: Vec<(Var, f32)> = out
        .outputs
        .iter()
        .map(|&y| g.sum(y).map(|s| (s, 1.0)))
        .collect::<Result<_, _>>()
        .unwrap();
    let mut grads = vec![0.0f32; ps.len()];
    g.backward(&seeds)
        .unwrap()
        .accumulate_params(&g, 0..ps.len(), &mut grads)
        .unwrap();
    for view in ps.views() {
        let zero = grads[view.range()].iter().all(|&v| v == 0.0);
        let unused = view.name.starts_with("branching.")
            || view.name.starts_with("layers.1.1.")
            || view.name.starts_with("layers.0.0.");
        assert_eq!(zero, unused, "{}", view.name);
    }
    gradient_check(model.as_ref(), &mut ps, &[6], STEP, 42);

    // A fresh build with another seed, given the flat parameters and the
    // buffers (what a checkpoint holds), computes the same outputs bit for bit.
    let (again, mut restored) = build(&arch, &encoder, &[6], &tasks, 99);
    assert_ne!(restored.flat(), ps.flat());
    restored.flat_mut().copy_from_slice(ps.flat());
    restored
        .buffers_flat_mut()
        .copy_from_slice(ps.buffers_flat());
    assert_eq!(
        outputs_bits(again.as_ref(), &mut restored, &x, 7),
        outputs_bits(model.as_ref(), &mut ps, &x, 7)
    );

    // Damaged buffers (a parent that does not exist, a half-fixed tree, a
    // temperature of zero) are typed errors, not panics.
    let tree = ps
        .buffer_views()
        .iter()
        .find(|v| v.name == "branching.tree")
        .unwrap()
        .clone();
    for damaged in [
        [1.0, 0.0, 1.0, 3.0, 0.0],
        [-1.0, 0.0, 1.0, 2.0, 0.0],
        [1.0, 0.5, 1.0, 2.0, 0.0],
    ] {
        restored.buffers_flat_mut()[tree.offset..tree.offset + tree.len].copy_from_slice(&damaged);
        let mut g = Graph::new(0);
        let xv = g.input(x.clone());
        let err = again.forward(&mut g, &mut restored, xv).unwrap_err();
        assert!(err.to_string().contains("branching.tree"), "{err}");
    }
    restored
        .buffers_flat_mut()
        .copy_from_slice(ps.buffers_flat());
    let temperature = ps
        .buffer_views()
        .iter()
        .find(|v| v.name == "branching.temperature")
        .unwrap()
        .offset;
    restored.buffers_flat_mut()[temperature] = 0.0;
    let mut g = Graph::new(0);
    let xv = g.input(x.clone());
    assert!(again.forward(&mut g, &mut restored, xv).is_err());
}

#[test]
fn ltb_blocks_must_match_the_encoder_stages() {
    let tasks = [task("a", TaskKind::Binary), task("b", TaskKind::Binary)];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ps = ParamStore::new();
    let err = build_model(
        &ltb(&[2, 2], 3),
        &mlp(&[4, 4], Activation::Relu),
        &[3],
        &tasks,
        &mut ps,
        &mut rng,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ltb blocks") && err.contains("2 stages"),
        "{err}"
    );
    let toml_text = "arch = \"ltb\"\nblocks = [2]\n[encoder]\nname = \"mlp\"\nhidden = [4, 4]\n";
    assert!(
        toml::from_str::<mtl_core::arch::ModelConfig>(toml_text).is_err(),
        "search_epochs is required"
    );
}

/// The bits of the gradient of `Σ_t w_t ⊙ y_t` over `range` as the
/// per-node backward pass gives them, and as the pass that writes them
/// straight into one buffer does.
fn both_gradients(
    model: &dyn MultiTaskModel,
    ps: &mut ParamStore,
    x: &Tensor,
    range: std::ops::Range<usize>,
    rng: &mut ChaCha8Rng,
) -> (Vec<u32>, Vec<u32>) {
    let mut g = Graph::new(0);
    let xv = g.input(x.clone());
    let out = model.forward(&mut g, ps, xv).unwrap();
    let seeds: Vec<(Var, Tensor)> = out
        .outputs
        .iter()
        .map(|&y| (y, random(g.shape(y).unwrap(), rng)))
        .collect();
    // Cut where the parameters at `range` read their inputs, as the
    // last-shared-layer balancers' passes do, and not cut at all.
    let mut want = Vec::new();
    let mut got = Vec::new();
    for cut in [Vec::new(), g.boundary_of(range.clone())] {
        let mut per_node = vec![0.0f32; range.len()];
        g.backward_before(&seeds, &cut)
            .unwrap()
            .accumulate_params(&g, range.clone(), &mut per_node)
            .unwrap();
        // Whatever the buffer held before is overwritten.
        let mut direct = vec![f32::NAN; range.len()];
        g.param_gradients(&seeds, &cut, range.clone(), &mut direct)
            .unwrap();
        want.extend(per_node.iter().map(|x| x.to_bits()));
        got.extend(direct.iter().map(|x| x.to_bits()));
    }
    (want, got)
}

#[test]
fn parameter_gradients_in_one_buffer_have_the_bits_of_the_per_node_pass() {
    let lenet: EncoderConfig = toml::from_str("name = \"lenet\"").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let images = random(&[4, 1, 28, 28], &mut rng);
    let rows = random(&[5, 6], &mut rng);
    for mut arch in every_arch() {
        let (model, mut ps) = build(
            &arch,
            &mlp(&[7, 5], Activation::Relu),
            &[6],
            &every_kind(),
            3,
        );
        let shared = ps.group_range(&ParamGroup::Shared).unwrap();
        for range in [0..ps.len(), shared.clone(), shared.end..ps.len()] {
            let (want, got) = both_gradients(model.as_ref(), &mut ps, &rows, range, &mut rng);
            assert!(want == got, "{} (MLP)", arch.name());
            assert!(got.iter().any(|&b| b != 0), "{}", arch.name());
        }
        if let ArchConfig::Ltb { blocks, .. } = &mut arch {
            // LeNet has three stages: two layers of blocks, then the tasks'.
            *blocks = vec![2, 2];
        }
        let tasks = [
            task("left", TaskKind::Classification { classes: 10 }),
            task("sum", TaskKind::Regression { outputs: 1 }),
        ];
        let (model, mut ps) = build(&arch, &lenet, &[1, 28, 28], &tasks, 4);
        let range = 0..ps.len();
        let (want, got) = both_gradients(model.as_ref(), &mut ps, &images, range, &mut rng);
        assert!(want == got, "{} (LeNet)", arch.name());
    }
}
