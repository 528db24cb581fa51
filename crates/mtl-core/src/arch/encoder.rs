//! [`Encoder`]: the network an [`EncoderConfig`] describes, as a list of
//! stages that architectures run one at a time (cross-stitch mixes its columns
//! between stages).

use rand::Rng;

use super::EncoderConfig;
use crate::error::{CoreError, Result};
use crate::nn::{Activation, Conv2d, LayerNorm, Linear, MaxPool2d, Module};
use crate::{Graph, ParamGroup, ParamId, ParamStore, Var};

/// One stage of an encoder: a layer and what follows it.
#[derive(Clone, Debug)]
enum Stage {
    /// `dropout(act(norm(x Wᵀ + b)))`, flattening a rank-4 input first.
    Dense {
        linear: Linear,
        norm: Option<LayerNorm>,
        activation: Activation,
        dropout: f32,
    },
    /// `act(max_pool_2(conv(x)))`.
    ConvPool {
        conv: Conv2d,
        channels: usize,
        pool: MaxPool2d,
        activation: Activation,
    },
}

impl Stage {
    fn channels(&self) -> usize {
        match self {
            Stage::Dense { linear, .. } => linear.out_features,
            Stage::ConvPool { channels, .. } => *channels,
        }
    }

    fn params(&self) -> Vec<ParamId> {
        match self {
            Stage::Dense { linear, norm, .. } => {
                let mut ids = vec![linear.weight];
                ids.extend(linear.bias);
                if let Some(n) = norm {
                    ids.extend([n.gamma, n.beta]);
                }
                ids
            }
            Stage::ConvPool { conv, .. } => vec![conv.weight, conv.bias],
        }
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        match self {
            Stage::Dense {
                linear,
                norm,
                activation,
                dropout,
            } => {
                let x = flatten(g, x)?;
                let mut h = linear.forward(g, ps, x)?;
                if let Some(n) = norm {
                    h = n.forward(g, ps, h)?;
                }
                let h = activation.forward(g, ps, h)?;
                if *dropout > 0.0 {
                    g.dropout(h, *dropout)
                } else {
                    Ok(h)
                }
            }
            Stage::ConvPool {
                conv,
                pool,
                activation,
                ..
            } => {
                let h = conv.forward(g, ps, x)?;
                let h = pool.forward(g, ps, h)?;
                activation.forward(g, ps, h)
            }
        }
    }
}

/// `[N, ...]` to `[N, prod(...)]`; rank-2 inputs are returned unchanged.
pub(crate) fn flatten(g: &mut Graph, x: Var) -> Result<Var> {
    let shape = g.shape(x)?;
    if shape.len() == 2 {
        return Ok(x);
    }
    let n = shape.first().copied().unwrap_or(1);
    let rest: usize = shape.iter().skip(1).product();
    g.reshape(x, &[n, rest])
}

/// A trunk, an expert or a column: the stages of an [`EncoderConfig`].
///
/// Parameters are named `{name}.{i}.weight` / `.bias` (and `.norm.*`) for the
/// dense layers of an MLP, and `{name}.conv1`, `{name}.conv2`, `{name}.fc` for
/// LeNet. The output is `[B, out_features]`.
#[derive(Clone, Debug)]
pub struct Encoder {
    stages: Vec<Stage>,
    input_shape: Vec<usize>,
    out_features: usize,
    conv: bool,
    /// Whether the first stage is the configuration's first (the encoder
    /// reads the input itself, so [`Encoder::prepare`] applies).
    reads_input: bool,
}

impl Encoder {
    /// Builds one encoder for per-example inputs of `input_shape`
    /// (`[features]`, or `[channels, height, width]`).
    pub fn build<R: Rng + ?Sized>(
        config: &EncoderConfig,
        input_shape: &[usize],
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        rng: &mut R,
    ) -> Result<Encoder> {
        let mut built = Self::build_many(config, input_shape, ps, &[(name.into(), group)], rng)?;
        Ok(built.remove(0))
    }

    /// Builds one encoder per `(name, group)`, stage by stage: the first
    /// stage of every encoder, then the second, and so on. Encoders that share
    /// a group therefore keep their last stages next to each other in the
    /// store (the "last shared layer" GradNorm reads is one range).
    pub fn build_many<R: Rng + ?Sized>(
        config: &EncoderConfig,
        input_shape: &[usize],
        ps: &mut ParamStore,
        names: &[(String, ParamGroup)],
        rng: &mut R,
    ) -> Result<Vec<Encoder>> {
        let stages = Self::num_stages_of(config, input_shape)?;
        Self::build_stages(config, input_shape, 0..stages, ps, names, rng)
    }

