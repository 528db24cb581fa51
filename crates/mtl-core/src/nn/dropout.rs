//! [`Dropout`] as a layer.

use super::Module;
use crate::{Graph, ParamStore, Result, Var};

/// Inverted dropout with drop probability `p`; the identity in evaluation mode.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    /// Drop probability in `[0, 1)`.
    pub p: f32,
}

impl Module for Dropout {
    fn forward(&self, g: &mut Graph, _ps: &mut ParamStore, x: Var) -> Result<Var> {
        g.dropout(x, self.p)
    }
}
