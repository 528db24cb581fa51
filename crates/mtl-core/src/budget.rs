//! A memory budget checked before a model is built or a step is taken: the
//! bytes that the parameters, their gradients, the optimizer state, one
//! batch's activations and the per-task gradient rows will take, estimated
//! from the configurations alone, against the memory available.
//!
//! Parameter counts are exact and analytic: [`count_params`] follows each
//! architecture's construction (the same stage plan the encoders build), and
//! a test compares it with the [`crate::ParamStore`] of built models. Adding
//! an architecture means adding its arm to [`count_params`] (and its
//! activations to [`activation_floats`]); the compiler points at both.
//!
//! Activations are an estimate: the tape keeps every node's value, and the
//! backward pass one gradient per node, so each stage output counts
//! [`TAPE_COPIES`] times, plus the im2col buffer of each convolution.
//!
//! Every size is computed with checked arithmetic; an overflow is an error
//! naming the key whose value made it overflow.

use std::fmt;

use crate::arch::{ArchConfig, EncoderConfig, HeadConfig, ModelConfig};
use crate::task::{TaskKind, TaskSpec};

/// Tensors of one stage output's size that a training step holds: the
/// linear (or convolution) output, the activation, the dropout or pooling
/// output, and one gradient per node in the backward pass.
pub const TAPE_COPIES: u64 = 6;

/// Bytes of one `f32`.
const F32: u64 = 4;

/// Which per-task gradient rows the balancer keeps each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientRows {
    /// Losses only: no rows.
    None,
    /// Rows at the shared representation: `T × B × d`.
    Representation,
    /// Rows of the shared parameters: `T × P_shared`.
    SharedParams,
}

/// What a run will hold in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetInput<'a> {
    /// The `[model]` configuration.
    pub model: &'a ModelConfig,
    /// One example's feature shape (`[features]` or `[C, H, W]`).
    pub input_shape: &'a [usize],
    /// The tasks.
    pub tasks: &'a [TaskSpec],
    /// Examples per batch (`[loader] batch_size`).
    pub batch_size: usize,
    /// `f32` values the optimizer keeps per parameter (SGD with momentum 1,
    /// Adam 2, plain SGD 0).
    pub optimizer_slots: usize,
    /// The balancer's gradient rows.
    pub gradient_rows: GradientRows,
}

/// Parameters of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCount {
    /// Every trainable value.
    pub total: u64,
    /// Those in the shared group (the columns of the `T × P` rows).
    pub shared: u64,
    /// The largest single contribution and the key that sets it.
    pub largest: (u64, &'static str),
}

/// One line of an estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetPart {
    /// What takes the memory.
    pub what: &'static str,
    /// The configuration key that sets its size.
    pub key: String,
    /// Bytes.
    pub bytes: u64,
}

/// An estimate of a run's memory, by part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The parts, in a fixed order.
    pub parts: Vec<BudgetPart>,
    /// Their sum.
    pub total: u64,
}

/// Why a budget refused a run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// A size overflows 64 bits: the key's value is absurd.
    #[error("{key}: the sizes it implies overflow 64 bits")]
    Overflow {
        /// The key responsible.
        key: String,
    },
    /// LeNet needs a per-example shape `[C, H, W]`.
    #[error("model.encoder: LeNet needs examples of shape [C, H, W], got {shape:?}")]
    Shape {
        /// The shape given.
        shape: Vec<usize>,
    },
    /// The estimate exceeds the limit.
    #[error(
        "{key}: the run needs about {} but {} is available ({})",
        human(*estimate),
        human(*limit),
        breakdown
    )]
    TooLarge {
        /// The key responsible: the one that sets the largest part.
        key: String,
        /// Estimated bytes.
        estimate: u64,
        /// The limit in bytes.
        limit: u64,
        /// Every part, for the message.
        breakdown: String,
    },
}

/// Bytes in binary units (`1.5 GiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| format!("{} {} ({})", p.what, human(p.bytes), p.key))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Checked arithmetic that names the key responsible on overflow.
fn mul(a: u64, b: u64, key: &str) -> Result<u64, BudgetError> {
    a.checked_mul(b)
        .ok_or_else(|| BudgetError::Overflow { key: key.into() })
}