    /// The number of stages `config` has for per-example inputs of
    /// `input_shape`.
    pub fn num_stages_of(config: &EncoderConfig, input_shape: &[usize]) -> Result<usize> {
        Self::plan_checked(config, input_shape).map(|plans| plans.len())
    }

    /// Builds one encoder per `(name, group)` made of the stages `stages` of
    /// `config` only, stage by stage as [`Encoder::build_many`] does. Stage
    /// `i` of the configuration is stage `i − stages.start` of each encoder.
    /// An encoder that does not start at stage 0 reads the output of the
    /// stage before (`[B, features]`, or `[B, C, H, W]` after a convolution),
    /// not the input.
    pub fn build_stages<R: Rng + ?Sized>(
        config: &EncoderConfig,
        input_shape: &[usize],
        stages: std::ops::Range<usize>,
        ps: &mut ParamStore,
        names: &[(String, ParamGroup)],
        rng: &mut R,
    ) -> Result<Vec<Encoder>> {
        let plans = Self::plan_checked(config, input_shape)?;
        if stages.is_empty() || stages.end > plans.len() {
            return Err(CoreError::InvalidArgument {
                what: format!("{} encoder stages", config.name()),
                reason: format!(
                    "{stages:?} is not a non-empty range of its {} stages",
                    plans.len()
                ),
            });
        }
        let reads_input = stages.start == 0;
        let plans = &plans[stages];
        let mut stages: Vec<Vec<Stage>> = vec![Vec::with_capacity(plans.len()); names.len()];
        for plan in plans {
            for ((name, group), stages) in names.iter().zip(&mut stages) {
                stages.push(plan.build(ps, name, group, rng)?);
            }
        }
        let out_features = plans.last().map_or(0, StagePlan::out_features);
        let conv = matches!(config, EncoderConfig::Lenet { .. });
        Ok(stages
            .into_iter()
            .map(|stages| Encoder {
                stages,
                input_shape: input_shape.to_vec(),
                out_features,
                conv,
                reads_input,
            })
            .collect())
    }

