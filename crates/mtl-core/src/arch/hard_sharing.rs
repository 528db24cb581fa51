//! [`HardSharing`]: one shared encoder, one head per task.

use rand::Rng;

use super::model::check_tasks;
use super::trunk_with_heads::trunk_then_heads;
use super::{Encoder, EncoderConfig, Head, HeadConfig, MultiTaskModel, MultiTaskOutput};
use crate::error::Result;
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Var};

/// Hard parameter sharing (Caruana, 1997): `y_t = h_t(f(x))` with a shared
/// encoder `f` and a head `h_t` per task.
///
/// Parameters: `encoder.*` (shared), `heads.{task}.*` (task groups). The
/// representation is the encoder's output `z = f(x)` `[B, d]`; the last shared
/// layer is the encoder's last stage.
#[derive(Debug)]
pub struct HardSharing {
    tasks: Vec<TaskSpec>,
    encoder: Encoder,
    heads: Vec<Head>,
}

impl HardSharing {
    /// Registers the encoder, then the heads.
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<HardSharing> {
        check_tasks("hps", tasks)?;
        let encoder = Encoder::build(encoder, input_shape, ps, "encoder", ParamGroup::Shared, rng)?;
        let heads = tasks
            .iter()
            .map(|t| {
                Head::new(
                    ps,
                    &format!("heads.{}", t.name),
                    t,
                    encoder.out_features(),
                    head,
                    rng,
                )
            })
            .collect::<Result<_>>()?;
        Ok(HardSharing {
            tasks: tasks.to_vec(),
            encoder,
            heads,
        })
    }
}

impl MultiTaskModel for HardSharing {
    fn name(&self) -> &'static str {
        "hps"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        trunk_then_heads(&self.encoder, &self.heads, g, ps, x)
    }

    fn has_representation(&self) -> bool {
        true
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        self.encoder.last_stage_params()
    }
}