fn add(a: u64, b: u64, key: &str) -> Result<u64, BudgetError> {
    a.checked_add(b)
        .ok_or_else(|| BudgetError::Overflow { key: key.into() })
}

fn sz(v: usize) -> u64 {
    // usize is at most 64 bits on every supported target.
    v as u64
}

/// One stage of an encoder, as its construction plans it.
#[derive(Clone, Copy, Debug)]
struct Stage {
    /// Parameters of the stage.
    params: u64,
    /// Floats of its output per example.
    output: u64,
    /// Floats of its im2col buffer per example (convolutions).
    workspace: u64,
    /// Channels (conv) or features (dense) of its output.
    channels: u64,
}

/// The stages of `encoder` on inputs of `input_shape`, with the key that
/// sets each stage's size.
fn stages(encoder: &EncoderConfig, input_shape: &[usize]) -> Result<Vec<Stage>, BudgetError> {
    match encoder {
        EncoderConfig::Mlp {
            hidden, layer_norm, ..
        } => {
            let key = "model.encoder.hidden";
            let mut inputs = input_shape
                .iter()
                .try_fold(1u64, |acc, &d| mul(acc, sz(d), "input shape"))?;
            hidden
                .iter()
                .map(|&out| {
                    let out = sz(out);
                    let mut params = mul(add(inputs, 1, key)?, out, key)?;
                    if *layer_norm {
                        params = add(params, mul(2, out, key)?, key)?;
                    }
                    inputs = out;
                    Ok(Stage {
                        params,
                        output: out,
                        workspace: 0,
                        channels: out,
                    })
                })
                .collect()
        }
        EncoderConfig::Lenet {
            conv1,
            conv2,
            kernel,
            fc,
            ..
        } => {
            let &[channels, height, width] = input_shape else {
                return Err(BudgetError::Shape {
                    shape: input_shape.to_vec(),
                });
            };
            let key = "model.encoder";
            let k2 = mul(sz(*kernel), sz(*kernel), "model.encoder.kernel")?;
            // As the encoder plans it: a valid convolution, then 2x2 pooling.
            let conv_out = |s: usize| s.saturating_add(1).saturating_sub(*kernel);
            let side = |s: usize| conv_out(s) / 2;
            let (h1, w1) = (side(height), side(width));
            let (h2, w2) = (side(h1), side(w1));
            let conv = |c_in: u64, c_out: u64, h: usize, w: usize, key: &'static str| {
                let per_filter = mul(c_in, k2, key)?;
                let params = mul(add(per_filter, 1, key)?, c_out, key)?;
                let positions = mul(sz(conv_out(h)), sz(conv_out(w)), key)?;
                Ok::<_, BudgetError>(Stage {
                    params,
                    output: mul(positions, c_out, key)?,
                    workspace: mul(positions, per_filter, key)?,
                    channels: c_out,
                })
            };
            let s1 = conv(
                sz(channels),
                sz(*conv1),
                height,
                width,
                "model.encoder.conv1",
            )?;
            let s2 = conv(sz(*conv1), sz(*conv2), h1, w1, "model.encoder.conv2")?;
            let flat = mul(mul(sz(*conv2), sz(h2), key)?, sz(w2), key)?;
            let fc_params = mul(
                add(flat, 1, "model.encoder.fc")?,
                sz(*fc),
                "model.encoder.fc",
            )?;
            Ok(vec![
                s1,
                s2,
                Stage {
                    params: fc_params,
                    output: sz(*fc),
                    workspace: 0,
                    channels: sz(*fc),
                },
            ])
        }
    }
}

fn encoder_params(stages: &[Stage]) -> Result<u64, BudgetError> {
    stages
        .iter()
        .try_fold(0u64, |acc, s| add(acc, s.params, "model.encoder"))
}

