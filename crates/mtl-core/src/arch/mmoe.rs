//! [`Mmoe`]: multi-gate mixture of experts.

use rand::Rng;

use super::model::check_tasks;
use super::{
    Encoder, EncoderConfig, Gate, GateWeights, Head, HeadConfig, MultiTaskModel, MultiTaskOutput,
};
use crate::error::Result;
use crate::nn::Module;
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Var};

/// Multi-gate mixture of experts (Ma, Zhao, Yi, Chen, Hong & Chi, 2018):
/// `y_t = h_t(Σ_e g_t(x)_e · E_e(x))` with `E` shared experts and a softmax gate
/// `g_t(x) = softmax(x W_tᵀ + b_t)` per task.
///
/// Parameters: `experts.{e}.*` (shared), then per task `gates.{task}.*` and
/// `heads.{task}.*` (task groups). The representation is the concatenation of
/// the expert outputs `z = [E_1(x), …, E_E(x)]` `[B, E·d]`: the gates read the
/// input `x` directly, so above `z` lie only the task's gate weights and head.
/// The last shared layer is the last stage of every expert (one range).
#[derive(Debug)]
pub struct Mmoe {
    tasks: Vec<TaskSpec>,
    experts: Vec<Encoder>,
    gates: Vec<Gate>,
    heads: Vec<Head>,
}

impl Mmoe {
    /// Registers `experts` experts, then each task's gate and head.
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        experts: usize,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Mmoe> {
        check_tasks("mmoe", tasks)?;
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
            gates.push(Gate::new(
                ps,
                &name,
                group,
                in_features,
                experts.len(),
                rng,
            )?);
            let name = format!("heads.{}", t.name);
            heads.push(Head::new(ps, &name, t, width, head, rng)?);
        }
        Ok(Mmoe {
            tasks: tasks.to_vec(),
            experts,
            gates,
            heads,
        })
    }
}

impl MultiTaskModel for Mmoe {
    fn name(&self) -> &'static str {
        "mmoe"
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
        for ((task, gate), head) in self.tasks.iter().zip(&self.gates).zip(&self.heads) {
            let w = gate.weights(g, ps, x)?;
            let mixed = Gate::mix(g, w, &pieces)?;
            outputs.push(head.forward(g, ps, mixed)?);
            gates.push(GateWeights {
                name: format!("gates.{}", task.name),
                weights: w,
            });
        }
        Ok(MultiTaskOutput {
            representation: Some(z),
            outputs,
            gates,
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
