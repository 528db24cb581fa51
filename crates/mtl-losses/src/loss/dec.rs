//! DEC's clustering loss: the KL divergence of a soft assignment to its
//! sharpened target distribution (Xie, Girshick & Farhadi, 2016, "Unsupervised
//! deep embedding for clustering analysis").

use mtl_core::{Graph, Tensor, Var};

use crate::error::{Error, Result};

/// How far a row of a soft assignment may sum from 1. The Student-t head
/// normalises each row in `f32`, which leaves an error of a few ulps per term;
/// `1e-3` is far above that and far below any row that is not a distribution.
pub const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// DEC's loss for a clustering head.
///
/// The head gives the Student-t soft assignment of embeddings `z_i` to learnable
/// centroids `μ_j` ([`Graph::student_t`]),
///
/// `q_ij = (1 + ‖z_i − μ_j‖²/α)^(−(α+1)/2) / Σ_k (1 + ‖z_i − μ_k‖²/α)^(−(α+1)/2)`,
///
/// and the loss is the KL divergence to the target distribution `P`
/// ([`target_distribution`]), averaged over the batch:
///
/// `L = (1/B) Σ_i Σ_j p_ij · log(p_ij / q_ij)`.
///
/// Choices, and how they differ from the paper:
///
/// * `P` is a constant: it is computed from the values of `q` and detached, so
///   the gradient is `∂L/∂q_ij = −p_ij / (B·q_ij)`, as in DEC, where `P` is a
///   fixed target between its updates.
/// * `P` is computed per batch, from the batch's own `q`. DEC recomputes it
///   over the whole data set every `T` iterations; per batch keeps the loss a
///   function of the batch alone (no extra pass over the data, nothing cached
///   between steps), at the price of frequencies `f_j` estimated on `B`
///   examples, so batches should be large next to the number of clusters. A
///   trainer that wants DEC's schedule computes `P` over the data with
///   [`target_distribution`] and calls [`kl_to_target`] with the batch's rows.
/// * The mean over the batch (PyTorch's `kl_div(..., reduction="batchmean")`)
///   replaces the paper's sum, so the loss does not grow with the batch size.
///
/// Hyperparameters: the loss has none of its own. The degrees of freedom `α`
/// of the Student-t kernel belong to the head that computes `q`
/// ([`HeadConfig::alpha`](mtl_core::arch::HeadConfig::alpha)); DEC fixes `α = 1` (a Cauchy kernel)
/// for every data set, since it cannot be cross-validated without labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dec;

impl Dec {
    /// The loss of the soft assignment `q` `[B, K]`: KL(P‖Q) with `P` computed
    /// from this batch's `q` and held constant.
    pub fn apply(&self, g: &mut Graph, q: Var) -> Result<Var> {
        let p = target_distribution(g.value(q)?)?;
        kl_to_target(g, q, &p)
    }
}

/// Checks that `q` is a `[B, K]` soft assignment with `B, K ≥ 1`: entries in
/// `(0, 1]` and rows summing to 1 within [`ROW_SUM_TOLERANCE`].
fn check_assignment(q: &Tensor) -> Result<(usize, usize)> {
    let (b, k) = match q.shape() {
        [b, k] if *b > 0 && *k > 0 => (*b, *k),
        s => {
            return Err(Error::Shape {
                what: "soft assignment",
                expected: vec![1, 1],
                got: s.to_vec(),
            })
        }
    };
    if let Some(i) = q.data().iter().position(|v| !(*v > 0.0 && *v <= 1.0)) {
        return Err(Error::BadValue {
            what: "soft assignment",
            index: i,
            value: q.data()[i] as f64,
            expected: "a probability in (0, 1]",
        });
    }
    for (i, row) in q.data().chunks(k).enumerate() {
        let s: f64 = row.iter().map(|&v| v as f64).sum();
        if (s - 1.0).abs() > ROW_SUM_TOLERANCE {
            return Err(Error::BadValue {
                what: "soft assignment row sum",
                index: i,
                value: s,
                expected: "rows that sum to 1",
            });
        }
    }
    Ok((b, k))
}

/// DEC's target distribution: the soft assignment squared and normalised by
/// the cluster frequencies (Xie, Girshick & Farhadi, 2016, eq. 3),
///
/// `p_ij = (q_ij² / f_j) / Σ_k (q_ik² / f_k)`, with `f_j = Σ_i q_ij`.
///
/// Squaring sharpens each row towards its most confident cluster; dividing by
/// `f_j` keeps large clusters from absorbing the others. Computed in `f64`.
pub fn target_distribution(q: &Tensor) -> Result<Tensor> {
    let (b, k) = check_assignment(q)?;
    let mut freq = vec![0.0f64; k];
    for row in q.data().chunks(k) {
        for (f, &v) in freq.iter_mut().zip(row) {
            *f += v as f64;
        }
    }
    let mut p = Vec::with_capacity(b * k);
    let mut sharpened = vec![0.0f64; k];
    for row in q.data().chunks(k) {
        for ((s, &v), f) in sharpened.iter_mut().zip(row).zip(&freq) {
            *s = (v as f64).powi(2) / f;
        }
        let total: f64 = sharpened.iter().sum();
        p.extend(sharpened.iter().map(|s| (s / total) as f32));
    }
    Ok(Tensor::from_vec(p, &[b, k])?)
}

/// `KL(P‖Q) = (1/B) Σ_i Σ_j p_ij · log(p_ij / q_ij)` of a soft assignment `q`
/// `[B, K]` on the graph to a constant target `p` of the same shape (rows of
/// non-negative entries; `0 · log 0 = 0`). Only `q` receives a gradient,
/// `−p_ij / (B·q_ij)`.
pub fn kl_to_target(g: &mut Graph, q: Var, p: &Tensor) -> Result<Var> {
    let (b, _) = check_assignment(g.value(q)?)?;
    if p.shape() != g.value(q)?.shape() {
        return Err(Error::Shape {
            what: "target distribution",
            expected: g.value(q)?.shape().to_vec(),
            got: p.shape().to_vec(),
        });
    }
    if let Some(i) = p.data().iter().position(|v| !(*v >= 0.0 && *v <= 1.0)) {
        return Err(Error::BadValue {
            what: "target distribution",
            index: i,
            value: p.data()[i] as f64,
            expected: "a probability in [0, 1]",
        });
    }
    // Σ p log p is a constant: added as a number, it fixes the loss's value
    // (zero when Q = P) without touching the gradient.
    let neg_entropy: f64 = p
        .data()
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| v as f64 * (v as f64).ln())
        .sum();
    let log_q = g.log(q)?;
    let target = g.input(p.clone());
    let cross = g.mul(target, log_q)?;
    let cross = g.sum(cross)?;
    let scaled = g.mul_scalar(cross, -1.0 / b as f32)?;
    Ok(g.add_scalar(scaled, (neg_entropy / b as f64) as f32)?)
}
