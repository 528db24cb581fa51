//! One balanced training step: candle computes the task losses and their
//! gradients, `mtl-losses` turns them into one update, candle applies it.
//!
//! The heads read a *detached* copy `z̃` of the shared representation `z`, so
//! one backward pass per task through its head alone gives `∇_z L_t` and the
//! head's gradient. The trunk is then back-propagated from `z` with whichever
//! vector is needed: `∇_z L_t` gives task `t`'s gradient of every shared
//! parameter (`∇_θ ⟨z, ∇_z L_t⟩ = J_zᵀ ∇_z L_t = ∇_θ L_t`), and a combined
//! vector `Σ_t w_t ∇_z L_t` or a balancer's direction at `z` gives the shared
//! update in one pass. Every balancer of `mtl-losses` works unchanged,
//! whatever [`GradientSource`] it asks for.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::Optimizer;
use mtl_losses::{BalanceInput, Balancer, GradRows, GradientSource};

use crate::autompg::Split;
use crate::error::{Error, Result};
use crate::model::MultiTaskMlp;
use crate::tasks;

/// What one step measured.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The task losses of the batch, before the update.
    pub losses: Vec<f32>,
    /// The task weights the balancer chose (mean scale: `1/T` each is equal weighting).
    pub weights: Vec<f32>,
}

/// Balances the task gradients of `batch` with `balancer` and applies the
/// result with `optimizer`: the shared parameters receive the balancer's
/// combined direction (or `Σ_t w_t ∇_θ L_t`), head `t` receives `w_t ∇_{θ_t} L_t`.
///
/// # Errors
/// A candle error, a balancer error (such as a non-finite loss), or
/// [`Error::UnsupportedDirection`].
pub fn train_step(
    model: &MultiTaskMlp,
    balancer: &mut dyn Balancer,
    optimizer: &mut impl Optimizer,
    batch: &Split,
    step: u64,
    epoch: u64,
) -> Result<StepOutcome> {
    let num_tasks = model.num_tasks();
    let task = TaskGradients::compute(model, batch)?;
    let z_grads = GradRows::new(&task.z_rows, num_tasks, task.z.elem_count())?;

    // The rows the balancer asks for, as one row-major T × P slice.
    let needs = balancer.needs();
    let parameter_rows = match needs {
        GradientSource::SharedParameters => task.parameter_rows(&model.shared_vars())?,
        GradientSource::LastSharedLayer => task.parameter_rows(&model.last_shared_vars())?,
        GradientSource::None | GradientSource::Representation => Vec::new(),
    };
    let input = BalanceInput::from_losses(&task.losses).at(step, epoch);
    let input = match needs {
        GradientSource::None => input,
        GradientSource::Representation => input.with_grads(z_grads),
        GradientSource::SharedParameters | GradientSource::LastSharedLayer => {
            let cols = parameter_rows.len() / num_tasks;
            input.with_grads(GradRows::new(&parameter_rows, num_tasks, cols)?)
        }
    };
    let balanced = balancer.balance(&input)?;

    // The shared parameters' gradient: the direction itself over the shared
    // parameters, or back-propagated from z.
    let mut grads = GradStore::default();
    let shared_vars = model.shared_vars();
    if let (GradientSource::SharedParameters, Some(rows)) = (needs, input.grads) {
        write_flat(&mut grads, &shared_vars, &balanced.shared_direction(&rows)?)?;
    } else {
        if balanced.direction().is_some() && needs != GradientSource::Representation {
            return Err(Error::UnsupportedDirection {
                balancer: balancer.name(),
                rows: needs,
            });
        }
        // The direction at z, or Σ_t w_t ∇_z L_t for plain weights.
        let trunk = task.backward_trunk(balanced.shared_direction(&z_grads)?)?;
        for var in shared_vars {
            let g = trunk
                .get(var)
                .ok_or(Error::MissingGradient("shared parameters"))?;
            grads.insert(var, g.clone());
        }
    }
    // Head t receives w_t ∇_{θ_t} L_t.
    for (t, (store, &w)) in task.head_grads.iter().zip(balanced.weights()).enumerate() {
        for var in model.head_vars(t) {
            let g = store.get(var).ok_or(Error::MissingGradient("task head"))?;
            grads.insert(var, (g * f64::from(w))?);
        }
    }
    optimizer.step(&grads)?;

    if balancer.needs_losses_after_step() {
        balancer.observe_after_step(&tasks::loss_values(model, batch)?)?;
    }
    Ok(StepOutcome {
        losses: task.losses,
        weights: balanced.weights().to_vec(),
    })
}

/// The forward pass of one batch with the heads on a detached
/// representation, and every task's backward pass through its head.
struct TaskGradients {
    /// The shared representation `z`, still attached to the trunk's graph.
    z: Tensor,
    /// The copy of `z` the heads read.
    z_detached: Var,
    /// The task losses `L_t`.
    losses: Vec<f32>,
    /// Task `t`'s gradients: `∇_z L_t` (at `z_detached`) and `∇_{θ_t} L_t`.
    head_grads: Vec<GradStore>,
    /// The rows `∇_z L_t`, row-major `T × (batch · width)`.
    z_rows: Vec<f32>,
}

