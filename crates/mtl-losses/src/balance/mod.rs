//! Loss balancers: how the `T` task losses (and, for some methods, their
//! gradients) become one update.
//!
//! A [`Balancer`] is engine-agnostic: each step it takes the task losses as
//! plain `f32`s and, when [`Balancer::needs`] says so, a `T × P` matrix of
//! gradient rows ([`GradRows`]), and returns [`Balanced`] task weights or a
//! combined direction. Nothing here depends on a tensor type, so losses
//! computed by any framework can be balanced.
//!
//! # Scale convention
//!
//! Every weight this module returns is on the **mean scale**: when a method
//! reduces to equal weighting (equal losses and gradients, first epochs of
//! DWA, uniform FAMO logits, ...), it returns `1/T` per task, and the shared
//! update is the mean gradient `g_0 = (1/T) Σ_t g_t`. Methods whose papers
//! normalise their weights to sum to `T` (GradNorm, DWA) are divided by `T`;
//! their native weights are reported by [`Balancer::learnable`]. Uncertainty
//! weighting is unnormalised by construction: its returned weight is the
//! multiplier of `L_t` in Kendall et al.'s objective divided by `T`. Fixed
//! weights are returned exactly as configured. To train on the summed loss
//! instead (LibMTL's equal weighting uses weights 1), multiply the weights by
//! `T`; with SGD this is a learning-rate change, with Adam it barely matters.
//!
//! Task head `t` always receives `w_t ∇_{θ_t} L_t`, whichever variant of
//! [`Balanced`] is returned.
//!
//! # One step
//!
//! 1. Ask [`Balancer::needs`] which gradient rows (if any) to compute.
//! 2. Call [`Balancer::balance`] with the losses (and rows).
//! 3. After the optimiser step, if [`Balancer::needs_losses_after_step`] is
//!    true, re-evaluate the losses on the same batch and pass them to
//!    [`Balancer::observe_after_step`] (FAMO).
//! 4. At the end of every epoch pass the epoch-mean losses to
//!    [`Balancer::end_epoch`] (DWA).
//!
//! # Adding a method
//!
//! A method that is a function of the Gram matrix implements [`GramMethod`]
//! (its weights from `G` and the losses) and [`MethodState`]; one that works
//! on the rows themselves implements [`RowMethod`]. [`GramBalancer`] and
//! [`RowBalancer`] supply the [`Balancer`] implementation. Then one line in
//! the registry table (`registry.rs`) adds the configuration variant, the
//! build arm and the listing.
//!
//! # Absent tasks
//!
//! [`BalanceInput::present`] flags the tasks labelled in the batch. An absent
//! task gets weight 0, adds nothing to the direction, and no learnable state
//! learns from it: Gram methods solve over the present tasks only (as if only
//! they existed, so mean-scale weights are `1/T'` over `T'` present tasks);
//! loss methods leave the absent task's state untouched. With no task
//! present the weights and the direction are zero.
//!
//! # Column shards (data-parallel training)
//!
//! With [`BalanceInput::shard`] a balancer gets the rows of one contiguous
//! column slice and the full `T × T` Gram (the all-reduced sum of the slices'
//! Grams, see [`ColumnShard`]); it returns the same weights on every slice
//! and its slice's part of the direction. [`Balancer::supports_column_shards`]
//! says which do:
//!
//! * **on shards** (weights from the Gram, direction a combination of the
//!   rows): MGDA, MGDA-UB, PCGrad, CAGrad, IMTL (all modes), Nash-MTL,
//!   Aligned-MTL, UPGrad, ConFIG, GradNorm (norms are the Gram's diagonal),
//!   GradVac with one parameter group; GradDrop (its uniforms are drawn per
//!   global column from a ChaCha stream position, so every slice draws the
//!   unsharded values);
//! * **full rows**: DB-MTL (a per-coordinate gradient EMA), GradVac with
//!   several parameter groups (one Gram per group), and the loss-only
//!   methods, which take no rows at all.
//!
//! Balancers are built by name from a typed configuration with
//! [`BalancerConfig`]; [`methods`] lists every method with its parameters and
//! defaults.

mod aligned_mtl;
mod auto_lambda;
mod cagrad;
mod conflict_free;
mod cr_mogm;
mod db_mtl;
mod double_sample;
mod dualproj;
mod dwa;
mod equal;
mod excess_mtl;
mod fairgrad;
mod famo;
mod fixed;
mod gls;
mod graddrop;
mod gradnorm;
mod gradvac;
pub mod gram;
mod gram_method;
mod imtl;
mod input;
mod krum;
mod method_state;
mod mgda;
mod moco;
mod modo;
mod nash_mtl;
mod output;
mod pcd;
mod pcgrad;
mod registry;
mod rlw;
mod rng_state;
mod row_method;
mod sdmgrad;
pub mod solver;
mod state_optimizer;
mod stch;
mod trimmed_mean;
mod uncertainty;
mod upgrad;

