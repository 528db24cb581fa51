//! [`Linear`]: `y = x Wᵀ + b`.

use rand::Rng;

use super::{Init, Module};
use crate::{Graph, ParamGroup, ParamId, ParamStore, Result, Var};

/// A fully connected layer `y = x Wᵀ + b` with `W` stored `[out, in]` (the
/// layout PyTorch uses, so checkpoints load there unchanged).
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: ParamId,
    /// Bias `[out]`, if any.
    pub bias: Option<ParamId>,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

impl Linear {
    /// Registers `{name}.weight` (Kaiming uniform) and `{name}.bias` (zeros) in `group`.
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        let weight = ps.add(
            &format!("{name}.weight"),
            &[out_features, in_features],
            group.clone(),
            Init::KaimingUniform {
                fan_in: in_features,
            },
            rng,
        )?;
        let bias = if bias {
            Some(ps.add(
                &format!("{name}.bias"),
                &[out_features],
                group,
                Init::Zeros,
                rng,
            )?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// The number of parameters: `in·out (+ out)`.
    pub fn num_params(&self) -> usize {
        self.in_features * self.out_features
            + if self.bias.is_some() {
                self.out_features
            } else {
                0
            }
    }
}

impl Module for Linear {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let w = g.param(ps, self.weight)?;
        let y = g.matmul_t(x, w, false, true)?;
        match self.bias {
            Some(b) => {
                let b = g.param(ps, b)?;
                g.add_row(y, b)
            }
            None => Ok(y),
        }
    }
}
