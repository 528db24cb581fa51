//! The persistent state of a method run by a generic wrapper
//! ([`GramBalancer`](super::GramBalancer), [`RowBalancer`](super::RowBalancer)),
//! and the parts of those wrappers that are the same for both.

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

/// Defines a wrapper struct `$name<M>` (a method `M: $method` and the task
/// count) with its constructors and accessor.
macro_rules! method_wrapper {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<M> {
            method: M,
            num_tasks: usize,
        }

        impl<M: $method> $name<M> {
            /// Wraps `method` for `num_tasks` tasks.
            ///
            /// # Errors
            /// [`Error::NoTasks`](crate::Error::NoTasks).
            pub fn new(num_tasks: usize, method: M) -> Result<Self> {
                require_tasks(num_tasks)?;
                Ok(Self { method, num_tasks })
            }

            /// Builds the wrapper as a boxed balancer (what `MethodConfig::build` returns).
            ///
            /// # Errors
            /// [`Error::NoTasks`](crate::Error::NoTasks).
            pub fn boxed(num_tasks: usize, method: M) -> Result<Box<dyn Balancer>>
            where
                M: 'static,
            {
                Ok(Box::new(Self::new(num_tasks, method)?))
            }

            /// The wrapped method.
            pub fn method(&self) -> &M {
                &self.method
            }
        }
    };
}

/// The [`Balancer`](super::Balancer) items a method wrapper delegates: the
/// name from the configuration, the needs from the method, and its state.
macro_rules! delegate_to_method {
    () => {
        fn name(&self) -> &'static str {
            <M::Config as MethodConfig>::NAME
        }

        fn num_tasks(&self) -> usize {
            self.num_tasks
        }

        fn needs(&self) -> GradientSource {
            self.method.needs()
        }

        fn state(&self) -> serde_json::Value {
            self.method.state()
        }

        fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
            self.method.load_state(self.name(), state)
        }

        fn reset(&mut self) {
            self.method.reset();
        }

        fn learnable(&self) -> Vec<(String, f32)> {
            self.method.learnable()
        }
    };
}

pub(crate) use {delegate_to_method, method_wrapper};
