//! [`Conv2d`]: a 2-D convolution layer.

use rand::Rng;

use super::{Init, Module};
use crate::{Graph, ParamGroup, ParamId, ParamStore, Result, Var};

/// A 2-D convolution with a square kernel, weight `[out, in, k, k]` and bias `[out]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Kernel `[out, in, k, k]`.
    pub weight: ParamId,
    /// Bias `[out]`.
    pub bias: ParamId,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub padding: usize,
}

impl Conv2d {
    /// Registers `{name}.weight` (Kaiming uniform, fan-in `in·k·k`) and `{name}.bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let fan_in = in_channels * kernel * kernel;
        let weight = ps.add(
            &format!("{name}.weight"),
            &[out_channels, in_channels, kernel, kernel],
            group.clone(),
            Init::KaimingUniform { fan_in },
            rng,
        )?;
        let bias = ps.add(
            &format!("{name}.bias"),
            &[out_channels],
            group,
            Init::Zeros,
            rng,
        )?;
        Ok(Conv2d {
            weight,
            bias,
            stride,
            padding,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let w = g.param(ps, self.weight)?;
        let b = g.param(ps, self.bias)?;
        g.conv2d(x, w, Some(b), self.stride, self.padding)
    }
}