    /// The validated configuration's stage plans.
    fn plan_checked(config: &EncoderConfig, input_shape: &[usize]) -> Result<Vec<StagePlan>> {
        config.validate()?;
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(CoreError::InvalidShape {
                op: "encoder input",
                shape: input_shape.to_vec(),
                reason: format!("the {} encoder needs a non-empty shape", config.name()),
            });
        }
        plan(config, input_shape)
    }

    /// The number of stages.
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    /// The width of the output.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The per-example input shape the encoder was built for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The size of axis 1 of stage `i`'s output: features of a dense stage,
    /// channels of a convolutional one.
    pub fn stage_channels(&self, i: usize) -> Option<usize> {
        self.stages.get(i).map(Stage::channels)
    }

    /// Whether stage `i` is convolutional (its output is `[B, C, H, W]`).
    pub fn stage_is_conv(&self, i: usize) -> bool {
        matches!(self.stages.get(i), Some(Stage::ConvPool { .. }))
    }

    /// The parameters of the last stage (weight, bias and normalisation), in
    /// the order they were registered.
    pub fn last_stage_params(&self) -> Vec<ParamId> {
        self.stages.last().map_or_else(Vec::new, Stage::params)
    }

    /// Every parameter, in the order it was registered.
    pub fn params(&self) -> Vec<ParamId> {
        self.stages.iter().flat_map(Stage::params).collect()
    }

    /// Checks a batch `x` against the input shape and brings it to the form
    /// the first stage reads: `[B, C, H, W]` for LeNet (a `[B, C·H·W]` batch
    /// is reshaped), `[B, features]` for an MLP (any batch is flattened).
    pub fn prepare(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let shape = g.shape(x)?.to_vec();
        if !self.reads_input {
            return Err(CoreError::InvalidArgument {
                what: "encoder input".into(),
                reason: "this encoder starts after the configuration's first stage and \
                         reads the stage before, not the input"
                    .into(),
            });
        }
        let per_example: usize = self.input_shape.iter().product();
        let batch = shape.first().copied().unwrap_or(0);
        let fits = shape.len() >= 2 && shape[1..].iter().product::<usize>() == per_example;
        let exact = shape.len() == 1 + self.input_shape.len() && shape[1..] == self.input_shape[..];
        if !fits || (self.conv && shape.len() > 2 && !exact) {
            return Err(CoreError::InvalidShape {
                op: "encoder input",
                shape,
                reason: format!(
                    "expected [batch, {}] per the encoder's input shape",
                    self.input_shape
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if self.conv {
            if exact {
                return Ok(x);
            }
            let mut full = vec![batch];
            full.extend(&self.input_shape);
            g.reshape(x, &full)
        } else {
            flatten(g, x)
        }
    }

    /// Runs stage `i` on `h` (the output of stage `i − 1`, or of
    /// [`prepare`](Self::prepare) for the first).
    pub fn forward_stage(
        &self,
        i: usize,
        g: &mut Graph,
        ps: &mut ParamStore,
        h: Var,
    ) -> Result<Var> {
        let stage = self.stages.get(i).ok_or(CoreError::Index {
            op: "Encoder::forward_stage",
            index: i,
            len: self.stages.len(),
        })?;
        stage.forward(g, ps, h)
    }
}

impl Module for Encoder {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let mut h = if self.reads_input {
            self.prepare(g, x)?
        } else {
            x
        };
        for stage in &self.stages {
            h = stage.forward(g, ps, h)?;
        }
        Ok(h)
    }
}

/// A stage's sizes, computed from the configuration before anything is built.
enum StagePlan {
    Dense {
        suffix: String,
        inputs: usize,
        outputs: usize,
        layer_norm: bool,
        activation: Activation,
        dropout: f32,
    },
    ConvPool {
        suffix: &'static str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        activation: Activation,
    },
}

impl StagePlan {
    fn out_features(&self) -> usize {
        match self {
            StagePlan::Dense { outputs, .. } => *outputs,
            StagePlan::ConvPool { .. } => 0,
        }
    }

    fn build<R: Rng + ?Sized>(
        &self,
        ps: &mut ParamStore,
        name: &str,
        group: &ParamGroup,
        rng: &mut R,
    ) -> Result<Stage> {
        Ok(match self {
            StagePlan::Dense {
                suffix,
                inputs,
                outputs,
                layer_norm,
                activation,
                dropout,
            } => {
                let full = format!("{name}.{suffix}");
                let linear = Linear::new(ps, &full, group.clone(), *inputs, *outputs, true, rng)?;
                let norm = if *layer_norm {
                    Some(LayerNorm::new(
                        ps,
                        &format!("{full}.norm"),
                        group.clone(),
                        *outputs,
                        rng,
                    )?)
                } else {
                    None
                };
                Stage::Dense {
                    linear,
                    norm,
                    activation: *activation,
                    dropout: *dropout,
                }
            }
            StagePlan::ConvPool {
                suffix,
                in_channels,
                out_channels,
                kernel,
                activation,
            } => Stage::ConvPool {
                conv: Conv2d::new(
                    ps,
                    &format!("{name}.{suffix}"),
                    group.clone(),
                    *in_channels,
                    *out_channels,
                    *kernel,
                    1,
                    0,
                    rng,
                )?,
                channels: *out_channels,
                pool: MaxPool2d { size: 2, stride: 2 },
                activation: *activation,
            },
        })
    }
}

/// The stages of `config` for per-example inputs of `input_shape`.
fn plan(config: &EncoderConfig, input_shape: &[usize]) -> Result<Vec<StagePlan>> {
    match config {
        EncoderConfig::Mlp {
            hidden,
            dropout,
            activation,
            layer_norm,
        } => {
            let mut inputs: usize = input_shape.iter().product();
            Ok(hidden
                .iter()
                .enumerate()
                .map(|(i, &outputs)| {
                    let stage = StagePlan::Dense {
                        suffix: i.to_string(),
                        inputs,
                        outputs,
                        layer_norm: *layer_norm,
                        activation: *activation,
                        dropout: *dropout,
                    };
                    inputs = outputs;
                    stage
                })
                .collect())
        }
        EncoderConfig::Lenet {
            conv1,
            conv2,
            kernel,
            fc,
            dropout,
            activation,
        } => {
            let &[channels, height, width] = input_shape else {
                return Err(CoreError::InvalidShape {
                    op: "lenet encoder",
                    shape: input_shape.to_vec(),
                    reason: "expected a per-example shape [channels, height, width]".into(),
                });
            };
            // Each stage: a valid convolution (side − k + 1), then 2×2 pooling (÷ 2).
            let side = |s: usize| (s + 1).checked_sub(*kernel).map(|c| c / 2);
            let after = |s: usize| side(s).and_then(side).filter(|&v| v > 0);
            let (Some(h), Some(w)) = (after(height), after(width)) else {
                return Err(CoreError::InvalidShape {
                    op: "lenet encoder",
                    shape: input_shape.to_vec(),
                    reason: format!(
                        "images are too small for two {kernel}x{kernel} convolutions \
                         each followed by 2x2 pooling"
                    ),
                });
            };
            Ok(vec![
                StagePlan::ConvPool {
                    suffix: "conv1",
                    in_channels: channels,
                    out_channels: *conv1,
                    kernel: *kernel,
                    activation: *activation,
                },
                StagePlan::ConvPool {
                    suffix: "conv2",
                    in_channels: *conv1,
                    out_channels: *conv2,
                    kernel: *kernel,
                    activation: *activation,
                },
                StagePlan::Dense {
                    suffix: "fc".into(),
                    inputs: conv2 * h * w,
                    outputs: *fc,
                    layer_norm: false,
                    activation: *activation,
                    dropout: *dropout,
                },
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;
    use rand::SeedableRng;

    fn lenet() -> EncoderConfig {
        EncoderConfig::Lenet {
            conv1: 10,
            conv2: 20,
            kernel: 5,
            fc: 50,
            dropout: 0.0,
            activation: Activation::Relu,
        }
    }

    #[test]
    fn lenet_maps_mnist_images_to_fifty_features() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut ps = ParamStore::new();
        let enc = Encoder::build(
            &lenet(),
            &[1, 28, 28],
            &mut ps,
            "encoder",
            ParamGroup::Shared,
            &mut rng,
        )
        .unwrap();
        // 28 → conv5 → 24 → pool → 12 → conv5 → 8 → pool → 4: 20·4·4 = 320 inputs to fc.
        let expected = (10 * 25 + 10) + (20 * 10 * 25 + 20) + (320 * 50 + 50);
        assert_eq!(ps.len(), expected);
        assert!(ps.find("encoder.conv1.weight").is_some());
        assert!(ps.find("encoder.fc.bias").is_some());
        let mut g = Graph::new(0);
        for batch in [
            Tensor::zeros(&[3, 1, 28, 28]),
            Tensor::zeros(&[3, 784]), // flat images are reshaped
        ] {
            let x = g.input(batch);
            let y = enc.forward(&mut g, &mut ps, x).unwrap();
            assert_eq!(g.shape(y).unwrap(), &[3, 50]);
        }
        let wrong = g.input(Tensor::zeros(&[3, 1, 14, 56]));
        assert!(enc.forward(&mut g, &mut ps, wrong).is_err());
    }

    #[test]
    fn lenet_refuses_flat_or_tiny_inputs() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut ps = ParamStore::new();
        for shape in [&[784][..], &[1, 8, 8]] {
            let err = Encoder::build(
                &lenet(),
                shape,
                &mut ps,
                "encoder",
                ParamGroup::Shared,
                &mut rng,
            )
            .unwrap_err();
            assert!(matches!(err, CoreError::InvalidShape { .. }), "{err}");
        }
    }

    #[test]
    fn build_many_keeps_last_stages_together() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut ps = ParamStore::new();
        let config = EncoderConfig::Mlp {
            hidden: vec![5, 3],
            dropout: 0.0,
            activation: Activation::Relu,
            layer_norm: false,
        };
        let names: Vec<(String, ParamGroup)> = (0..3)
            .map(|e| (format!("experts.{e}"), ParamGroup::Shared))
            .collect();
        let experts = Encoder::build_many(&config, &[4], &mut ps, &names, &mut rng).unwrap();
        let mut ranges: Vec<_> = experts
            .iter()
            .flat_map(|e| e.last_stage_params())
            .map(|id| ps.view(id).unwrap().range())
            .collect();
        ranges.sort_by_key(|r| r.start);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(ranges.last().unwrap().end, ps.len());
        assert_eq!(
            ranges.iter().map(|r| r.len()).sum::<usize>(),
            3 * (5 * 3 + 3)
        );
        assert!(ps.find("experts.2.1.weight").is_some());
    }
}
