//! [`LayerNorm`] as a layer.

use rand::Rng;

use super::{Init, Module};
use crate::{Graph, ParamGroup, ParamId, ParamStore, Result, Var};

/// Layer normalisation over the last axis with learnable scale and shift.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale `[d]`, initialised to ones.
    pub gamma: ParamId,
    /// Shift `[d]`, initialised to zeros.
    pub beta: ParamId,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Registers `{name}.weight` and `{name}.bias` of size `d`.
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        d: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let gamma = ps.add(
            &format!("{name}.weight"),
            &[d],
            group.clone(),
            Init::Ones,
            rng,
        )?;
        let beta = ps.add(&format!("{name}.bias"), &[d], group, Init::Zeros, rng)?;
        Ok(LayerNorm {
            gamma,
            beta,
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let gamma = g.param(ps, self.gamma)?;
        let beta = g.param(ps, self.beta)?;
        g.layer_norm(x, gamma, beta, self.eps)
    }
}