pub use aligned_mtl::{AlignedMtl, AlignedMtlConfig, AlignedPreference, AlignedScale};
pub use auto_lambda::{meta_gradient as auto_lambda_meta_gradient, AutoLambda, AutoLambdaConfig};
pub use cagrad::{Cagrad, CagradConfig};
pub use conflict_free::{ConFig, ConFigConfig};
pub use cr_mogm::{smooth as cr_mogm_smooth, CrMogm, CrMogmConfig, InnerMethod};
pub use db_mtl::{DbMtl, DbMtlConfig, PARALLEL_EMA_MIN_ENTRIES};
pub use double_sample::{cross_gram, DoubleSampleBalancer, DoubleSampleMethod};
pub use dualproj::{dualproj_weights, DualProj, DualProjConfig};
pub use dwa::{Dwa, DwaConfig};
pub use equal::{EqualConfig, EqualWeighting};
pub use excess_mtl::{excess_risk, exponentiated_step, ExcessMtl, ExcessMtlConfig};
pub use fairgrad::{fairgrad_weights, FairGrad, FairGradConfig};
pub use famo::{Famo, FamoConfig};
pub use fixed::{FixedConfig, FixedWeights};
pub use gls::{gls_weights, Gls, GlsConfig};
pub use graddrop::{GradDrop, GradDropConfig};
pub use gradnorm::{GradNorm, GradNormConfig};
pub use gradvac::{GradVac, GradVacConfig};
pub use gram_method::{GramBalancer, GramMethod, GramStep};
pub use imtl::{imtl_g_weights, Imtl, ImtlConfig, ImtlMode, NegativeSumPolicy};
pub use input::{
    check_losses, BalanceInput, ColumnShard, GradRows, GradientSource, LookAhead, SecondBatch,
    PARALLEL_NORM_MIN_ENTRIES,
};
pub use krum::{krum_weights, Krum, KrumConfig};
pub use method_state::MethodState;
pub use mgda::{
    GradNormalization, Mgda, MgdaConfig, MgdaUb, MgdaUbConfig, MgdaUpdate, MinNormSolverKind,
};
pub use moco::{track as moco_track, weight_step as moco_weight_step, MoCo, MoCoConfig};
pub use modo::{modo_step, MoDo, MoDoConfig};
pub use nash_mtl::{NashMtl, NashMtlConfig};
pub use output::Balanced;
pub use pcd::{pcd_weights, update_scale as pcd_update_scale, Pcd, PcdConfig, Tau as PcdTau};
pub use pcgrad::{surgery_weights, PcGrad, PcGradConfig, Reduction};
pub use registry::{methods, BalancerConfig, MethodConfig, MethodInfo, ParamInfo};
pub use rlw::{RandomLossWeighting, RlwConfig};
pub use rng_state::{RngState, SeededRng};
pub use row_method::{Combined, RowBalancer, RowMethod, RowStep};
pub use sdmgrad::{sdmgrad_step, SdmGrad, SdmGradConfig};
pub use state_optimizer::{OptimizerKind, StateAdam, StateOptimizer};
pub use stch::{stch_weights, warmup_weights as stch_warmup_weights, Stch, StchConfig};
pub use trimmed_mean::{trimmed_mean, TrimmedMean, TrimmedMeanConfig};
pub use uncertainty::{Uncertainty, UncertaintyConfig, UncertaintyForm};
pub use upgrad::{UpGrad, UpGradConfig};

use crate::error::{Error, Result};

/// A loss balancer: turns the task losses (and optionally their gradients)
/// into task weights or a combined direction, and owns any learnable state.
///
/// Implementations validate their input with [`BalanceInput::validate`]: a
/// NaN or infinite loss is an error naming the task, and a wrong number of
/// losses or gradient rows is an error naming both counts.
pub trait Balancer: Send {
    /// The registry name of the method (e.g. `"gradnorm"`).
    fn name(&self) -> &'static str;

    /// The number of tasks `T` the balancer was built for.
    fn num_tasks(&self) -> usize;

    /// Which gradient rows [`balance`](Balancer::balance) needs each step.
    fn needs(&self) -> GradientSource;

    /// One balancing step. Learnable state is updated here by the method's
    /// documented rule; the returned weights are those *before* that update
    /// (the network step uses `w(t)`).
    ///
    /// # Errors
    /// Bad input (counts, non-finite losses, missing gradient rows).
    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced>;

