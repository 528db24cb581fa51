//! [`Mmoe`]: multi-gate mixture of experts, with softmax gates (MMoE) or
//! DSelect-k gates.

use rand::Rng;

use super::model::check_tasks;
use super::{
    DSelectGate, DSelectSettings, Encoder, EncoderConfig, Gate, GateWeights, Head, HeadConfig,
    MultiTaskModel, MultiTaskOutput,
};
use crate::error::Result;
use crate::nn::Module;
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Var};

/// Multi-gate mixture of experts (Ma, Zhao, Yi, Chen, Hong & Chi, 2018):
/// `y_t = h_t(Σ_e g_t(x)_e · E_e(x))` with `E` shared experts and a softmax gate
/// `g_t(x) = softmax(x W_tᵀ + b_t)` per task ([`Mmoe::new`], `mmoe`), or a
/// [`DSelectGate`] per task ([`Mmoe::dselect_k`], `dselect-k`: DSelect-k,
/// Hazimeh et al., 2021, which mixes at most `k` experts once trained).
///
/// Parameters: `experts.{e}.*` (shared), then per task `gates.{task}.*` and
/// `heads.{task}.*` (task groups). The representation is the concatenation of
/// the expert outputs `z = [E_1(x), …, E_E(x)]` `[B, E·d]`: the gates read the
/// input `x` directly, so above `z` lie only the task's gate weights and head.
/// The last shared layer is the last stage of every expert (one range).
/// DSelect-k's penalties ([`MultiTaskOutput::penalties`]) depend only on each
/// task's gate.
#[derive(Debug)]
pub struct Mmoe {
    name: &'static str,
    tasks: Vec<TaskSpec>,
    experts: Vec<Encoder>,
    gates: Vec<TaskGate>,
    heads: Vec<Head>,
}

/// The gate of one task.
#[derive(Debug)]
enum TaskGate {
    Softmax(Gate),
    DSelect(DSelectGate),
}

impl TaskGate {
    /// The expert weights `[B, E]` and the task's training penalty.
    fn weights(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<(Var, Option<Var>)> {
        match self {
            TaskGate::Softmax(gate) => Ok((gate.weights(g, ps, x)?, None)),
            TaskGate::DSelect(gate) => {
                let out = gate.weights(g, ps, x)?;
                Ok((out.weights, out.penalty))
            }
        }
    }
}

impl Mmoe {
    /// Registers `experts` experts, then each task's softmax gate and head.
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        experts: usize,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Mmoe> {
        Self::build(encoder, head, experts, None, input_shape, tasks, ps, rng)
    }

    /// Registers `experts` experts, then each task's DSelect-k gate and head.
    #[allow(clippy::too_many_arguments)]
    pub fn dselect_k<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        experts: usize,
        settings: DSelectSettings,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Mmoe> {
        settings.validate(experts)?;
        Self::build(
            encoder,
            head,
            experts,
            Some(settings),
            input_shape,
            tasks,
            ps,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        experts: usize,
        dselect: Option<DSelectSettings>,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Mmoe> {
        let arch = if dselect.is_some() {
            "dselect-k"
        } else {
            "mmoe"
        };
        check_tasks(arch, tasks)?;
        let names: Vec<(String, ParamGroup)> = (0..experts)
            .map(|e| (format!("experts.{e}"), ParamGroup::Shared))
            .collect();
        let experts = Encoder::build_many(encoder, input_shape, ps, &names, rng)?;
        let in_features: usize = input_shape.iter().product();
        let width = experts.first().map_or(0, Encoder::out_features);
        let mut gates = Vec::with_capacity(tasks.len());
        let mut heads = Vec::with_capacity(tasks.len());
        for t in tasks {
            let group = ParamGroup::task(&t.name);
            let name = format!("gates.{}", t.name);
            let n = experts.len();
            gates.push(match dselect {
                None => TaskGate::Softmax(Gate::new(ps, &name, group, in_features, n, rng)?),
                Some(settings) => TaskGate::DSelect(DSelectGate::new(
                    ps,
                    &name,
                    group,
                    in_features,
                    n,
                    settings,
                    rng,
                )?),
            });
            let name = format!("heads.{}", t.name);
            heads.push(Head::new(ps, &name, t, width, head, rng)?);
        }
        Ok(Mmoe {
            name: arch,
            tasks: tasks.to_vec(),
            experts,
            gates,
            heads,
        })
    }
}

impl MultiTaskModel for Mmoe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        let outs = self
            .experts
            .iter()
            .map(|e| e.forward(g, ps, x))
            .collect::<Result<Vec<_>>>()?;
        let z = g.concat(&outs, 1)?;
        let widths: Vec<usize> = self.experts.iter().map(Encoder::out_features).collect();
        let pieces = g.split(z, 1, &widths)?;
        let mut outputs = Vec::with_capacity(self.tasks.len());
        let mut gates = Vec::with_capacity(self.tasks.len());
        let mut penalties = Vec::with_capacity(self.tasks.len());
        for ((task, gate), head) in self.tasks.iter().zip(&self.gates).zip(&self.heads) {
            let (w, penalty) = gate.weights(g, ps, x)?;
            let mixed = Gate::mix(g, w, &pieces)?;
            outputs.push(head.forward(g, ps, mixed)?);
            gates.push(GateWeights {
                name: format!("gates.{}", task.name),
                weights: w,
            });
            penalties.push(penalty);
        }
        if penalties.iter().all(Option::is_none) {
            penalties.clear();
        }
        Ok(MultiTaskOutput {
            representation: Some(z),
            outputs,
            gates,
            penalties,
        })
    }

    fn has_representation(&self) -> bool {
        true
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        self.experts
            .iter()
            .flat_map(Encoder::last_stage_params)
            .collect()
    }
}
