//! Serde configurations of a multi-task model: the architecture
//! ([`ArchConfig`]), the encoder its experts or columns are made of
//! ([`EncoderConfig`]) and the task heads ([`HeadConfig`]).
//!
//! In a run configuration they sit under one `[model]` table; unknown keys are
//! refused at every level:
//!
//! ```toml
//! [model]
//! arch = "mmoe"          # hps | mmoe | dselect-k | cgc | ple | cross-stitch | mtan | ltb
//! experts = 4
//!
//! [model.encoder]
//! name = "mlp"           # mlp | lenet
//! hidden = [256, 128]
//! dropout = 0.1          # default 0
//!
//! [model.head]           # optional
//! tower = [64]           # hidden widths between the shared part and the output; default []
//! ```
//!
//! Per architecture: `hps` and `mtan` take no key; `mmoe` takes `experts`;
//! `dselect-k` takes `experts`, `k`, `gamma` (default 1) and `entropy`
//! (default 0); `cgc` takes `shared_experts` and `task_experts`; `ple` takes
//! those and `layers`; `cross-stitch` takes `self_weight` (default 0.9); `ltb`
//! takes `blocks`, `search_epochs`, `temperature` (default 5) and
//! `final_temperature` (default 0.1).

use serde::{Deserialize, Serialize};

use super::{BranchSettings, DSelectSettings};
use crate::error::{CoreError, Result};
use crate::nn::Activation;

