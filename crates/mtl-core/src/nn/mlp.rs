//! [`Mlp`]: a multi-layer perceptron builder.

use rand::Rng;

use super::{Activation, Dropout, LayerNorm, Linear, Module};
use crate::{Graph, ParamGroup, ParamStore, Result, Var};

/// Linear layers of the given widths with an activation (and optional layer
/// normalisation and dropout) after every layer but, unless asked, the last.
///
/// ```
/// use mtl_core::{nn::{Activation, Mlp, Module}, Graph, ParamGroup, ParamStore, Tensor};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut ps = ParamStore::new();
/// let mlp = Mlp::builder(&[4, 8, 3]).build(&mut ps, "mlp", ParamGroup::Shared, &mut rng).unwrap();
/// assert_eq!(ps.len(), 4 * 8 + 8 + 8 * 3 + 3);
/// let mut g = Graph::new(0);
/// let x = g.input(Tensor::zeros(&[5, 4]));
/// let y = mlp.forward(&mut g, &mut ps, x).unwrap();
/// assert_eq!(g.shape(y).unwrap(), &[5, 3]);
/// ```
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    norms: Vec<Option<LayerNorm>>,
    activation: Activation,
    dropout: f32,
    activate_last: bool,
}

/// Options of an [`Mlp`] before its parameters are registered.
#[derive(Clone, Debug)]
pub struct MlpBuilder {
    widths: Vec<usize>,
    activation: Activation,
    dropout: f32,
    layer_norm: bool,
    activate_last: bool,
}

impl MlpBuilder {
    /// The activation between layers (ReLU by default).
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }

    /// Dropout probability after each activation (0 by default).
    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// Layer normalisation before each activation.
    pub fn layer_norm(mut self, on: bool) -> Self {
        self.layer_norm = on;
        self
    }

    /// Whether the last layer is followed by the activation too (as in an
    /// encoder whose output is a representation).
    pub fn activate_last(mut self, on: bool) -> Self {
        self.activate_last = on;
        self
    }

    /// Registers the parameters as `{name}.{i}.weight` / `.bias` in `group`.
    pub fn build<R: Rng + ?Sized>(
        self,
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        rng: &mut R,
    ) -> Result<Mlp> {
        if self.widths.len() < 2 || self.widths.contains(&0) {
            return Err(crate::CoreError::InvalidArgument {
                what: format!("mlp {name} widths"),
                reason: format!("{:?}: need at least two positive widths", self.widths),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::CoreError::InvalidArgument {
                what: format!("mlp {name} dropout"),
                reason: format!("{} is not in [0, 1)", self.dropout),
            });
        }
        let mut layers = Vec::new();
        let mut norms = Vec::new();
        let n = self.widths.len() - 1;
        for (i, w) in self.widths.windows(2).enumerate() {
            layers.push(Linear::new(
                ps,
                &format!("{name}.{i}"),
                group.clone(),
                w[0],
                w[1],
                true,
                rng,
            )?);
            let activated = i + 1 < n || self.activate_last;
            norms.push(if self.layer_norm && activated {
                Some(LayerNorm::new(
                    ps,
                    &format!("{name}.{i}.norm"),
                    group.clone(),
                    w[1],
                    rng,
                )?)
            } else {
                None
            });
        }
        Ok(Mlp {
            layers,
            norms,
            activation: self.activation,
            dropout: self.dropout,
            activate_last: self.activate_last,
        })
    }
}

impl Mlp {
    /// A builder for layers of the given widths (input first).
    pub fn builder(widths: &[usize]) -> MlpBuilder {
        MlpBuilder {
            widths: widths.to_vec(),
            activation: Activation::Relu,
            dropout: 0.0,
            layer_norm: false,
            activate_last: false,
        }
    }

    /// The linear layers.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_features)
    }
}

impl Module for Mlp {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let n = self.layers.len();
        let mut h = x;
        for (i, (layer, norm)) in self.layers.iter().zip(&self.norms).enumerate() {
            h = layer.forward(g, ps, h)?;
            if i + 1 < n || self.activate_last {
                if let Some(norm) = norm {
                    h = norm.forward(g, ps, h)?;
                }
                h = self.activation.forward(g, ps, h)?;
                h = Dropout { p: self.dropout }.forward(g, ps, h)?;
            }
        }
        Ok(h)
    }
}
