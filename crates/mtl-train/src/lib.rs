//! # mtl-train
//!
//! Multi-task training in code. A [`Trainer`] takes any
//! [`MultiTaskModel`](mtl_core::arch::MultiTaskModel) (one of `mtl-core`'s
//! architectures or your own), its tasks, a balancer and an optimizer, and
//! trains on any [`BatchSource`](mtl_data::BatchSource): a bundled data set,
//! tensors in memory, or a closure over row indices. [`Trainer::fit`] runs
//! the epochs with evaluation, early stopping, checkpoints with bit-identical
//! resume, task relations, and [`Hook`]s of your own; the [`History`] comes
//! back as a value.
//!
//! A [`RunConfig`] (TOML) is one way to build a trainer, and [`run::fit`]
//! trains one into a run directory: that is what the `mtl` command does.
//!
//! ```
//! use mtl_core::arch::{build_model, ArchConfig, EncoderConfig, HeadConfig};
//! use mtl_core::{nn::Activation, ParamStore, TaskKind, TaskSpec, Targets, Tensor};
//! use mtl_data::InMemory;
//! use mtl_losses::task::Task;
//! use mtl_train::{FitOptions, Trainer};
//! use rand::SeedableRng;
//!
//! // Two regressions of three inputs: y1 = x0 + x1, y2 = x1 - x2.
//! let n = 256;
//! let x: Vec<f32> = (0..n * 3).map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0).collect();
//! let y1: Vec<f32> = (0..n).map(|r| x[3 * r] + x[3 * r + 1]).collect();
//! let y2: Vec<f32> = (0..n).map(|r| x[3 * r + 1] - x[3 * r + 2]).collect();
//! let data = InMemory::new(
//!     Tensor::from_vec(x, &[n, 3])?,
//!     vec![
//!         Targets::Values(Tensor::from_vec(y1, &[n, 1])?),
//!         Targets::Values(Tensor::from_vec(y2, &[n, 1])?),
//!     ],
//! )?;
//! let specs = vec![
//!     TaskSpec { name: "sum".into(), kind: TaskKind::Regression { outputs: 1 } },
//!     TaskSpec { name: "diff".into(), kind: TaskKind::Regression { outputs: 1 } },
//! ];
//! let mut ps = ParamStore::new();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let encoder = EncoderConfig::Mlp { hidden: vec![16], dropout: 0.0, activation: Activation::Relu, layer_norm: false };
//! let model = build_model(&ArchConfig::Hps { head: HeadConfig::default() }, &encoder, &[3], &specs, &mut ps, &mut rng)?;
//! let tasks = specs.into_iter().map(Task::with_default_loss).collect::<Result<Vec<_>, _>>()?;
//! let mut trainer = Trainer::builder(model, ps, tasks).seed(1).build()?;
//! let history = trainer.fit(&data, None, &FitOptions { epochs: 20, batch_size: 32, ..Default::default() }, &mut [])?;
//! let first = history.epochs[0].validation.losses[0];
//! let last = history.epochs.last().unwrap().validation.losses[0];
//! assert!(last < first / 4.0, "{first} -> {last}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod fit;
pub mod history;
pub mod hook;
pub mod memory;
pub mod parallel;
pub mod predict;
pub mod prepare;
pub mod relations;
pub mod run;
pub mod trainer;

pub use config::{
    DataConfig, DataSource, EarlyStoppingConfig, RelationsConfig, RunConfig, TrainConfig,
    ValidRunConfig,
};
pub use error::{Result, TrainError};
pub use fit::{CheckpointPolicy, EarlyStopping, EpochStats, FitOptions, History};
pub use history::EpochRecord;
pub use hook::{Control, Hook, StepEvent};
pub use run::{RunOptions, RunSummary};
pub use trainer::{
    BalancerSpec, Evaluation, OptimizerSpec, StepBatches, StepLog, Trainer, TrainerBuilder,
};