/// Parameters of one task's head on inputs of width `width`, and the key
/// that sets them.
fn head_params(
    head: &HeadConfig,
    task: &TaskSpec,
    width: u64,
) -> Result<(u64, &'static str), BudgetError> {
    let key = match task.kind {
        TaskKind::Classification { .. } => "tasks.classes",
        TaskKind::Multilabel { .. } => "tasks.labels",
        TaskKind::Regression { .. } => "tasks.outputs",
        TaskKind::Clustering { .. } => "tasks.clusters",
        TaskKind::Binary => "model.head.tower",
    };
    let out = sz(match task.kind {
        TaskKind::Clustering { clusters } => head.embedding.unwrap_or(clusters),
        ref kind => kind.output_width(),
    });
    let mut widths = vec![width];
    widths.extend(head.tower.iter().map(|&w| sz(w)));
    widths.push(out);
    let mut params = 0u64;
    for pair in widths.windows(2) {
        params = add(params, mul(add(pair[0], 1, key)?, pair[1], key)?, key)?;
    }
    if let TaskKind::Clustering { clusters } = task.kind {
        params = add(params, mul(sz(clusters), out, key)?, key)?;
    }
    Ok((params, key))
}

/// Parameters of a gate choosing among `experts` from `inputs` features.
fn gate_params(inputs: u64, experts: u64, key: &str) -> Result<u64, BudgetError> {
    mul(add(inputs, 1, key)?, experts, key)
}

/// The exact number of trainable parameters of `model` on inputs of
/// `input_shape` for `tasks`, without building it.
pub fn count_params(
    model: &ModelConfig,
    input_shape: &[usize],
    tasks: &[TaskSpec],
) -> Result<ParamCount, BudgetError> {
    let plan = stages(&model.encoder, input_shape)?;
    let enc = encoder_params(&plan)?;
    let width = plan.last().map_or(0, |s| s.channels);
    let t = sz(tasks.len());
    let inputs = input_shape
        .iter()
        .try_fold(1u64, |acc, &d| mul(acc, sz(d), "input shape"))?;
    let head = model.arch.head();
    let mut largest = (enc, "model.encoder.hidden");
    let mut note = |bytes: u64, key: &'static str| {
        if bytes > largest.0 {
            largest = (bytes, key);
        }
    };
    // (shared, task-specific) parameters of the trunk.
    let (shared, specific) = match model.arch {
        ArchConfig::Hps { .. } => (enc, 0),
        ArchConfig::Mmoe { experts, .. } => {
            let key = "model.experts";
            let shared = mul(enc, sz(experts), key)?;
            note(shared, key);
            (shared, mul(gate_params(inputs, sz(experts), key)?, t, key)?)
        }
        ArchConfig::Cgc {
            shared_experts,
            task_experts,
            ..
        } => {
            let shared = mul(enc, sz(shared_experts), "model.shared_experts")?;
            note(shared, "model.shared_experts");
            let per_task = mul(enc, sz(task_experts), "model.task_experts")?;
            let experts = add(sz(shared_experts), sz(task_experts), "model.task_experts")?;
            let gate = gate_params(inputs, experts, "model.task_experts")?;
            let specific = mul(
                add(per_task, gate, "model.task_experts")?,
                t,
                "model.task_experts",
            )?;
            note(specific, "model.task_experts");
            (shared, specific)
        }
        ArchConfig::Ple {
            layers,
            shared_experts,
            task_experts,
            ..
        } => {
            let (mut shared, mut specific) = (0u64, 0u64);
            let mut layer_inputs = inputs;
            let mut layer_enc = enc;
            for l in 0..layers {
                if l > 0 {
                    // Deeper experts are one dense layer of the width.
                    layer_enc = mul(add(width, 1, "model.layers")?, width, "model.layers")?;
                    if matches!(
                        model.encoder,
                        EncoderConfig::Mlp {
                            layer_norm: true,
                            ..
                        }
                    ) {
                        layer_enc = add(layer_enc, mul(2, width, "model.layers")?, "model.layers")?;
                    }
                    layer_inputs = width;
                }
                let s = mul(layer_enc, sz(shared_experts), "model.shared_experts")?;
                shared = add(shared, s, "model.layers")?;
                if l + 1 < layers {
                    let n = add(
                        mul(t, sz(task_experts), "model.task_experts")?,
                        sz(shared_experts),
                        "model.shared_experts",
                    )?;
                    shared = add(
                        shared,
                        gate_params(layer_inputs, n, "model.layers")?,
                        "model.layers",
                    )?;
                }
                let per_task = mul(layer_enc, sz(task_experts), "model.task_experts")?;
                let n = add(sz(task_experts), sz(shared_experts), "model.task_experts")?;
                let gate = gate_params(layer_inputs, n, "model.task_experts")?;
                specific = add(
                    specific,
                    mul(
                        add(per_task, gate, "model.task_experts")?,
                        t,
                        "model.task_experts",
                    )?,
                    "model.layers",
                )?;
            }
            note(shared, "model.layers");
            (shared, specific)
        }
        ArchConfig::DselectK { experts, k, .. } => {
            let key = "model.experts";
            let shared = mul(enc, sz(experts), key)?;
            note(shared, key);
            // Per task: `k` selectors of ⌈log2 E⌉ code logits and `k`
            // selector weights, each an affine map of the inputs.
            let bits =
                sz(usize::BITS as usize - experts.saturating_sub(1).leading_zeros() as usize);
            let outputs = mul(sz(k), add(bits, 1, key)?, key)?;
            (shared, mul(gate_params(inputs, outputs, key)?, t, key)?)
        }
        ArchConfig::Ltb { ref blocks, .. } => {
            // Stage `l` holds `blocks[l]` copies (one per task in the last
            // stage), and every block below the first learns one logit per
            // block of the layer under it.
            let key = "model.blocks";
            let (mut shared, mut specific) = (0u64, 0u64);
            for (l, stage) in plan.iter().enumerate() {
                let copies = if l + 1 == plan.len() {
                    t
                } else {
                    sz(blocks.get(l).copied().unwrap_or(1))
                };
                let parents = if l == 0 {
                    0
                } else {
                    sz(blocks.get(l - 1).copied().unwrap_or(1))
                };
                let params = mul(add(stage.params, parents, key)?, copies, key)?;
                if l + 1 == plan.len() {
                    specific = add(specific, params, key)?;
                } else {
                    shared = add(shared, params, key)?;
                }
            }
            note(shared, key);
            (shared, specific)
        }
        ArchConfig::CrossStitch { .. } => {
            let columns = mul(enc, t, "tasks")?;
            let units = mul(mul(t, t, "tasks")?, sz(plan.len()), "tasks")?;
            (units, columns)
        }
        ArchConfig::Mtan { .. } => {
            let mut attention = 0u64;
            for (l, s) in plan.iter().enumerate() {
                let inputs = if l == 0 {
                    s.channels
                } else {
                    mul(2, s.channels, "model.encoder")?
                };
                let layer = mul(
                    add(inputs, 1, "model.encoder")?,
                    s.channels,
                    "model.encoder",
                )?;
                attention = add(attention, layer, "model.encoder")?;
            }
            (enc, mul(attention, t, "tasks")?)
        }
    };
    let mut heads = 0u64;
    for task in tasks {
        let (p, key) = head_params(head, task, width)?;
        note(p, key);
        heads = add(heads, p, key)?;
    }
    let total = add(add(shared, specific, "model")?, heads, "tasks")?;
    Ok(ParamCount {
        total,
        shared,
        largest,
    })
}

