//! Multi-task architectures and task heads.
//!
//! Every architecture implements [`MultiTaskModel`]: a forward pass giving
//! one output per task (and, where one exists, the shared representation),
//! with its parameters registered in a [`ParamStore`] under stable,
//! PyTorch-like names and split into the shared group and one group per task.
//!
//! | `arch` | type | shared | per task | representation |
//! |--------|------|--------|----------|----------------|
//! | `hps` | [`HardSharing`] | `encoder` | `heads.{t}` | encoder output |
//! | `mmoe` | [`Mmoe`] | `experts.{e}` | `gates.{t}`, `heads.{t}` | expert outputs side by side |
//! | `dselect-k` | [`Mmoe`] with [`DSelectGate`]s | `experts.{e}` | `gates.{t}.z_logits`, `gates.{t}.w_logits`, `heads.{t}` | expert outputs side by side |
//! | `cgc` | [`Cgc`] | `shared_experts.{i}` | `task_experts.{t}.{j}`, `gates.{t}`, `heads.{t}` | shared expert outputs side by side |
//! | `ple` | [`Ple`] | `layers.{l}.shared_experts.{i}`, `layers.{l}.shared_gate` | `layers.{l}.task_experts.{t}.{j}`, `layers.{l}.gates.{t}`, `heads.{t}` | as CGC with one layer, none with more |
//! | `cross-stitch` | [`CrossStitch`] | `cross_stitch.{l}` | `columns.{t}`, `heads.{t}` | none |
//! | `mtan` | [`Mtan`] | `encoder` | `attention.{t}.{l}`, `heads.{t}` | none |
//! | `ltb` | [`Ltb`] | `layers.{l}.{b}`, `branching.{l}.{b}` (below the task layer) | `layers.{L−1}.{t}`, `branching.{L−1}.{t}`, `heads.{t}` | none |
//!
//! Experts, columns and the trunk are [`Encoder`]s (an MLP or a LeNet-like
//! convolutional net); the heads are [`Head`]s, whose output depends on the
//! task's kind (logits, values, or cluster assignments). [`build_model`] builds
//! any of them from the `[model]` table of a run configuration
//! ([`ModelConfig`]).
//!
//! ```
//! use mtl_core::arch::{build_model, ModelConfig};
//! use mtl_core::{Graph, ParamGroup, ParamStore, TaskKind, TaskSpec, Tensor};
//! use rand::SeedableRng;
//!
//! let config: ModelConfig = serde_json::from_str(
//!     r#"{"arch": "mmoe", "experts": 3, "encoder": {"name": "mlp", "hidden": [16, 8]}}"#,
//! )?;
//! let tasks = [
//!     TaskSpec { name: "left".into(), kind: TaskKind::Classification { classes: 10 } },
//!     TaskSpec { name: "right".into(), kind: TaskKind::Regression { outputs: 2 } },
//! ];
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut ps = ParamStore::new();
//! let model = build_model(&config.arch, &config.encoder, &[6], &tasks, &mut ps, &mut rng)?;
//! assert!(ps.find("experts.2.1.weight").is_some());
//! assert!(ps.find("gates.left.weight").is_some());
//! assert_eq!(ps.view(ps.find("heads.right.0.weight").unwrap())?.group, ParamGroup::task("right"));
//!
//! let mut g = Graph::new(0);
//! let x = g.input(Tensor::zeros(&[4, 6]));
//! let out = model.forward(&mut g, &mut ps, x)?;
//! assert_eq!(g.shape(out.outputs[0])?, &[4, 10]);
//! assert_eq!(g.shape(out.outputs[1])?, &[4, 2]);
//! assert_eq!(g.shape(out.representation.unwrap())?, &[4, 3 * 8]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cgc;
mod config;
mod cross_stitch;
mod dselect_k;
mod encoder;
mod gate;
mod hard_sharing;
mod head;
mod ltb;
mod mmoe;
mod model;
mod mtan;
mod ple;
mod trunk_with_heads;

