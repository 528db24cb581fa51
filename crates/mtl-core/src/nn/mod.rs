//! Neural-network layers built on the [`Graph`](crate::Graph).
//!
//! A layer registers its parameters in a [`ParamStore`](crate::ParamStore)
//! when it is built (under a dotted name and a group) and records its ops on
//! the tape in [`Module::forward`]. Layers hold only ids and hyperparameters,
//! so a model is cheap to clone and rebuilding it from its configuration with
//! the same names lets a checkpoint be loaded by name.

mod activation;
mod batch_norm;
mod conv2d;
mod dropout;
mod flatten;
mod init;
mod layer_norm;
mod linear;
mod max_pool;
mod mlp;
mod module;
mod sequential;

pub use activation::Activation;
pub use batch_norm::BatchNorm;
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use init::Init;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use max_pool::MaxPool2d;
pub use mlp::{Mlp, MlpBuilder};
pub use module::Module;
pub use sequential::Sequential;