/// Which multi-task architecture to build, with its sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ArchConfig {
    /// Hard parameter sharing (Caruana, 1997): one shared encoder, one head per task.
    Hps {
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// Multi-gate mixture of experts (Ma et al., 2018).
    Mmoe {
        /// Number of shared experts (at least 1).
        experts: usize,
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// DSelect-k (Hazimeh et al., 2021): MMoE whose gates are differentiable
    /// top-`k` selectors built on a smooth-step function.
    DselectK {
        /// Number of shared experts (at least 2).
        experts: usize,
        /// Number of single-expert selectors per task: a trained gate mixes
        /// at most `k` experts (1 to `experts`).
        k: usize,
        /// Width of the smooth-step's cubic region (default 1, as in the
        /// reference implementation).
        #[serde(default = "default_gamma")]
        gamma: f32,
        /// Weight of the entropy penalty on the selectors, added to each
        /// task's training loss (default 0: off, as in the reference
        /// implementation).
        #[serde(default)]
        entropy: f32,
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// Customised gate control (Tang et al., 2020): shared and task-specific
    /// experts, one gate per task.
    Cgc {
        /// Number of shared experts (at least 1).
        shared_experts: usize,
        /// Number of experts per task (0 reduces CGC to MMoE).
        task_experts: usize,
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// Progressive layered extraction (Tang et al., 2020): `layers` stacked CGC
    /// extraction layers, with a shared gate between them.
    Ple {
        /// Number of extraction layers (at least 1; 1 is CGC).
        layers: usize,
        /// Number of shared experts per layer (at least 1).
        shared_experts: usize,
        /// Number of experts per task and layer.
        task_experts: usize,
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// Cross-stitch networks (Misra et al., 2016): one column per task, mixed
    /// after every stage by learnable `T × T` units.
    CrossStitch {
        /// Initial weight of a column on itself, in `(0, 1]`; the rest,
        /// `1 − self_weight`, is spread evenly over the other columns
        /// (default 0.9, the paper's initialisation).
        #[serde(default = "default_self_weight")]
        self_weight: f32,
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// A multi-task attention network in the style of Liu, Johns & Davison
    /// (2019): a shared trunk and a task-specific attention mask after every
    /// stage.
    Mtan {
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
    /// Learning to Branch (Guo et al., 2020): a tree of blocks, one encoder
    /// stage each, whose branching is learned with Gumbel-softmax and then
    /// fixed.
    Ltb {
        /// Blocks in every layer but the last, one count per encoder stage
        /// but the last (the last layer has one block per task).
        blocks: Vec<usize>,
        /// Epochs during which the branching is learned; the tree is fixed
        /// when epoch `search_epochs` (from 0) begins (at least 1).
        search_epochs: u64,
        /// Gumbel-softmax temperature at the first epoch (default 5).
        #[serde(default = "default_temperature")]
        temperature: f32,
        /// Temperature reached at epoch `search_epochs`, annealed
        /// geometrically (default 0.1).
        #[serde(default = "default_final_temperature")]
        final_temperature: f32,
        /// The task heads.
        #[serde(default)]
        head: HeadConfig,
    },
}

fn default_gamma() -> f32 {
    1.0
}

fn default_temperature() -> f32 {
    5.0
}

fn default_final_temperature() -> f32 {
    0.1
}

fn default_self_weight() -> f32 {
    0.9
}

impl ArchConfig {
    /// Every architecture's name as written in configurations.
    pub const NAMES: &'static [&'static str] = &[
        "hps",
        "mmoe",
        "dselect-k",
        "cgc",
        "ple",
        "cross-stitch",
        "mtan",
        "ltb",
    ];

    /// The architecture's name as written in configurations (one of
    /// [`ArchConfig::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            ArchConfig::Hps { .. } => "hps",
            ArchConfig::Mmoe { .. } => "mmoe",
            ArchConfig::DselectK { .. } => "dselect-k",
            ArchConfig::Cgc { .. } => "cgc",
            ArchConfig::Ple { .. } => "ple",
            ArchConfig::CrossStitch { .. } => "cross-stitch",
            ArchConfig::Mtan { .. } => "mtan",
            ArchConfig::Ltb { .. } => "ltb",
        }
    }

    /// The head configuration.
    pub fn head(&self) -> &HeadConfig {
        match self {
            ArchConfig::Hps { head }
            | ArchConfig::Mmoe { head, .. }
            | ArchConfig::DselectK { head, .. }
            | ArchConfig::Cgc { head, .. }
            | ArchConfig::Ple { head, .. }
            | ArchConfig::CrossStitch { head, .. }
            | ArchConfig::Mtan { head }
            | ArchConfig::Ltb { head, .. } => head,
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        let at_least_one = |what: &str, n: usize| {
            if n == 0 {
                Err(CoreError::InvalidArgument {
                    what: format!("{} {what}", self.name()),
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        match *self {
            ArchConfig::Hps { .. } | ArchConfig::Mtan { .. } => {}
            ArchConfig::Mmoe { experts, .. } => at_least_one("experts", experts)?,
            ArchConfig::DselectK {
                experts,
                k,
                gamma,
                entropy,
                ..
            } => DSelectSettings { k, gamma, entropy }.validate(experts)?,
            ArchConfig::Ltb {
                ref blocks,
                search_epochs,
                temperature,
                final_temperature,
                ..
            } => BranchSettings {
                blocks: blocks.clone(),
                temperature,
                final_temperature,
                search_epochs,
            }
            .validate()?,
            ArchConfig::Cgc { shared_experts, .. } => {
                at_least_one("shared_experts", shared_experts)?
            }
            ArchConfig::Ple {
                layers,
                shared_experts,
                ..
            } => {
                at_least_one("layers", layers)?;
                at_least_one("shared_experts", shared_experts)?;
            }
            ArchConfig::CrossStitch { self_weight, .. } => {
                if !(self_weight > 0.0 && self_weight <= 1.0) {
                    return Err(CoreError::InvalidArgument {
                        what: "cross-stitch self_weight".into(),
                        reason: format!("{self_weight} is not in (0, 1]"),
                    });
                }
            }
        }
        self.head().validate()
    }
}

/// The network each expert, column or shared trunk is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EncoderConfig {
    /// Dense layers of widths `hidden`, each followed by the activation (and
    /// optional layer normalisation before it and dropout after it). Inputs of
    /// any shape are flattened per example.
    Mlp {
        /// Output widths of the layers, first to last (at least one).
        hidden: Vec<usize>,
        /// Dropout probability after each activation (default 0).
        #[serde(default)]
        dropout: f32,
        /// The non-linearity (default `relu`).
        #[serde(default)]
        activation: Activation,
        /// Layer normalisation before each activation (default false).
        #[serde(default)]
        layer_norm: bool,
    },
    /// A LeNet-like convolutional net (LeCun et al., 1998) as used for
    /// MultiMNIST by Sener & Koltun (2018): `conv(k) → max-pool 2 → act`,
    /// twice, then a dense layer of width `fc` and the activation. Needs
    /// per-example inputs `[channels, height, width]`.
    Lenet {
        /// Channels of the first convolution (default 10).
        #[serde(default = "default_conv1")]
        conv1: usize,
        /// Channels of the second convolution (default 20).
        #[serde(default = "default_conv2")]
        conv2: usize,
        /// Square kernel size of both convolutions (default 5).
        #[serde(default = "default_kernel")]
        kernel: usize,
        /// Width of the dense layer, the encoder's output (default 50).
        #[serde(default = "default_fc")]
        fc: usize,
        /// Dropout probability after the dense layer's activation (default 0).
        #[serde(default)]
        dropout: f32,
        /// The non-linearity (default `relu`).
        #[serde(default)]
        activation: Activation,
    },
}

fn default_conv1() -> usize {
    10
}
fn default_conv2() -> usize {
    20
}
fn default_kernel() -> usize {
    5
}
fn default_fc() -> usize {
    50
}

impl EncoderConfig {
    /// The encoder's name as written in configurations (`mlp`, `lenet`).
    pub fn name(&self) -> &'static str {
        match self {
            EncoderConfig::Mlp { .. } => "mlp",
            EncoderConfig::Lenet { .. } => "lenet",
        }
    }

    /// Checks the sizes and the dropout probability.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(CoreError::InvalidArgument {
                what: format!("{} encoder {what}", self.name()),
                reason,
            })
        };
        let dropout = match self {
            EncoderConfig::Mlp {
                hidden, dropout, ..
            } => {
                if hidden.is_empty() || hidden.contains(&0) {
                    return bad("hidden", format!("{hidden:?}: need positive widths"));
                }
                *dropout
            }
            EncoderConfig::Lenet {
                conv1,
                conv2,
                kernel,
                fc,
                dropout,
                ..
            } => {
                if [*conv1, *conv2, *kernel, *fc].contains(&0) {
                    return bad(
                        "sizes",
                        "conv1, conv2, kernel and fc must be positive".into(),
                    );
                }
                *dropout
            }
        };
        if !(0.0..1.0).contains(&dropout) {
            return bad("dropout", format!("{dropout} is not in [0, 1)"));
        }
        Ok(())
    }
}

/// The head on top of each task's input: an optional tower of hidden layers,
/// then the output layer that [`TaskKind`](crate::TaskKind) fixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Hidden widths of the tower (default none: the head is one linear layer).
    #[serde(default)]
    pub tower: Vec<usize>,
    /// The non-linearity after each tower layer (default `relu`).
    #[serde(default)]
    pub activation: Activation,
    /// Embedding size of clustering heads (default: the number of clusters).
    #[serde(default)]
    pub embedding: Option<usize>,
    /// Degrees of freedom α of the Student-t kernel of clustering heads
    /// (default 1, as in Xie et al., 2016).
    #[serde(default = "default_alpha")]
    pub alpha: f32,
}

fn default_alpha() -> f32 {
    1.0
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            tower: Vec::new(),
            activation: Activation::Relu,
            embedding: None,
            alpha: default_alpha(),
        }
    }
}

