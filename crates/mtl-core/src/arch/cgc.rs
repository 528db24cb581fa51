//! [`Cgc`]: customised gate control, and its building block
//! [`ExtractionLayer`], which [`Ple`](super::Ple) stacks.

use rand::Rng;

use super::model::check_tasks;
use super::{
    Encoder, EncoderConfig, Gate, GateWeights, Head, HeadConfig, MultiTaskModel, MultiTaskOutput,
};
use crate::error::{CoreError, Result};
use crate::nn::Module;
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Var};

/// One extraction layer (Tang, Liu, Zhao & Gong, 2020): `m_s` shared experts,
/// `m_t` experts per task, and a softmax gate per task over its own experts and
/// the shared ones:
/// `y_t = Σ_j g_t(x_t)_j · [E_t,1(x_t), …, E_t,m_t(x_t), S_1(x_s), …, S_m_s(x_s)]_j`.
/// With a shared gate (every PLE layer but the last), the shared output is
/// `y_s = Σ_j g_s(x_s)_j · [E_1,·(x_1), …, E_T,·(x_T), S_·(x_s)]_j`.
///
/// Parameters, under `prefix` (empty for CGC, `layers.{l}.` for PLE):
/// `shared_experts.{i}.*` (shared), per task `task_experts.{task}.{j}.*` and
/// `gates.{task}.*` (task group), and `shared_gate.*` (shared).
#[derive(Debug)]
pub struct ExtractionLayer {
    task_names: Vec<String>,
    prefix: String,
    shared: Vec<Encoder>,
    task_experts: Vec<Vec<Encoder>>,
    task_gates: Vec<Gate>,
    shared_gate: Option<Gate>,
}

/// What an [`ExtractionLayer`] computes.
#[derive(Clone, Debug)]
pub struct ExtractionOutput {
    /// Each task's mixture `y_t` `[B, d]`, in task order.
    pub tasks: Vec<Var>,
    /// The shared gate's mixture `y_s` `[B, d]`, if the layer has a shared gate.
    pub shared: Option<Var>,
    /// The shared experts' outputs side by side `[B, m_s·d]`.
    pub shared_experts: Var,
    /// Each gate's weights (tasks first, then the shared gate).
    pub gates: Vec<GateWeights>,
}

impl ExtractionLayer {
    /// Registers the shared experts, then per task its experts and gate, then
    /// the shared gate if asked. Experts are built from `encoder` for inputs of
    /// `input_shape`.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        input_shape: &[usize],
        prefix: &str,
        tasks: &[TaskSpec],
        shared_experts: usize,
        task_experts: usize,
        shared_gate: bool,
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<ExtractionLayer> {
        if shared_experts == 0 {
            return Err(CoreError::InvalidArgument {
                what: format!("{prefix}shared_experts"),
                reason: "an extraction layer needs at least one shared expert".into(),
            });
        }
        let names: Vec<(String, ParamGroup)> = (0..shared_experts)
            .map(|i| (format!("{prefix}shared_experts.{i}"), ParamGroup::Shared))
            .collect();
        let shared = Encoder::build_many(encoder, input_shape, ps, &names, rng)?;
        let in_features: usize = input_shape.iter().product();
        let mut experts = Vec::with_capacity(tasks.len());
        let mut gates = Vec::with_capacity(tasks.len());
        for t in tasks {
            let group = ParamGroup::task(&t.name);
            let names: Vec<(String, ParamGroup)> = (0..task_experts)
                .map(|j| {
                    (
                        format!("{prefix}task_experts.{}.{j}", t.name),
                        group.clone(),
                    )
                })
                .collect();
            experts.push(Encoder::build_many(encoder, input_shape, ps, &names, rng)?);
            let name = format!("{prefix}gates.{}", t.name);
            let n = task_experts + shared_experts;
            gates.push(Gate::new(ps, &name, group, in_features, n, rng)?);
        }
        let shared_gate = if shared_gate {
            let n = tasks.len() * task_experts + shared_experts;
            let name = format!("{prefix}shared_gate");
            Some(Gate::new(
                ps,
                &name,
                ParamGroup::Shared,
                in_features,
                n,
                rng,
            )?)
        } else {
            None
        };
        Ok(ExtractionLayer {
            task_names: tasks.iter().map(|t| t.name.clone()).collect(),
            prefix: prefix.into(),
            shared,
            task_experts: experts,
            task_gates: gates,
            shared_gate,
        })
    }

    /// The width `d` of every expert's output.
    pub fn out_features(&self) -> usize {
        self.shared.first().map_or(0, Encoder::out_features)
    }

