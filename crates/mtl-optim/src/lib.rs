//! Optimizers, learning-rate schedules and gradient clipping over flat `f32`
//! slices.
//!
//! `mtl-optim` depends on no other crate of the workspace: parameters are one
//! `&mut [f32]` and gradients one `&[f32]` of the same layout, so any
//! framework can use it.
//!
//! - [`Optimizer`]: one trait, implemented by [`Sgd`], [`Adam`] (also AdamW),
//!   [`RmsProp`], [`Adagrad`] and [`Adamax`], each following the update rule
//!   PyTorch documents for it so runs can be compared step by step.
//! - [`ParamGroup`]: ranges of the buffer with their own learning-rate factor
//!   and weight decay (e.g. no decay on biases).
//! - [`OptimizerState`]: the step count, rate and buffers, serialisable for
//!   checkpoints; loading it and continuing is bit-identical to not stopping.
//! - [`OptimizerConfig`], [`ScheduleConfig`], [`ClipConfig`]: serde
//!   configurations with PyTorch's defaults that refuse unknown keys.
//! - [`LrScheduler`]: constant, step, multi-step, exponential, cosine,
//!   linear warm-up before any of them, and reduce-on-plateau.
//! - [`clip_grad_norm`], [`clip_grad_value`]: return the norm before clipping.
//!
//! ```
//! use mtl_optim::{clip_grad_norm, LrScheduler, OptimizerConfig, ParamGroup, ScheduleConfig};
//!
//! // Minimise f(θ) = ½ Σ θᵢ², whose gradient is θ itself.
//! let mut theta = vec![1.0f32, -2.0, 0.5, 3.0];
//! let config: OptimizerConfig = serde_json::from_str(r#"{"name": "sgd", "lr": 0.1, "momentum": 0.9}"#)?;
//! // The last entry is a bias: its own group without weight decay.
//! let mut opt = config.build(vec![
//!     ParamGroup::new(0..3),
//!     ParamGroup::new(3..4).with_weight_decay(0.0),
//! ])?;
//! let mut schedule = LrScheduler::new(ScheduleConfig::Exponential { gamma: 0.99 }, config.lr())?;
//! for _ in 0..200 {
//!     let mut grads = theta.clone();
//!     let _norm_before = clip_grad_norm(&mut grads, 10.0)?;
//!     opt.step(&mut theta, &grads)?;
//!     opt.set_lr(schedule.step(None)?)?;
//! }
//! assert!(theta.iter().all(|t| t.abs() < 1e-3));
//!
//! // A checkpoint of the optimizer is plain serde.
//! let saved = serde_json::to_string(&opt.state())?;
//! let mut resumed = config.build(opt.groups().to_vec())?;
//! resumed.load_state(serde_json::from_str(&saved)?)?;
//! assert_eq!(resumed.steps_taken(), 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! Every step checks its inputs before changing anything: slices of
//! different lengths, a group past the end of the buffer, or a NaN/infinite
//! gradient (the lowest bad index is named) return an [`OptimError`] and leave
//! parameters and state as they were.
//!
//! # Parallelism and determinism
//! Buffers of at least 2^17 parameters are split across rayon threads at
//! positions that depend only on the length. Updates are element-wise and
//! reductions (the clipping norm) follow a fixed tree, so results are
//! bit-identical for any number of threads.
//!
//! # Subnormal state
//! A parameter whose gradient stays zero (a dead ReLU unit) makes Adam's
//! moments decay geometrically into subnormal floats, which x86 CPUs process
//! tens of times slower than normal ones. Instead of changing the
//! floating-point mode of the thread (FTZ/DAZ, global state that would also
//! change the caller's arithmetic), every optimizer stores a decaying state
//! value whose magnitude falls below `f32::MIN_POSITIVE` (≈ 1.18e-38) as
//! zero. This is deterministic, touches only the optimizer's own buffers, and
//! differs from PyTorch's arithmetic only for such values, whose contribution
//! to an update is below the resolution of any normal parameter.
#![warn(missing_docs)]

mod adagrad;
mod adam;
mod adamax;
mod adamw;
mod clip;
mod config;
mod elementwise;
mod error;
mod group;
mod optimizer;
mod rmsprop;
pub mod schedule;
mod sgd;
mod state;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use adamax::{Adamax, AdamaxConfig};
pub use adamw::AdamWConfig;
pub use clip::{clip_grad_norm, clip_grad_value, global_norm, ClipConfig};
pub use config::OptimizerConfig;
pub use elementwise::first_non_finite;
pub use error::{OptimError, Result};
pub use group::ParamGroup;
pub use optimizer::Optimizer;
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use schedule::{LrScheduler, PlateauConfig, PlateauMode, ScheduleConfig, ThresholdMode};
pub use sgd::{Sgd, SgdConfig};
pub use state::OptimizerState;
