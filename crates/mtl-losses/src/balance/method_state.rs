//! The persistent state of a method run by a generic wrapper
//! ([`GramBalancer`](super::GramBalancer), [`RowBalancer`](super::RowBalancer)).

use crate::error::{Error, Result};

/// What a method keeps between steps: learnable values, optimiser moments,
/// RNG position. Every item has a default for stateless methods, so a
/// stateless method writes `impl MethodState for M {}`.
pub trait MethodState {
    /// The state as JSON, for checkpoints (`null` when stateless).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores a state written by [`state`](MethodState::state);
    /// `balancer` names the method in errors.
    ///
    /// # Errors
    /// [`Error::State`] if the value does not fit.
    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        if state.is_null() {
            Ok(())
        } else {
            Err(Error::State {
                balancer,
                reason: format!("this balancer is stateless, expected null, got {state}"),
            })
        }
    }

    /// Returns to the freshly built state.
    fn reset(&mut self) {}

    /// The learnable or adaptive values worth logging.
    fn learnable(&self) -> Vec<(String, f32)> {
        Vec::new()
    }
}
