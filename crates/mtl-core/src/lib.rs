//! # mtl-core
//!
//! The numeric core of the `mtl` workspace: f32 [`Tensor`]s, a reverse-mode
//! autodiff tape ([`Graph`]) built for multi-task learning, neural-network
//! layers ([`nn`]) and the flat parameter buffer ([`ParamStore`]).
//!
//! What multi-task training needs from autodiff is the gradient of each task's
//! loss separately, and gradients pushed from a shared representation down
//! through the trunk, without recomputing the forward pass.
//! [`Graph::backward_from`] takes any number of seeds, can stop at chosen nodes,
//! and only reads the graph, so per-task passes can run in parallel.
//!
//! ```
//! use mtl_core::{nn::{Mlp, Module}, Graph, ParamGroup, ParamStore, Tensor};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let mut ps = ParamStore::new();
//! let trunk = Mlp::builder(&[2, 16]).activate_last(true).build(&mut ps, "trunk", ParamGroup::Shared, &mut rng).unwrap();
//! let head_a = Mlp::builder(&[16, 3]).build(&mut ps, "head.a", ParamGroup::task("a"), &mut rng).unwrap();
//! let head_b = Mlp::builder(&[16, 1]).build(&mut ps, "head.b", ParamGroup::task("b"), &mut rng).unwrap();
//!
//! let mut g = Graph::new(0);
//! let x = g.input(Tensor::from_vec(vec![0.5, -1.0, 1.5, 0.25], &[2, 2]).unwrap());
//! let z = trunk.forward(&mut g, &mut ps, x).unwrap();           // shared representation
//! let logits = head_a.forward(&mut g, &mut ps, z).unwrap();
//! let loss_a = g.cross_entropy(logits, &[0, 2], None, 0.0).unwrap();
//! let pred = head_b.forward(&mut g, &mut ps, z).unwrap();
//! let loss_b = g.mse(pred, &Tensor::from_vec(vec![1.0, -1.0], &[2, 1]).unwrap()).unwrap();
//!
//! // The gradient of each task's loss at the representation, one pass each.
//! let ga = g.backward_from(&[(loss_a, Tensor::scalar(1.0))], &[z]).unwrap();
//! let gb = g.backward_from(&[(loss_b, Tensor::scalar(1.0))], &[z]).unwrap();
//! let (dza, dzb) = (ga.get(z).unwrap(), gb.get(z).unwrap());
//! assert_eq!(dza.shape(), &[2, 16]);
//!
//! // Push a combined direction through the trunk and read the shared gradient.
//! let direction = dza.add(dzb).unwrap();
//! let trunk_grads = g.backward_from(&[(z, direction)], &[]).unwrap();
//! let shared = ps.group_range(&ParamGroup::Shared).unwrap();
//! let mut flat = vec![0.0; shared.len()];
//! trunk_grads.accumulate_params(&g, shared, &mut flat).unwrap();
//! assert!(flat.iter().any(|v| *v != 0.0));
//! ```
#![warn(missing_docs)]

pub mod arch;
pub mod budget;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod nn;
pub mod params;
pub mod task;
pub mod tensor;
pub mod workers;

pub use error::{CoreError, Result};
pub use graph::{Gradients, Graph, Node, Op, Var};
pub use params::{BufferId, ParamGroup, ParamId, ParamStore, ParamView};
pub use task::{Targets, TaskKind, TaskSpec, MISSING_CLASS};
pub use tensor::Tensor;

pub use graph::BatchStatistics;
