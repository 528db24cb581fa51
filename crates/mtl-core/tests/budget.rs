//! The memory budget: analytic parameter counts equal those of built
//! models for every architecture, sizes that overflow name their key, and a
//! run over the limit is refused naming the key of its largest part.

use mtl_core::arch::{build_model, ArchConfig, EncoderConfig, HeadConfig, ModelConfig};
use mtl_core::budget::{
    address_space_limit, count_params, estimate, mem_available, BudgetError, BudgetInput,
    GradientRows,
};
use mtl_core::nn::Activation;
use mtl_core::{ParamGroup, ParamStore, TaskKind, TaskSpec};
use rand::SeedableRng;

fn tasks() -> Vec<TaskSpec> {
    vec![
        TaskSpec {
            name: "digit".into(),
            kind: TaskKind::Classification { classes: 10 },
        },
        TaskSpec {
            name: "size".into(),
            kind: TaskKind::Regression { outputs: 2 },
        },
        TaskSpec {
            name: "groups".into(),
            kind: TaskKind::Clustering { clusters: 3 },
        },
        TaskSpec {
            name: "tags".into(),
            kind: TaskKind::Multilabel { labels: 4 },
        },
    ]
}

fn archs(head: HeadConfig) -> Vec<ArchConfig> {
    vec![
        ArchConfig::Hps { head: head.clone() },
        ArchConfig::Mmoe {
            experts: 3,
            head: head.clone(),
        },
        ArchConfig::Cgc {
            shared_experts: 2,
            task_experts: 1,
            head: head.clone(),
        },
        ArchConfig::Ple {
            layers: 3,
            shared_experts: 2,
            task_experts: 2,
            head: head.clone(),
        },
        ArchConfig::CrossStitch {
            self_weight: 0.9,
            head: head.clone(),
        },
        ArchConfig::Mtan { head },
    ]
}

#[test]
fn analytic_counts_equal_built_models_for_every_architecture() {
    let mlp = EncoderConfig::Mlp {
        hidden: vec![12, 7],
        dropout: 0.0,
        activation: Activation::Relu,
        layer_norm: true,
    };
    let lenet = EncoderConfig::Lenet {
        conv1: 3,
        conv2: 4,
        kernel: 3,
        fc: 6,
        dropout: 0.0,
        activation: Activation::Relu,
    };
    let heads = [
        HeadConfig::default(),
        HeadConfig {
            tower: vec![5],
            embedding: Some(2),
            ..HeadConfig::default()
        },
    ];
    let mut checked = 0;
    for (encoder, shape) in [(mlp, vec![9]), (lenet, vec![2, 14, 13])] {
        for head in &heads {
            for arch in archs(head.clone()) {
                let model = ModelConfig {
                    arch: arch.clone(),
                    encoder: encoder.clone(),
                };
                let mut ps = ParamStore::new();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
                build_model(&arch, &encoder, &shape, &tasks(), &mut ps, &mut rng).unwrap();
                let shared: usize = ps
                    .views()
                    .iter()
                    .filter(|v| v.group == ParamGroup::Shared)
                    .map(|v| v.len())
                    .sum();
                let count = count_params(&model, &shape, &tasks()).unwrap();
                assert_eq!(count.total, ps.len() as u64, "{} {shape:?}", arch.name());
                assert_eq!(count.shared, shared as u64, "{} shared", arch.name());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 24);
}

fn mlp_model(arch: ArchConfig, width: usize) -> ModelConfig {
    ModelConfig {
        arch,
        encoder: EncoderConfig::Mlp {
            hidden: vec![width],
            dropout: 0.0,
            activation: Activation::Relu,
            layer_norm: false,
        },
    }
}

#[test]
fn a_run_over_the_limit_names_the_key_responsible() {
    let tasks = tasks();
    let input = |model, batch_size, rows| BudgetInput {
        model,
        input_shape: &[1000],
        tasks: &tasks,
        batch_size,
        optimizer_slots: 2,
        gradient_rows: rows,
    };
    // A 100 000-wide layer on 1000 inputs: 100 M parameters, 400 MB each of
    // values, gradients and two Adam slots.
    let wide = mlp_model(
        ArchConfig::Hps {
            head: HeadConfig::default(),
        },
        100_000,
    );
    let budget = estimate(&input(&wide, 32, GradientRows::None)).unwrap();
    let params =
        (1001 * 100_000 + 100_001 * 10 + 100_001 * 2 + 100_001 * 3 + 3 * 3 + 100_001 * 4) as u64;
    assert_eq!(budget.parts[0].bytes, params * 8);
    assert_eq!(budget.parts[1].bytes, params * 8);
    let e = budget.check(1 << 30).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "model.encoder.hidden: the run needs about 1.6 GiB but 1.0 GiB is available"
        ),
        "{msg}"
    );
    // The balancer's T x P rows of 64 experts dominate.
    let experts = mlp_model(
        ArchConfig::Mmoe {
            experts: 64,
            head: HeadConfig::default(),
        },
        1000,
    );
    let e = estimate(&input(&experts, 32, GradientRows::SharedParams))
        .unwrap()
        .check(1 << 30)
        .unwrap_err();
    assert!(e.to_string().starts_with("balancer:"), "{e}");
    // A huge batch makes the activations the largest part.
    let small = mlp_model(
        ArchConfig::Hps {
            head: HeadConfig::default(),
        },
        64,
    );
    let e = estimate(&input(&small, 10_000_000, GradientRows::None))
        .unwrap()
        .check(1 << 30)
        .unwrap_err();
    assert!(e.to_string().starts_with("loader.batch_size:"), "{e}");
    // A class count that overflows is an error naming it, not a panic.
    let absurd = vec![TaskSpec {
        name: "c".into(),
        kind: TaskKind::Classification {
            classes: usize::MAX,
        },
    }];
    let e = count_params(&small, &[4], &absurd).unwrap_err();
    assert_eq!(
        e,
        BudgetError::Overflow {
            key: "tasks.classes".into()
        }
    );
    let e = count_params(
        &mlp_model(
            ArchConfig::Hps {
                head: HeadConfig::default(),
            },
            usize::MAX,
        ),
        &[1 << 20],
        &absurd[..0],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "model.encoder.hidden: the sizes it implies overflow 64 bits"
    );
}

#[test]
fn available_memory_reads_proc_files() {
    let meminfo = "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n";
    assert_eq!(mem_available(meminfo), Some(8_000_000 * 1024));
    let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                  Max address space         1073741824           unlimited            bytes\n";
    assert_eq!(address_space_limit(limits), Some(1 << 30));
    let unlimited = "Max address space         unlimited            unlimited            bytes\n";
    assert_eq!(address_space_limit(unlimited), None);
    assert!(mtl_core::budget::available_memory().is_some_and(|b| b > 0));
}