    /// Called once at the end of each epoch with the epoch-mean loss of every
    /// task (over the batches where the task was present; a task absent for
    /// the whole epoch is given its previous epoch mean, so that DWA sees a
    /// ratio of 1 for it). The default checks the input and keeps no record.
    ///
    /// # Errors
    /// [`Error::CountMismatch`] or [`Error::NonFiniteLoss`].
    fn end_epoch(&mut self, mean_losses: &[f32]) -> Result<()> {
        check_losses(mean_losses, self.num_tasks())
    }

    /// Whether the trainer must re-evaluate the losses on the same batch after
    /// the optimiser step and call [`observe_after_step`](Balancer::observe_after_step).
    fn needs_losses_after_step(&self) -> bool {
        false
    }

    /// Called after the optimiser step with the losses of the same batch at
    /// the new parameters. The default checks the input and ignores it.
    ///
    /// # Errors
    /// [`Error::CountMismatch`] or [`Error::NonFiniteLoss`].
    fn observe_after_step(&mut self, new_losses: &[f32]) -> Result<()> {
        check_losses(new_losses, self.num_tasks())
    }

    /// The persistent state (learnable values, optimiser moments, histories,
    /// RNG position) as JSON, for checkpoints. Stateless balancers return `null`.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores a state written by [`state`](Balancer::state); continuing
    /// from it gives bit-identical results to an uninterrupted run.
    ///
    /// # Errors
    /// [`Error::State`] if the value does not fit this balancer.
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        if state.is_null() {
            Ok(())
        } else {
            Err(Error::State {
                balancer: self.name(),
                reason: format!("this balancer is stateless, expected null, got {state}"),
            })
        }
    }

    /// Returns the balancer to its freshly built state.
    fn reset(&mut self) {}

    /// Whether [`balance`](Balancer::balance) accepts a
    /// [`ColumnShard`]: rows restricted to a contiguous column slice plus the
    /// full Gram, returning the same weights on every slice and the slice's
    /// part of the direction. When false, a data-parallel trainer gathers the
    /// full rows instead. Loss-only balancers (needing no rows) return false.
    fn supports_column_shards(&self) -> bool {
        false
    }

    /// Whether the balancer needs the gradients of a second, independent
    /// mini-batch in [`BalanceInput::second`] (MoDo, SDMGrad). The trainer
    /// draws that batch deterministically from its seed and computes the
    /// same rows ([`needs`](Balancer::needs)) on it.
    fn needs_second_batch(&self) -> bool {
        false
    }

    /// `Some(w)` when the balancer needs a validation look-ahead in
    /// [`BalanceInput::lookahead`] (Auto-Lambda): the trainer steps the shared
    /// parameters to `θ' = θ − lr · Σ_t w_t g_t` with these weights and the
    /// current training rows `g_t`, and supplies the validation losses and
    /// their gradient rows at `θ'` (see [`LookAhead`]). `None` (default): no
    /// look-ahead.
    fn lookahead_weights(&self) -> Option<Vec<f32>> {
        None
    }

    /// The learnable or adaptive values worth logging, as `(name, value)`
    /// pairs such as `("log_var[0]", -0.31)`.
    fn learnable(&self) -> Vec<(String, f32)> {
        Vec::new()
    }
}

/// Parses a saved state into `T`, mapping failures to [`Error::State`].
pub(crate) fn parse_state<T: serde::de::DeserializeOwned>(
    balancer: &'static str,
    state: &serde_json::Value,
) -> Result<T> {
    serde_json::from_value(state.clone()).map_err(|e| Error::State {
        balancer,
        reason: e.to_string(),
    })
}

/// Serialises a state struct; serialising plain numbers and vectors cannot fail.
pub(crate) fn to_state<T: serde::Serialize>(state: &T) -> serde_json::Value {
    serde_json::to_value(state).expect("balancer state holds only numbers and vectors")
}

/// Rejects a balancer for zero tasks.
pub(crate) fn require_tasks(num_tasks: usize) -> Result<()> {
    if num_tasks == 0 {
        Err(Error::NoTasks)
    } else {
        Ok(())
    }
}

/// Rejects a non-finite or out-of-range hyperparameter.
pub(crate) fn check_parameter(
    balancer: &'static str,
    parameter: &'static str,
    value: f64,
    valid: bool,
    reason: &'static str,
) -> Result<()> {
    if value.is_finite() && valid {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            balancer,
            parameter,
            value: value.to_string(),
            reason,
        })
    }
}