impl TaskGradients {
    fn compute(model: &MultiTaskMlp, batch: &Split) -> Result<Self> {
        let z = model.representation(&batch.features)?;
        let z_detached = Var::from_tensor(&z.detach())?;
        let task_losses = tasks::losses(&model.heads(&z_detached)?, batch)?;
        let losses = task_losses
            .iter()
            .map(|l| Ok(l.to_scalar::<f32>()?))
            .collect::<Result<Vec<f32>>>()?;
        let head_grads = task_losses
            .iter()
            .map(Tensor::backward)
            .collect::<candle_core::Result<Vec<GradStore>>>()?;
        let z_rows = flatten(&head_grads, &[&z_detached], "shared representation")?;
        Ok(Self {
            z,
            z_detached,
            losses,
            head_grads,
            z_rows,
        })
    }

    /// Back-propagates `⟨z, d_z⟩` through the trunk, `d_z` row-major like `z`:
    /// the gradient of every shared parameter is `J_zᵀ d_z`.
    fn backward_trunk(&self, d_z: Vec<f32>) -> Result<GradStore> {
        let d_z = Tensor::from_vec(d_z, self.z.shape(), self.z.device())?;
        Ok((&self.z * d_z)?.sum_all()?.backward()?)
    }

    /// The rows `∇_θ L_t` over the shared parameters `vars`, one trunk
    /// backward pass per task.
    fn parameter_rows(&self, vars: &[&Var]) -> Result<Vec<f32>> {
        let per_task = self
            .head_grads
            .iter()
            .map(|g| {
                let g_z = g
                    .get(&self.z_detached)
                    .ok_or(Error::MissingGradient("shared representation"))?;
                self.backward_trunk(g_z.flatten_all()?.to_vec1::<f32>()?)
            })
            .collect::<Result<Vec<GradStore>>>()?;
        flatten(&per_task, vars, "shared parameters")
    }
}

/// One row per gradient store: the gradients of `vars`, flattened in order
/// and concatenated (the `T × P` layout of [`GradRows`]).
fn flatten(stores: &[GradStore], vars: &[&Var], what: &'static str) -> Result<Vec<f32>> {
    let mut rows = Vec::new();
    for store in stores {
        for var in vars {
            let g = store.get(var).ok_or(Error::MissingGradient(what))?;
            rows.extend(g.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    Ok(rows)
}

/// Stores consecutive pieces of `flat` as the gradients of `vars`, each
/// piece reshaped to its parameter (the inverse of [`flatten`] for one row).
fn write_flat(grads: &mut GradStore, vars: &[&Var], flat: &[f32]) -> Result<()> {
    let mut offset = 0;
    for var in vars {
        let n = var.elem_count();
        let piece = flat
            .get(offset..offset + n)
            .expect("the direction has one entry per column of the rows built from these vars");
        grads.insert(var, Tensor::from_slice(piece, var.shape(), var.device())?);
        offset += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::autompg;

    /// The two routes apply the same f32 operations to the same numbers up
    /// to the order of a few sums; a few ulps of the largest entry.
    const ROUTE_TOLERANCE: f32 = 1e-5;

    #[test]
    fn parameter_rows_equal_each_task_backward_through_the_whole_model() {
        let device = Device::Cpu;
        let data = autompg::load(7, 0.2, &device).unwrap();
        let batch = data.train.select(&(0..32).collect::<Vec<u32>>()).unwrap();
        let model = MultiTaskMlp::new(
            autompg::FEATURES,
            &[16, 8],
            &tasks::HEAD_OUTPUTS,
            3,
            &device,
        )
        .unwrap();
        let shared = model.shared_vars();
        let rows = TaskGradients::compute(&model, &batch)
            .unwrap()
            .parameter_rows(&shared)
            .unwrap();

        // The plain candle way: L_t.backward() through trunk and head.
        let outputs = model
            .heads(&model.representation(&batch.features).unwrap())
            .unwrap();
        let direct: Vec<GradStore> = tasks::losses(&outputs, &batch)
            .unwrap()
            .iter()
            .map(|l| l.backward().unwrap())
            .collect();
        let expected = flatten(&direct, &shared, "shared parameters").unwrap();

        let p: usize = shared.iter().map(|v| v.elem_count()).sum();
        assert_eq!(rows.len(), 2 * p);
        let scale = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0);
        for (i, (a, b)) in rows.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= ROUTE_TOLERANCE * scale,
                "entry {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn write_flat_inverts_flatten() {
        let device = Device::Cpu;
        let model = MultiTaskMlp::new(3, &[4, 2], &[1, 2], 0, &device).unwrap();
        let vars = model.shared_vars();
        let p: usize = vars.iter().map(|v| v.elem_count()).sum();
        let flat: Vec<f32> = (0..p).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut grads = GradStore::default();
        write_flat(&mut grads, &vars, &flat).unwrap();
        assert_eq!(flatten(&[grads], &vars, "shared parameters").unwrap(), flat);
    }
}