impl HeadConfig {
    /// Checks the widths and α.
    pub fn validate(&self) -> Result<()> {
        if self.tower.contains(&0) || self.embedding == Some(0) {
            return Err(CoreError::InvalidArgument {
                what: "head widths".into(),
                reason: format!(
                    "tower {:?} and embedding {:?} must be positive",
                    self.tower, self.embedding
                ),
            });
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(CoreError::InvalidArgument {
                what: "head alpha".into(),
                reason: format!("{} must be positive and finite", self.alpha),
            });
        }
        Ok(())
    }
}

/// The whole `[model]` table: the architecture's keys at the top level, the
/// encoder in `[model.encoder]` and the heads in `[model.head]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The architecture (and, inside it, the heads).
    #[serde(flatten)]
    pub arch: ArchConfig,
    /// The encoder of the trunk, of each expert or of each column.
    pub encoder: EncoderConfig,
}

impl ModelConfig {
    /// Checks the architecture, the heads and the encoder.
    pub fn validate(&self) -> Result<()> {
        self.arch.validate()?;
        self.encoder.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_table_reads_from_toml_and_refuses_unknown_keys() {
        let text = r#"
            arch = "ple"
            layers = 2
            shared_experts = 2
            task_experts = 1

            [encoder]
            name = "mlp"
            hidden = [32, 16]
            dropout = 0.1

            [head]
            tower = [8]
        "#;
        let config: ModelConfig = toml::from_str(text).unwrap();
        assert_eq!(
            config.arch,
            ArchConfig::Ple {
                layers: 2,
                shared_experts: 2,
                task_experts: 1,
                head: HeadConfig {
                    tower: vec![8],
                    ..HeadConfig::default()
                }
            }
        );
        assert_eq!(
            config.encoder,
            EncoderConfig::Mlp {
                hidden: vec![32, 16],
                dropout: 0.1,
                activation: Activation::Relu,
                layer_norm: false
            }
        );
        config.validate().unwrap();

        let typo = "arch = \"mmoe\"\nexpert = 4\n[encoder]\nname = \"mlp\"\nhidden = [4]\n";
        assert!(toml::from_str::<ModelConfig>(typo).is_err());
        let encoder_typo = "arch = \"hps\"\n[encoder]\nname = \"lenet\"\nconv3 = 4\n";
        assert!(toml::from_str::<ModelConfig>(encoder_typo).is_err());

        let lenet: ModelConfig =
            toml::from_str("arch = \"cross-stitch\"\n[encoder]\nname = \"lenet\"\n").unwrap();
        assert_eq!(
            lenet.arch,
            ArchConfig::CrossStitch {
                self_weight: 0.9,
                head: HeadConfig::default()
            }
        );
        assert!(matches!(
            lenet.encoder,
            EncoderConfig::Lenet {
                conv1: 10,
                conv2: 20,
                kernel: 5,
                fc: 50,
                ..
            }
        ));
    }

    #[test]
    fn dselect_k_and_ltb_read_with_their_defaults() {
        let dselect: ModelConfig = toml::from_str(
            "arch = \"dselect-k\"\nexperts = 8\nk = 2\n[encoder]\nname = \"mlp\"\nhidden = [4]\n",
        )
        .unwrap();
        assert_eq!(
            dselect.arch,
            ArchConfig::DselectK {
                experts: 8,
                k: 2,
                gamma: 1.0,
                entropy: 0.0,
                head: HeadConfig::default()
            }
        );
        let ltb: ModelConfig = toml::from_str(
            "arch = \"ltb\"\nblocks = [1, 3]\nsearch_epochs = 10\n\
             [encoder]\nname = \"mlp\"\nhidden = [8, 8, 4]\n",
        )
        .unwrap();
        assert_eq!(
            ltb.arch,
            ArchConfig::Ltb {
                blocks: vec![1, 3],
                search_epochs: 10,
                temperature: 5.0,
                final_temperature: 0.1,
                head: HeadConfig::default()
            }
        );
        ltb.validate().unwrap();
        assert_eq!(ltb.arch.name(), "ltb");
        assert!(ArchConfig::NAMES.contains(&dselect.arch.name()));
        let too_many = ArchConfig::DselectK {
            experts: 4,
            k: 5,
            gamma: 1.0,
            entropy: 0.0,
            head: HeadConfig::default(),
        };
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn validation_names_the_bad_size() {
        let mmoe = ArchConfig::Mmoe {
            experts: 0,
            head: HeadConfig::default(),
        };
        let err = mmoe.validate().unwrap_err().to_string();
        assert!(err.contains("mmoe experts"), "{err}");
        let stitch = ArchConfig::CrossStitch {
            self_weight: 1.5,
            head: HeadConfig::default(),
        };
        assert!(stitch.validate().is_err());
        let mlp = EncoderConfig::Mlp {
            hidden: vec![],
            dropout: 0.0,
            activation: Activation::Relu,
            layer_norm: false,
        };
        assert!(mlp.validate().is_err());
        let head = HeadConfig {
            alpha: 0.0,
            ..HeadConfig::default()
        };
        assert!(head.validate().is_err());
    }
}