    /// The last stage of every shared expert (one range of the store).
    pub fn last_shared_params(&self) -> Vec<ParamId> {
        self.shared
            .iter()
            .flat_map(Encoder::last_stage_params)
            .collect()
    }

    /// Runs the layer on each task's input and the shared input.
    pub fn forward(
        &self,
        g: &mut Graph,
        ps: &mut ParamStore,
        task_inputs: &[Var],
        shared_input: Var,
    ) -> Result<ExtractionOutput> {
        if task_inputs.len() != self.task_gates.len() {
            return Err(CoreError::InvalidArgument {
                what: format!("{}extraction layer inputs", self.prefix),
                reason: format!(
                    "{} task inputs for {} tasks",
                    task_inputs.len(),
                    self.task_gates.len()
                ),
            });
        }
        let outs = self
            .shared
            .iter()
            .map(|e| e.forward(g, ps, shared_input))
            .collect::<Result<Vec<_>>>()?;
        let shared_experts = g.concat(&outs, 1)?;
        let widths = vec![self.out_features(); outs.len()];
        let shared_pieces = g.split(shared_experts, 1, &widths)?;
        let mut all_task_outs = Vec::new();
        let mut tasks = Vec::with_capacity(task_inputs.len());
        let mut gates = Vec::with_capacity(task_inputs.len() + 1);
        for (t, &input) in task_inputs.iter().enumerate() {
            let mut candidates = self.task_experts[t]
                .iter()
                .map(|e| e.forward(g, ps, input))
                .collect::<Result<Vec<_>>>()?;
            all_task_outs.extend(&candidates);
            candidates.extend(&shared_pieces);
            let w = self.task_gates[t].weights(g, ps, input)?;
            tasks.push(Gate::mix(g, w, &candidates)?);
            gates.push(GateWeights {
                name: format!("{}gates.{}", self.prefix, self.task_names[t]),
                weights: w,
            });
        }
        let shared = match &self.shared_gate {
            Some(gate) => {
                all_task_outs.extend(&shared_pieces);
                let w = gate.weights(g, ps, shared_input)?;
                gates.push(GateWeights {
                    name: format!("{}shared_gate", self.prefix),
                    weights: w,
                });
                Some(Gate::mix(g, w, &all_task_outs)?)
            }
            None => None,
        };
        Ok(ExtractionOutput {
            tasks,
            shared,
            shared_experts,
            gates,
        })
    }
}

/// Customised gate control (Tang, Liu, Zhao & Gong, 2020): one
/// [`ExtractionLayer`] without a shared gate, then a head per task:
/// `y_t = h_t(Σ_j g_t(x)_j · [E_t,·(x), S_·(x)]_j)`.
///
/// Parameters: `shared_experts.{i}.*` (shared), per task
/// `task_experts.{task}.{j}.*`, `gates.{task}.*` and `heads.{task}.*` (task
/// group). The representation is the shared experts' outputs side by side
/// `[B, m_s·d]`: task experts and gates read `x` directly, so every path from
/// a shared parameter to an output passes through it. The last shared layer is
/// the last stage of every shared expert.
#[derive(Debug)]
pub struct Cgc {
    tasks: Vec<TaskSpec>,
    layer: ExtractionLayer,
    heads: Vec<Head>,
}

impl Cgc {
    /// Registers the extraction layer, then the heads.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        shared_experts: usize,
        task_experts: usize,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Cgc> {
        check_tasks("cgc", tasks)?;
        let layer = ExtractionLayer::new(
            encoder,
            input_shape,
            "",
            tasks,
            shared_experts,
            task_experts,
            false,
            ps,
            rng,
        )?;
        let heads = tasks
            .iter()
            .map(|t| {
                let name = format!("heads.{}", t.name);
                Head::new(ps, &name, t, layer.out_features(), head, rng)
            })
            .collect::<Result<_>>()?;
        Ok(Cgc {
            tasks: tasks.to_vec(),
            layer,
            heads,
        })
    }
}

impl MultiTaskModel for Cgc {
    fn name(&self) -> &'static str {
        "cgc"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        let inputs = vec![x; self.tasks.len()];
        let out = self.layer.forward(g, ps, &inputs, x)?;
        let outputs = self
            .heads
            .iter()
            .zip(&out.tasks)
            .map(|(h, &y)| h.forward(g, ps, y))
            .collect::<Result<_>>()?;
        Ok(MultiTaskOutput {
            representation: Some(out.shared_experts),
            outputs,
            gates: out.gates,
            penalties: Vec::new(),
        })
    }

    fn has_representation(&self) -> bool {
        true
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        self.layer.last_shared_params()
    }
}
