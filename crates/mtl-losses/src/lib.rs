//! Multi-task losses, metrics and loss balancers for `mtl`.
//!
//! The [`balance`] module is engine-agnostic: a [`Balancer`] takes the task
//! losses as plain `f32`s (and, when it needs them, per-task gradient rows as
//! one row-major slice) and returns task weights or a combined direction. It
//! needs no tensor type, so losses and gradients computed by any framework can
//! be balanced with it.
//!
//! ```
//! use mtl_losses::balance::{BalanceInput, BalancerConfig, GradRows};
//!
//! # fn main() -> mtl_losses::Result<()> {
//! // Two tasks; their losses and gradient rows come from any framework.
//! let config: BalancerConfig = "equal".parse()?;
//! let mut balancer = config.build(2, 42)?;
//! let losses = [0.9_f32, 2.5];
//! let rows = [-4.0_f32, 1.0, 1.0, 6.0, 1.0, 1.0]; // g_1, g_2 (row-major, T x P)
//! let grads = GradRows::new(&rows, 2, 3)?;
//!
//! let out = balancer.balance(&BalanceInput::from_losses(&losses))?;
//! assert_eq!(out.weights(), &[0.5, 0.5]); // mean scale: 1/T each
//! assert_eq!(out.shared_direction(&grads)?, vec![1.0, 1.0, 1.0]);
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
