//! [`Op`]: every operation the tape records, one enum variant each.
//!
//! A node stores its op with the indices of its inputs and whatever the
//! backward pass needs that is cheaper to keep than to recompute (an argmax, a
//! dropout mask, normalisation statistics). The backward pass in
//! [`backward`](super::backward) is one `match` over this enum.

use super::Var;
use crate::kernels::{ConvGeometry, PoolGeometry};
use crate::Tensor;

/// An operation recorded on the tape.
#[derive(Clone, Debug)]
pub enum Op {
    /// A constant input (data, targets, or a detached value): no gradient flows.
    Input,
    /// A trainable parameter copied from a [`ParamStore`](crate::ParamStore) at `offset`.
    Param {
        /// Offset of the parameter in the store's flat buffer.
        offset: usize,
    },
    /// `a + b`, same shapes.
    Add(Var, Var),
    /// `a - b`, same shapes.
    Sub(Var, Var),
    /// `a ⊙ b`, same shapes.
    Mul(Var, Var),
    /// `a / b`, same shapes.
    Div(Var, Var),
    /// `-a`.
    Neg(Var),
    /// `a + s` for a constant `s`.
    AddScalar(Var, f32),
    /// `s · a` for a constant `s`.
    MulScalar(Var, f32),
    /// `a^p` element-wise for a constant `p` (inputs must be positive when `p` is not an integer).
    Powf(Var, f32),
    /// `op(a) · op(b)` of rank-2 tensors, transposing where asked.
    MatMul {
        /// Left operand.
        a: Var,
        /// Right operand.
        b: Var,
        /// Transpose the left operand.
        trans_a: bool,
        /// Transpose the right operand.
        trans_b: bool,
    },
    /// `x + row`, the row vector broadcast over every row (the last axis).
    AddRow(Var, Var),
    /// `x ⊙ row`, the row vector broadcast over every row (the last axis).
    MulRow(Var, Var),
    /// `x ⊙ col`: row `i` of `x` `[B, C]` scaled by `col[i]` (`col` has `B` elements).
    MulCol(Var, Var),
    /// Sum of all elements (a scalar).
    Sum(Var),
    /// Mean of all elements (a scalar).
    Mean(Var),
    /// Sum along an axis, which is removed.
    SumAxis(Var, usize),
    /// Mean along an axis, which is removed.
    MeanAxis(Var, usize),
    /// `max(a, 0)`.
    Relu(Var),
    /// `a` where positive, `slope · a` elsewhere.
    LeakyRelu(Var, f32),
    /// GELU with the tanh approximation (Hendrycks & Gimpel, 2016).
    Gelu(Var),
    /// `tanh(a)`.
    Tanh(Var),
    /// `1 / (1 + e^-a)`.
    Sigmoid(Var),
    /// `e^a`.
    Exp(Var),
    /// `ln a`.
    Log(Var),
    /// Softmax along the last axis.
    Softmax(Var),
    /// Log-softmax along the last axis.
    LogSoftmax(Var),
    /// The same elements with another shape.
    Reshape(Var),
    /// Inputs joined along `axis`.
    Concat {
        /// The joined inputs, in order.
        inputs: Vec<Var>,
        /// The axis they are joined along.
        axis: usize,
    },
    /// `len` entries of `a` along `axis` starting at `start`.
    Narrow {
        /// The input.
        a: Var,
        /// The axis cut.
        axis: usize,
        /// First index kept.
        start: usize,
    },
    /// Rows of the first axis picked by index.
    GatherRows {
        /// The input.
        a: Var,
        /// The rows picked, in order.
        indices: Vec<usize>,
    },
    /// 2-D convolution `[N, C, H, W] * [O, C, kh, kw] (+ bias [O])`.
    Conv2d {
        /// Input images.
        x: Var,
        /// Kernel.
        w: Var,
        /// Optional bias per output channel.
        bias: Option<Var>,
        /// Geometry of one image.
        geometry: ConvGeometry,
    },
    /// 2-D max pooling of `[N, C, H, W]`.
    MaxPool2d {
        /// Input images.
        x: Var,
        /// Geometry of one image.
        geometry: PoolGeometry,
        /// Flat input index of each output's maximum.
        argmax: Vec<u32>,
    },
    /// Inverted dropout: `a ⊙ mask`, mask entries `0` or `1 / (1 - p)`.
    Dropout {
        /// The input.
        a: Var,
        /// The scaled keep mask.
        mask: Vec<f32>,
    },
    /// Layer normalisation over the last axis with affine `gamma`, `beta`.
    LayerNorm {
        /// The input.
        x: Var,
        /// Scale per feature.
        gamma: Var,
        /// Shift per feature.
        beta: Var,
        /// The normalised input `x̂`.
        xhat: Tensor,
        /// `1 / sqrt(var + eps)` per row.
        rstd: Vec<f32>,
    },
    /// Batch normalisation per channel (axis 1) with affine `gamma`, `beta`.
    BatchNorm {
        /// The input `[N, C]` or `[N, C, H, W]`.
        x: Var,
        /// Scale per channel.
        gamma: Var,
        /// Shift per channel.
        beta: Var,
        /// The normalised input `x̂`.
        xhat: Tensor,
        /// `1 / sqrt(var + eps)` per channel.
        rstd: Vec<f32>,
        /// Whether the statistics came from this batch (training) or were constants (evaluation).
        batch_statistics: bool,
    },
    /// Mean cross-entropy of logits `[B, K]` against class indices, computed from a
    /// fused, stable log-softmax; optional label smoothing and class weights.
    CrossEntropy {
        /// Logits.
        logits: Var,
        /// Class index per row.
        targets: Vec<usize>,
        /// Weight per class (PyTorch convention: weighted mean over rows).
        class_weights: Option<Vec<f32>>,
        /// Label smoothing ε in `[0, 1)`.
        smoothing: f32,
        /// Softmax of the logits.
        probs: Tensor,
    },
    /// Mean binary cross-entropy with logits against targets in `[0, 1]`.
    BceWithLogits {
        /// Logits.
        logits: Var,
        /// Targets, same shape as the logits.
        targets: Tensor,
    },
    /// Mean squared error against constant targets.
    Mse {
        /// Predictions.
        pred: Var,
        /// Targets, same shape.
        targets: Tensor,
    },
    /// Mean absolute error against constant targets.
    L1 {
        /// Predictions.
        pred: Var,
        /// Targets, same shape.
        targets: Tensor,
    },
    /// Mean Huber loss against constant targets.
    Huber {
        /// Predictions.
        pred: Var,
        /// Targets, same shape.
        targets: Tensor,
        /// Threshold between the quadratic and the linear part.
        delta: f32,
    },
    /// Student-t soft assignment of embeddings `z [B, D]` to centroids `mu [K, D]`
    /// (Xie, Girshick & Farhadi, 2016): `q_ij ∝ (1 + ‖z_i − μ_j‖² / α)^(−(α+1)/2)`,
    /// rows normalised to sum to one.
    StudentT {
        /// Embeddings.
        z: Var,
        /// Centroids.
        mu: Var,
        /// Degrees of freedom α.
        alpha: f32,
    },
}

