//! The [`Module`] trait: something that records a forward pass on the tape.

use crate::{Graph, ParamStore, Result, Var};

/// A layer or a stack of layers.
pub trait Module: Send + Sync + std::fmt::Debug {
    /// Records the forward pass of `x` on `g`, reading parameters from `ps`.
    /// `ps` is mutable so that layers with running statistics (batch
    /// normalisation) can update them in training mode.
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var>;
}