/// Floats of one example's activations kept by a training step (before
/// [`TAPE_COPIES`]): every stage output of every encoder copy, plus the
/// convolutions' im2col buffers, plus the heads' outputs.
pub fn activation_floats(
    model: &ModelConfig,
    input_shape: &[usize],
    tasks: &[TaskSpec],
) -> Result<u64, BudgetError> {
    let plan = stages(&model.encoder, input_shape)?;
    let key = "model.encoder";
    let per_copy = plan.iter().try_fold(0u64, |acc, s| {
        add(
            acc,
            mul(add(s.output, s.workspace, key)?, TAPE_COPIES, key)?,
            key,
        )
    })?;
    let t = sz(tasks.len());
    let copies = match model.arch {
        ArchConfig::Hps { .. } => 1,
        ArchConfig::Mmoe { experts, .. } | ArchConfig::DselectK { experts, .. } => sz(experts),
        ArchConfig::Ltb { ref blocks, .. } => {
            add(blocks.iter().map(|&b| sz(b)).max().unwrap_or(1), t, key)?
        }
        ArchConfig::Cgc {
            shared_experts,
            task_experts,
            ..
        } => add(
            sz(shared_experts),
            mul(t, sz(task_experts), "model.task_experts")?,
            key,
        )?,
        ArchConfig::Ple {
            layers,
            shared_experts,
            task_experts,
            ..
        } => mul(
            sz(layers),
            add(
                sz(shared_experts),
                mul(t, sz(task_experts), "model.task_experts")?,
                key,
            )?,
            "model.layers",
        )?,
        // One column per task; MTAN's attention doubles the trunk per task.
        ArchConfig::CrossStitch { .. } => t,
        ArchConfig::Mtan { .. } => add(1, mul(2, t, "tasks")?, key)?,
    };
    let heads = tasks.iter().try_fold(0u64, |acc, task| {
        let widths = model.arch.head().tower.iter().map(|&w| sz(w)).sum::<u64>();
        add(
            acc,
            mul(
                add(widths, sz(task.kind.output_width()), "tasks")?,
                TAPE_COPIES,
                "tasks",
            )?,
            "tasks",
        )
    })?;
    add(mul(per_copy, copies, key)?, heads, key)
}