impl Op {
    /// The inputs of this op, in order.
    pub fn inputs(&self) -> Vec<Var> {
        use Op::*;
        match self {
            Input | Param { .. } => vec![],
            Add(a, b)
            | Sub(a, b)
            | Mul(a, b)
            | Div(a, b)
            | AddRow(a, b)
            | MulRow(a, b)
            | MulCol(a, b) => {
                vec![*a, *b]
            }
            MatMul { a, b, .. } => vec![*a, *b],
            Neg(a)
            | AddScalar(a, _)
            | MulScalar(a, _)
            | Powf(a, _)
            | Sum(a)
            | Mean(a)
            | SumAxis(a, _)
            | MeanAxis(a, _)
            | Relu(a)
            | LeakyRelu(a, _)
            | Gelu(a)
            | Tanh(a)
            | Sigmoid(a)
            | Exp(a)
            | Log(a)
            | Softmax(a)
            | LogSoftmax(a)
            | Reshape(a) => vec![*a],
            Concat { inputs, .. } => inputs.clone(),
            Narrow { a, .. } | GatherRows { a, .. } | Dropout { a, .. } => vec![*a],
            Conv2d { x, w, bias, .. } => {
                let mut v = vec![*x, *w];
                v.extend(bias);
                v
            }
            MaxPool2d { x, .. } => vec![*x],
            LayerNorm { x, gamma, beta, .. } | BatchNorm { x, gamma, beta, .. } => {
                vec![*x, *gamma, *beta]
            }
            CrossEntropy { logits, .. } | BceWithLogits { logits, .. } => vec![*logits],
            Mse { pred, .. } | L1 { pred, .. } | Huber { pred, .. } => vec![*pred],
            StudentT { z, mu, .. } => vec![*z, *mu],
        }
    }

    /// A short name for error messages and graph dumps.
    pub fn name(&self) -> &'static str {
        use Op::*;
        match self {
            Input => "input",
            Param { .. } => "param",
            Add(..) => "add",
            Sub(..) => "sub",
            Mul(..) => "mul",
            Div(..) => "div",
            Neg(..) => "neg",
            AddScalar(..) => "add_scalar",
            MulScalar(..) => "mul_scalar",
            Powf(..) => "powf",
            MatMul { .. } => "matmul",
            AddRow(..) => "add_row",
            MulRow(..) => "mul_row",
            MulCol(..) => "mul_col",
            Sum(..) => "sum",
            Mean(..) => "mean",
            SumAxis(..) => "sum_axis",
            MeanAxis(..) => "mean_axis",
            Relu(..) => "relu",
            LeakyRelu(..) => "leaky_relu",
            Gelu(..) => "gelu",
            Tanh(..) => "tanh",
            Sigmoid(..) => "sigmoid",
            Exp(..) => "exp",
            Log(..) => "log",
            Softmax(..) => "softmax",
            LogSoftmax(..) => "log_softmax",
            Reshape(..) => "reshape",
            Concat { .. } => "concat",
            Narrow { .. } => "narrow",
            GatherRows { .. } => "gather_rows",
            Conv2d { .. } => "conv2d",
            MaxPool2d { .. } => "max_pool2d",
            Dropout { .. } => "dropout",
            LayerNorm { .. } => "layer_norm",
            BatchNorm { .. } => "batch_norm",
            CrossEntropy { .. } => "cross_entropy",
            BceWithLogits { .. } => "bce_with_logits",
            Mse { .. } => "mse",
            L1 { .. } => "l1",
            Huber { .. } => "huber",
            StudentT { .. } => "student_t",
        }
    }
}
