//! [`Flatten`]: `[N, ...]` to `[N, prod(...)]`.

use super::Module;
use crate::{Graph, ParamStore, Result, Var};

/// Flattens every axis but the first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, g: &mut Graph, _ps: &mut ParamStore, x: Var) -> Result<Var> {
        let shape = g.shape(x)?.to_vec();
        let n = shape.first().copied().unwrap_or(1);
        let rest: usize = shape.iter().skip(1).product();
        g.reshape(x, &[n, rest])
    }
}