pub use cgc::{Cgc, ExtractionLayer, ExtractionOutput};
pub use config::{ArchConfig, EncoderConfig, HeadConfig, ModelConfig};
pub use cross_stitch::CrossStitch;
pub use dselect_k::{smooth_step, DSelectGate, DSelectOutput, DSelectSettings};
pub use encoder::Encoder;
pub use gate::Gate;
pub use hard_sharing::HardSharing;
pub use head::Head;
pub use ltb::{BranchSettings, Ltb};
pub use mmoe::Mmoe;
pub use model::{GateWeights, MultiTaskModel, MultiTaskOutput, ARCHITECTURES_WITH_REPRESENTATION};
pub use mtan::Mtan;
pub use ple::Ple;
pub use trunk_with_heads::TrunkWithHeads;

use rand::Rng;

use crate::error::{CoreError, Result};
use crate::{ParamStore, TaskSpec};

/// Builds the architecture `arch` with experts, columns or trunk made of
/// `encoder`, for per-example inputs of `input_shape` (`[784]`, or
/// `[1, 28, 28]` for LeNet) and one head per task, registering every
/// parameter in `ps` with values drawn from `rng`.
///
/// The same configuration, shape, tasks and seed give the same names, layout
/// and values, so a checkpoint saved from one build loads into another.
pub fn build_model<R: Rng + ?Sized>(
    arch: &ArchConfig,
    encoder: &EncoderConfig,
    input_shape: &[usize],
    tasks: &[TaskSpec],
    ps: &mut ParamStore,
    rng: &mut R,
) -> Result<Box<dyn MultiTaskModel>> {
    arch.validate()?;
    encoder.validate()?;
    if input_shape.is_empty() || input_shape.contains(&0) {
        return Err(CoreError::InvalidShape {
            op: "build_model",
            shape: input_shape.to_vec(),
            reason: format!(
                "the {} architecture needs a non-empty input shape",
                arch.name()
            ),
        });
    }
    let head = arch.head();
    Ok(match *arch {
        ArchConfig::Hps { .. } => Box::new(HardSharing::new(
            encoder,
            head,
            input_shape,
            tasks,
            ps,
            rng,
        )?),
        ArchConfig::Mmoe { experts, .. } => Box::new(Mmoe::new(
            encoder,
            head,
            experts,
            input_shape,
            tasks,
            ps,
            rng,
        )?),
        ArchConfig::DselectK {
            experts,
            k,
            gamma,
            entropy,
            ..
        } => Box::new(Mmoe::dselect_k(
            encoder,
            head,
            experts,
            DSelectSettings { k, gamma, entropy },
            input_shape,
            tasks,
            ps,
            rng,
        )?),
        ArchConfig::Cgc {
            shared_experts,
            task_experts,
            ..
        } => Box::new(Cgc::new(
            encoder,
            head,
            shared_experts,
            task_experts,
            input_shape,
            tasks,
            ps,
            rng,
        )?),
        ArchConfig::Ple {
            layers,
            shared_experts,
            task_experts,
            ..
        } => Box::new(Ple::new(
            encoder,
            head,
            layers,
            shared_experts,
            task_experts,
            input_shape,
            tasks,
            ps,
            rng,
        )?),
        ArchConfig::CrossStitch { self_weight, .. } => Box::new(CrossStitch::new(
            encoder,
            head,
            self_weight,
            input_shape,
            tasks,
            ps,
            rng,
        )?),
        ArchConfig::Mtan { .. } => Box::new(Mtan::new(encoder, head, input_shape, tasks, ps, rng)?),
        ArchConfig::Ltb {
            ref blocks,
            search_epochs,
            temperature,
            final_temperature,
            ..
        } => Box::new(Ltb::new(
            encoder,
            head,
            &BranchSettings {
                blocks: blocks.clone(),
                temperature,
                final_temperature,
                search_epochs,
            },
            input_shape,
            tasks,
            ps,
            rng,
        )?),
    })
}
