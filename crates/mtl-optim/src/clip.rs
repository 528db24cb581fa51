//! Gradient clipping by global norm and by value.

use serde::{Deserialize, Serialize};

use crate::config::check_positive;
use crate::elementwise::{first_non_finite, map_in_place, sum_of_squares};
use crate::error::{OptimError, Result};

/// Added to the norm before dividing, as in PyTorch's `clip_grad_norm_`.
const NORM_EPS: f64 = 1e-6;

/// The Euclidean norm `‖g‖₂` of all gradients, accumulated in f64.
///
/// # Errors
/// [`NonFiniteGradient`](OptimError::NonFiniteGradient) naming the first bad
/// index.
pub fn global_norm(grads: &[f32]) -> Result<f32> {
    if let Some((index, value)) = first_non_finite(grads) {
        return Err(OptimError::NonFiniteGradient { index, value });
    }
    Ok(sum_of_squares(grads).sqrt() as f32)
}

/// Scales all gradients by `max_norm / (‖g‖₂ + 1e-6)` when that is below 1,
/// as PyTorch's `torch.nn.utils.clip_grad_norm_` (Pascanu et al., 2013), and
/// returns the norm before clipping.
///
/// ```
/// let mut g = [3.0f32, 4.0];
/// let norm = mtl_optim::clip_grad_norm(&mut g, 1.0)?;
/// assert_eq!(norm, 5.0);
/// // scale = 1 / (5 + 1e-6)
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// # Ok::<(), mtl_optim::OptimError>(())
/// ```
///
/// # Errors
/// [`InvalidConfig`](OptimError::InvalidConfig) for `max_norm <= 0`;
/// [`NonFiniteGradient`](OptimError::NonFiniteGradient) naming the first bad
/// index (the gradients are then unchanged).
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> Result<f32> {
    check_positive("max_norm", f64::from(max_norm))?;
    let norm = global_norm(grads)?;
    let scale = f64::from(max_norm) / (f64::from(norm) + NORM_EPS);
    if scale < 1.0 {
        let scale = scale as f32;
        map_in_place(grads, &|g| g.iter_mut().for_each(|g| *g *= scale));
    }
    Ok(norm)
}

/// Clamps every gradient to `[−clip_value, clip_value]`, as PyTorch's
/// `torch.nn.utils.clip_grad_value_`, and returns the norm before clipping.
///
/// # Errors
/// [`InvalidConfig`](OptimError::InvalidConfig) for `clip_value <= 0`;
/// [`NonFiniteGradient`](OptimError::NonFiniteGradient) naming the first bad
/// index (the gradients are then unchanged).
pub fn clip_grad_value(grads: &mut [f32], clip_value: f32) -> Result<f32> {
    check_positive("clip_value", f64::from(clip_value))?;
    let norm = global_norm(grads)?;
    map_in_place(grads, &|g| {
        g.iter_mut()
            .for_each(|g| *g = g.clamp(-clip_value, clip_value))
    });
    Ok(norm)
}

/// Gradient clipping as configured for a run, tagged by `name`:
/// `clip = { name = "norm", max_norm = 1.0 }` or
/// `clip = { name = "value", clip_value = 0.5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClipConfig {
    /// [`clip_grad_norm`].
    Norm {
        /// Largest allowed global norm.
        max_norm: f32,
    },
    /// [`clip_grad_value`].
    Value {
        /// Largest allowed absolute value.
        clip_value: f32,
    },
}

impl ClipConfig {
    /// Checks that the limit is finite and positive, naming the key.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Norm { max_norm } => check_positive("max_norm", f64::from(max_norm)),
            Self::Value { clip_value } => check_positive("clip_value", f64::from(clip_value)),
        }
    }

    /// Clips `grads` in place and returns the norm before clipping.
    pub fn apply(&self, grads: &mut [f32]) -> Result<f32> {
        match *self {
            Self::Norm { max_norm } => clip_grad_norm(grads, max_norm),
            Self::Value { clip_value } => clip_grad_value(grads, clip_value),
        }
    }
}
