//! [`Activation`]: the element-wise non-linearities as a layer.

use serde::{Deserialize, Serialize};

use super::Module;
use crate::{Graph, ParamStore, Result, Var};

/// An element-wise non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// Leaky ReLU with slope 0.01 below zero.
    LeakyRelu,
    /// GELU (tanh approximation).
    Gelu,
    /// `tanh(x)`.
    Tanh,
    /// The logistic sigmoid.
    Sigmoid,
    /// No non-linearity.
    Identity,
}

impl Module for Activation {
    fn forward(&self, g: &mut Graph, _ps: &mut ParamStore, x: Var) -> Result<Var> {
        match self {
            Activation::Relu => g.relu(x),
            Activation::LeakyRelu => g.leaky_relu(x, 0.01),
            Activation::Gelu => g.gelu(x),
            Activation::Tanh => g.tanh(x),
            Activation::Sigmoid => g.sigmoid(x),
            Activation::Identity => Ok(x),
        }
    }
}
