//! Multi-task losses, metrics and loss balancers for `mtl`.
//!
//! The [`balance`] module is engine-agnostic: a [`Balancer`] takes the task
//! losses as plain `f32`s (and, when it needs them, per-task gradient rows as
//! one row-major slice) and returns task weights or a combined direction. It
//! needs no tensor type, so losses and gradients computed by any framework can
//! be balanced with it.
//!
//! ```
//! use mtl_losses::balance::{BalanceInput, BalancerConfig, GradNormConfig, GradRows};
//! use mtl_losses::GradientSource;
//!
//! # fn main() -> mtl_losses::Result<()> {
//! // A toy model from any framework: a shared layer θ ∈ R² and two quadratic
//! // tasks L_t = ½ s_t ‖θ − a_t‖² on very different scales s = (1, 100).
//! // The losses and gradient rows below are plain numbers, not our tensors.
//! let targets = [[1.0_f32, 0.0], [0.0, 1.0]];
//! let scales = [1.0_f32, 100.0];
//! let mut theta = [0.0_f32, 0.0];
//!
//! let config = BalancerConfig::Gradnorm(GradNormConfig {
//!     alpha: 0.0,
//!     ..GradNormConfig::default()
//! });
//! let mut balancer = config.build(2, 42)?;
//! assert_eq!(balancer.needs(), GradientSource::LastSharedLayer);
//!
//! let mut weights = vec![];
//! for step in 0..50 {
//!     let mut losses = [0.0_f32; 2];
//!     let mut rows = [0.0_f32; 4]; // row t = ∇_θ L_t, row-major T x P
//!     for t in 0..2 {
//!         for i in 0..2 {
//!             let r = theta[i] - targets[t][i];
//!             losses[t] += 0.5 * scales[t] * r * r;
//!             rows[t * 2 + i] = scales[t] * r;
//!         }
//!     }
//!     let grads = GradRows::new(&rows, 2, 2)?;
//!     let input = BalanceInput::from_losses(&losses).with_grads(grads).at(step, 0);
//!     let out = balancer.balance(&input)?;
//!     // The trainer would back-propagate Σ w_t L_t; here the shared update is Σ w_t g_t.
//!     let d = out.shared_direction(&grads)?;
//!     for i in 0..2 {
//!         theta[i] -= 0.005 * d[i];
//!     }
//!     weights = out.weights().to_vec();
//! }
//! // Mean scale: the weights sum to 1, and GradNorm has moved weight to the
//! // task with the small gradients to equalise the weighted gradient norms.
//! assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! assert!(weights[0] > 0.6 && weights[1] < 0.4, "{weights:?}");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod balance;
mod error;
pub mod loss;
pub mod metric;
pub mod task;

pub use balance::{BalanceInput, Balanced, Balancer, BalancerConfig, GradRows, GradientSource};
pub use error::{Error, Result};
