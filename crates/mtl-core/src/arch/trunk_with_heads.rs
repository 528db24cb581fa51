//! [`TrunkWithHeads`]: hard parameter sharing over a trunk of your own.

use rand::Rng;

use super::model::check_tasks;
use super::{Head, HeadConfig, MultiTaskModel, MultiTaskOutput};
use crate::error::Result;
use crate::nn::Module;
use crate::{Graph, ParamStore, TaskSpec, Var};

/// Any [`Module`] as the shared trunk `f`, and one [`Head`] per task:
/// `y_t = h_t(f(x))`. The trunk's parameters must be registered in the
/// store (in the shared group) before this is built; the heads come after
/// them, as `heads.{task}.*`. The representation is the trunk's output.
///
/// ```
/// use mtl_core::arch::{HeadConfig, MultiTaskModel, TrunkWithHeads};
/// use mtl_core::nn::Linear;
/// use mtl_core::{ParamGroup, ParamStore, TaskKind, TaskSpec};
/// use rand::SeedableRng;
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut ps = ParamStore::new();
/// let trunk = Linear::new(&mut ps, "trunk", ParamGroup::Shared, 4, 8, true, &mut rng)?;
/// let tasks = [
///     TaskSpec { name: "y".into(), kind: TaskKind::Regression { outputs: 1 } },
///     TaskSpec { name: "c".into(), kind: TaskKind::Classification { classes: 3 } },
/// ];
/// let model = TrunkWithHeads::new(Box::new(trunk), 8, &tasks, &HeadConfig::default(), &mut ps, &mut rng)?;
/// assert_eq!(model.tasks().len(), 2);
/// assert!(ps.find("heads.c.0.weight").is_some());
/// # Ok::<(), mtl_core::CoreError>(())
/// ```
#[derive(Debug)]
pub struct TrunkWithHeads {
    tasks: Vec<TaskSpec>,
    trunk: Box<dyn Module>,
    heads: Vec<Head>,
}

impl TrunkWithHeads {
    /// Registers one head per task reading the trunk's `width` features.
    ///
    /// # Errors
    /// Invalid tasks or head configuration.
    pub fn new<R: Rng + ?Sized>(
        trunk: Box<dyn Module>,
        width: usize,
        tasks: &[TaskSpec],
        head: &HeadConfig,
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<TrunkWithHeads> {
        check_tasks("trunk-with-heads", tasks)?;
        let heads = tasks
            .iter()
            .map(|t| Head::new(ps, &format!("heads.{}", t.name), t, width, head, rng))
            .collect::<Result<_>>()?;
        Ok(TrunkWithHeads {
            tasks: tasks.to_vec(),
            trunk,
            heads,
        })
    }
}

/// `y_t = h_t(f(x))`: the forward pass of hard sharing, with the trunk's
/// output as the representation.
pub(crate) fn trunk_then_heads(
    trunk: &dyn Module,
    heads: &[Head],
    g: &mut Graph,
    ps: &mut ParamStore,
    x: Var,
) -> Result<MultiTaskOutput> {
    let z = trunk.forward(g, ps, x)?;
    let outputs = heads
        .iter()
        .map(|h| h.forward(g, ps, z))
        .collect::<Result<_>>()?;
    Ok(MultiTaskOutput {
        representation: Some(z),
        outputs,
        gates: Vec::new(),
        penalties: Vec::new(),
    })
}

impl MultiTaskModel for TrunkWithHeads {
    fn name(&self) -> &'static str {
        "trunk-with-heads"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        trunk_then_heads(self.trunk.as_ref(), &self.heads, g, ps, x)
    }

    fn has_representation(&self) -> bool {
        true
    }
}
