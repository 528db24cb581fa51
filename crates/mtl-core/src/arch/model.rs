//! [`MultiTaskModel`]: what every architecture offers the training loop.

use super::Head;
use crate::error::{CoreError, Result};
use crate::{Graph, ParamId, ParamStore, TaskSpec, Var};

/// The architectures that expose a shared representation.
pub const ARCHITECTURES_WITH_REPRESENTATION: &[&str] = &[
    "hps",
    "mmoe",
    "dselect-k",
    "cgc",
    "ple (with one extraction layer)",
];

/// One gate's weights in a forward pass, for tests and expert-usage logs.
#[derive(Clone, Debug, PartialEq)]
pub struct GateWeights {
    /// The gate's parameter prefix, e.g. `gates.left` or `layers.0.gates.shared`.
    pub name: String,
    /// Its weights `[B, experts]`, each row summing to one.
    pub weights: Var,
}

/// The result of a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiTaskOutput {
    /// The shared representation `z`, when the architecture has one: every
    /// path from a shared parameter to a task output passes through it, and
    /// only task-specific parameters lie above it. Back-propagating each
    /// task's loss with `stop_at = [z]` gives the rows `∂L_t/∂z`, and a
    /// direction seeded at `z` reaches every shared parameter.
    pub representation: Option<Var>,
    /// One output per task, in task order (see [`Head`](super::Head) for
    /// what each kind's output means).
    pub outputs: Vec<Var>,
    /// The weights of every gate, in the order they were computed (empty for
    /// architectures without gates).
    pub gates: Vec<GateWeights>,
    /// Scalar penalties the architecture asks to add to a task's loss during
    /// training, one entry per task in task order (`None` where a task has
    /// none), or empty when the architecture has none. DSelect-k's selector
    /// regularisers are such penalties; they depend only on the task's own
    /// gate, so they never reach a shared parameter.
    pub penalties: Vec<Option<Var>>,
}

impl MultiTaskOutput {
    /// The penalty to add to task `t`'s loss, if any.
    pub fn penalty(&self, t: usize) -> Option<Var> {
        self.penalties.get(t).copied().flatten()
    }
}

/// A multi-task network: shared and task-specific parameters in a
/// [`ParamStore`], one output per task.
pub trait MultiTaskModel: Send + Sync + std::fmt::Debug {
    /// The architecture's name: `hps`, `mmoe`, `dselect-k`, `cgc`, `ple`,
    /// `cross-stitch`, `mtan` or `ltb`.
    fn name(&self) -> &'static str;

    /// The tasks, in output order.
    fn tasks(&self) -> &[TaskSpec];

    /// The heads, in task order (a clustering head's centroids can be
    /// initialised from embeddings through [`Head::centroids`]). A model
    /// with heads of its own making returns none (the default).
    fn heads(&self) -> &[Head] {
        &[]
    }

    /// Records the forward pass of the batch `x` (`[B, ...]`, the per-example
    /// shape the model was built for, or that flattened).
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput>;

    /// Brings the architecture's schedule to optimisation step `step` of
    /// epoch `epoch` (both counted from 0); the training loop calls it before
    /// the forward pass of every step. Whatever it changes lives in the
    /// store's buffers, so a checkpoint carries it and a resumed run goes on
    /// bit-identically. Learning to Branch anneals its Gumbel-softmax
    /// temperature here and fixes its tree; the other architectures have no
    /// schedule.
    fn begin_step(&self, ps: &mut ParamStore, step: u64, epoch: u64) -> Result<()> {
        let _ = (ps, step, epoch);
        Ok(())
    }

    /// Whether [`MultiTaskOutput::representation`] is filled (default: no).
    fn has_representation(&self) -> bool {
        false
    }

    /// Why there is no shared representation (empty when there is one).
    fn why_no_representation(&self) -> &'static str {
        ""
    }

    /// The parameters of the last shared layer (weights and biases, the layer
    /// GradNorm measures gradient norms at). They form one contiguous range
    /// of the store. The default, none, makes GradNorm use every shared
    /// parameter.
    fn last_shared_params(&self) -> Vec<ParamId> {
        Vec::new()
    }
}

/// Checks that `tasks` is not empty, that names are unique and usable in
/// parameter names, and that every kind's size is valid.
pub(crate) fn check_tasks(architecture: &str, tasks: &[TaskSpec]) -> Result<()> {
    if tasks.is_empty() {
        return Err(CoreError::InvalidArgument {
            what: format!("{architecture} tasks"),
            reason: "a multi-task model needs at least one task".into(),
        });
    }
    for (i, t) in tasks.iter().enumerate() {
        if t.name.is_empty() || t.name.contains('.') {
            return Err(CoreError::InvalidArgument {
                what: format!("{architecture} task {:?}", t.name),
                reason:
                    "a task name must be non-empty and free of '.' (it is part of parameter names)"
                        .into(),
            });
        }
        if tasks[..i].iter().any(|o| o.name == t.name) {
            return Err(CoreError::InvalidArgument {
                what: format!("{architecture} task {:?}", t.name),
                reason: "task names must be unique".into(),
            });
        }
        t.kind.validate()?;
    }
    Ok(())
}