/// Estimates the memory of a training step of `input`.
pub fn estimate(input: &BudgetInput<'_>) -> Result<Budget, BudgetError> {
    let params = count_params(input.model, input.input_shape, input.tasks)?;
    let pkey = params.largest.1.to_string();
    let b = sz(input.batch_size);
    let bkey = "loader.batch_size";
    let features = input
        .input_shape
        .iter()
        .try_fold(1u64, |acc, &d| mul(acc, sz(d), "input shape"))?;
    let acts = activation_floats(input.model, input.input_shape, input.tasks)?;
    let width = stages(&input.model.encoder, input.input_shape)?
        .last()
        .map_or(0, |s| s.channels);
    let t = sz(input.tasks.len());
    let rows = match input.gradient_rows {
        GradientRows::None => 0,
        GradientRows::Representation => mul(mul(mul(t, b, bkey)?, width, bkey)?, F32, bkey)?,
        GradientRows::SharedParams => mul(mul(t, params.shared, "balancer")?, F32, "balancer")?,
    };
    let parts = vec![
        BudgetPart {
            what: "parameters and gradients",
            key: pkey.clone(),
            bytes: mul(params.total, 2 * F32, &pkey)?,
        },
        // The optimizer keeps slots per parameter: the parameters' key sets it.
        BudgetPart {
            what: "optimizer state",
            key: pkey.clone(),
            bytes: mul(
                mul(params.total, sz(input.optimizer_slots), &pkey)?,
                F32,
                &pkey,
            )?,
        },
        BudgetPart {
            what: "activations of one batch",
            key: bkey.into(),
            bytes: mul(mul(add(acts, features, bkey)?, b, bkey)?, F32, bkey)?,
        },
        BudgetPart {
            what: "per-task gradient rows",
            key: "balancer".into(),
            bytes: rows,
        },
    ];
    let total = parts
        .iter()
        .try_fold(0u64, |acc, p| add(acc, p.bytes, &p.key))?;
    Ok(Budget { parts, total })
}

impl Budget {
    /// Refuses a budget over `limit` bytes, naming the key of its largest
    /// part with the estimate and the limit.
    pub fn check(&self, limit: u64) -> Result<(), BudgetError> {
        if self.total <= limit {
            return Ok(());
        }
        let largest = self
            .parts
            .iter()
            .max_by_key(|p| p.bytes)
            .expect("a budget has parts");
        Err(BudgetError::TooLarge {
            key: largest.key.clone(),
            estimate: self.total,
            limit,
            breakdown: self.to_string(),
        })
    }
}

/// The memory this process may still use: `MemAvailable` of
/// `/proc/meminfo`, or less when an address-space limit (`ulimit -v`,
/// `prlimit --as`) leaves less; `None` where neither can be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo.as_deref().and_then(mem_available);
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let headroom = limits
        .as_deref()
        .and_then(address_space_limit)
        .map(|limit| {
            let used = status.as_deref().and_then(vm_size).unwrap_or(0);
            limit.saturating_sub(used)
        });
    match (available, headroom) {
        (Some(a), Some(h)) => Some(a.min(h)),
        (a, h) => a.or(h),
    }
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemAvailable:")
}

fn vm_size(status: &str) -> Option<u64> {
    kib_field(status, "VmSize:")
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The soft address-space limit in bytes from `/proc/self/limits`, if set.
pub fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft = line["Max address space".len()..]
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}
