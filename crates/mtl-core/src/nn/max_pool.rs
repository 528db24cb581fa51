//! [`MaxPool2d`]: 2-D max pooling as a layer.

use super::Module;
use crate::{Graph, ParamStore, Result, Var};

/// Max pooling with a square window.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window size.
    pub size: usize,
    /// Stride.
    pub stride: usize,
}

impl Module for MaxPool2d {
    fn forward(&self, g: &mut Graph, _ps: &mut ParamStore, x: Var) -> Result<Var> {
        g.max_pool2d(x, self.size, self.stride)
    }
}
