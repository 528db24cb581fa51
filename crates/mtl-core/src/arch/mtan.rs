//! [`Mtan`]: a shared trunk with a task-specific attention mask at every stage.

use rand::Rng;

use super::model::check_tasks;
use super::{Encoder, EncoderConfig, Head, HeadConfig, MultiTaskModel, MultiTaskOutput};
use crate::error::Result;
use crate::nn::{Conv2d, Linear, Module};
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Var};

/// The layer that turns an attention input into mask logits.
#[derive(Clone, Debug)]
enum Attention {
    /// On `[B, features]` stages.
    Dense(Linear),
    /// A 1×1 convolution on `[B, C, H, W]` stages.
    Conv(Conv2d),
}

impl Attention {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        match self {
            Attention::Dense(l) => l.forward(g, ps, x),
            Attention::Conv(c) => c.forward(g, ps, x),
        }
    }
}

/// A multi-task attention network in the style of Liu, Johns & Davison (2019,
/// "MTAN") on the stages of an [`Encoder`]. With the shared trunk's stage
/// outputs `h_l = S_l(h_{l−1})`, task `t`'s features are
///
/// - `a_t^(1) = σ(G_t^(1)(h_1)) ⊙ h_1`,
/// - `a_t^(l) = σ(G_t^(l)([h_l ; S_l(a_t^(l−1))])) ⊙ h_l`,
///
/// where `[· ; ·]` joins along axis 1 (features or channels), `S_l` is the
/// shared stage itself (reused, as MTAN's shared block that brings the task's
/// features to the next resolution), and `G_t^(l)` is a task-specific dense
/// layer on dense stages and a 1×1 convolution on convolutional ones. Heads read
/// `a_t^(L)`.
///
/// Parameters: `encoder.*` (shared); `attention.{task}.{l}.*` and
/// `heads.{task}.*` (task group). There is no shared representation: every
/// stage's output feeds task-specific attention, and the trunk's stages also
/// run on each task's attended features. The last shared layer is the trunk's
/// last stage.
#[derive(Debug)]
pub struct Mtan {
    tasks: Vec<TaskSpec>,
    encoder: Encoder,
    attention: Vec<Vec<Attention>>,
    heads: Vec<Head>,
}

impl Mtan {
    /// Registers the trunk, then per task its attention layers and head.
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Mtan> {
        check_tasks("mtan", tasks)?;
        let trunk = Encoder::build(encoder, input_shape, ps, "encoder", ParamGroup::Shared, rng)?;
        let mut attention = Vec::with_capacity(tasks.len());
        let mut heads = Vec::with_capacity(tasks.len());
        for t in tasks {
            let group = ParamGroup::task(&t.name);
            let mut layers = Vec::with_capacity(trunk.num_stages());
            for l in 0..trunk.num_stages() {
                let width = trunk.stage_channels(l).unwrap_or(0);
                let inputs = if l == 0 { width } else { 2 * width };
                let name = format!("attention.{}.{l}", t.name);
                layers.push(if trunk.stage_is_conv(l) {
                    Attention::Conv(Conv2d::new(
                        ps,
                        &name,
                        group.clone(),
                        inputs,
                        width,
                        1,
                        1,
                        0,
                        rng,
                    )?)
                } else {
                    Attention::Dense(Linear::new(
                        ps,
                        &name,
                        group.clone(),
                        inputs,
                        width,
                        true,
                        rng,
                    )?)
                });
            }
            attention.push(layers);
            let name = format!("heads.{}", t.name);
            heads.push(Head::new(ps, &name, t, trunk.out_features(), head, rng)?);
        }
        Ok(Mtan {
            tasks: tasks.to_vec(),
            encoder: trunk,
            attention,
            heads,
        })
    }
}

impl MultiTaskModel for Mtan {
    fn name(&self) -> &'static str {
        "mtan"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        let mut h = self.encoder.prepare(g, x)?;
        let mut attended: Vec<Option<Var>> = vec![None; self.tasks.len()];
        for l in 0..self.encoder.num_stages() {
            h = self.encoder.forward_stage(l, g, ps, h)?;
            for (a, layers) in attended.iter_mut().zip(&self.attention) {
                let input = match *a {
                    None => h,
                    Some(prev) => {
                        let adapted = self.encoder.forward_stage(l, g, ps, prev)?;
                        g.concat(&[h, adapted], 1)?
                    }
                };
                let logits = layers[l].forward(g, ps, input)?;
                let mask = g.sigmoid(logits)?;
                *a = Some(g.mul(mask, h)?);
            }
        }
        let outputs = self
            .heads
            .iter()
            .zip(&attended)
            .map(|(head, a)| head.forward(g, ps, a.unwrap_or(h)))
            .collect::<Result<_>>()?;
        Ok(MultiTaskOutput {
            representation: None,
            outputs,
            gates: Vec::new(),
            penalties: Vec::new(),
        })
    }

    fn has_representation(&self) -> bool {
        false
    }

    fn why_no_representation(&self) -> &'static str {
        "every trunk stage feeds task-specific attention, and the trunk's stages also \
         run on each task's attended features"
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        self.encoder.last_stage_params()
    }
}
