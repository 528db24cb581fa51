//! [`Ple`]: progressive layered extraction.

use rand::Rng;

use super::model::check_tasks;
use super::{EncoderConfig, ExtractionLayer, Head, HeadConfig, MultiTaskModel, MultiTaskOutput};
use crate::error::Result;
use crate::nn::Module;
use crate::{Graph, ParamId, ParamStore, TaskSpec, Var};

/// Progressive layered extraction (Tang, Liu, Zhao & Gong, 2020): `L` stacked
/// [`ExtractionLayer`]s. Layer `l` reads each task's mixture `y_t^(l−1)` in
/// that task's experts and gate, and the shared mixture `y_s^(l−1)` in its
/// shared experts; every layer but the last has a shared gate producing
/// `y_s^(l)`. The first layer reads `x` everywhere; heads read `y_t^(L)`.
///
/// The first layer's experts are built from the encoder configuration; the
/// experts of later layers are one dense layer `d → d` (with the encoder's
/// activation, dropout and layer normalisation), `d` the encoder's output width.
///
/// Parameters: `layers.{l}.shared_experts.{i}.*` and `layers.{l}.shared_gate.*`
/// (shared); per task `layers.{l}.task_experts.{task}.{j}.*`,
/// `layers.{l}.gates.{task}.*` and `heads.{task}.*` (task group).
///
/// With one layer PLE is CGC (same outputs for the same parameters) and its
/// representation is the shared experts' outputs. With more layers there is
/// none: the shared experts of a lower layer reach task `t` through `t`'s own
/// experts of the next layer, not only through the last shared experts, so no
/// single node separates shared from task-specific parameters. The last shared
/// layer is the last stage of the last layer's shared experts.
///
/// The shared gates mix every task's experts, so with more than one layer a
/// task's lower experts also receive gradient from the other tasks' losses
/// (through the shared experts above them), as in the paper.
#[derive(Debug)]
pub struct Ple {
    tasks: Vec<TaskSpec>,
    layers: Vec<ExtractionLayer>,
    heads: Vec<Head>,
}

impl Ple {
    /// Registers the layers, first to last, then the heads.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        layers: usize,
        shared_experts: usize,
        task_experts: usize,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Ple> {
        check_tasks("ple", tasks)?;
        let mut built: Vec<ExtractionLayer> = Vec::with_capacity(layers);
        for l in 0..layers {
            let (config, shape) = match built.last() {
                None => (encoder.clone(), input_shape.to_vec()),
                Some(prev) => (
                    deeper_expert(encoder, prev.out_features()),
                    vec![prev.out_features()],
                ),
            };
            built.push(ExtractionLayer::new(
                &config,
                &shape,
                &format!("layers.{l}."),
                tasks,
                shared_experts,
                task_experts,
                l + 1 < layers,
                ps,
                rng,
            )?);
        }
        let width = built.last().map_or(0, ExtractionLayer::out_features);
        let heads = tasks
            .iter()
            .map(|t| Head::new(ps, &format!("heads.{}", t.name), t, width, head, rng))
            .collect::<Result<_>>()?;
        Ok(Ple {
            tasks: tasks.to_vec(),
            layers: built,
            heads,
        })
    }
}

/// The configuration of an expert after the first layer: one dense layer of
/// the encoder's output width, with its activation, dropout and normalisation.
fn deeper_expert(encoder: &EncoderConfig, width: usize) -> EncoderConfig {
    match *encoder {
        EncoderConfig::Mlp {
            dropout,
            activation,
            layer_norm,
            ..
        } => EncoderConfig::Mlp {
            hidden: vec![width],
            dropout,
            activation,
            layer_norm,
        },
        EncoderConfig::Lenet {
            dropout,
            activation,
            ..
        } => EncoderConfig::Mlp {
            hidden: vec![width],
            dropout,
            activation,
            layer_norm: false,
        },
    }
}

impl MultiTaskModel for Ple {
    fn name(&self) -> &'static str {
        "ple"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        let mut task_inputs = vec![x; self.tasks.len()];
        let mut shared_input = x;
        let mut gates = Vec::new();
        let mut representation = None;
        for layer in &self.layers {
            let out = layer.forward(g, ps, &task_inputs, shared_input)?;
            gates.extend(out.gates);
            task_inputs = out.tasks;
            representation = Some(out.shared_experts);
            if let Some(s) = out.shared {
                shared_input = s;
            }
        }
        let outputs = self
            .heads
            .iter()
            .zip(&task_inputs)
            .map(|(h, &y)| h.forward(g, ps, y))
            .collect::<Result<_>>()?;
        Ok(MultiTaskOutput {
            representation: representation.filter(|_| self.has_representation()),
            outputs,
            gates,
            penalties: Vec::new(),
        })
    }

    fn has_representation(&self) -> bool {
        self.layers.len() == 1
    }

    fn why_no_representation(&self) -> &'static str {
        if self.has_representation() {
            ""
        } else {
            "with more than one extraction layer, lower shared experts reach each task \
             through its own experts too, so no single node separates shared from \
             task-specific parameters"
        }
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        self.layers
            .last()
            .map_or_else(Vec::new, ExtractionLayer::last_shared_params)
    }
}
