//! Task relations: which tasks help each other when they share a model and
//! which get in each other's way.
//!
//! A [`RelationTracker`] follows a run and measures, every `k` steps,
//!
//! - the **inter-task affinity** of Fifty et al., *Efficiently Identifying
//!   Task Groupings for Multi-Task Learning* (NeurIPS 2021): for every task
//!   `i`, a look-ahead step of the shared parameters along task `i`'s gradient
//!   alone, `θ_s' = θ_s - η ∇_{θ_s} L_i`, and for every task `j` the relative
//!   change of its loss on the same batch,
//!   `Z_{i→j} = 1 - L_j(θ_s', θ_j) / L_j(θ_s, θ_j)`. Positive: a step for `i`
//!   lowers `j`'s loss. The look-ahead is a plain SGD step with the
//!   optimizer's current learning rate (or a fixed one), whatever the
//!   optimizer; the values are averaged over the sampled steps into a `T x T`
//!   [`TaskMatrix`] whose entry `(i, j)` is `Z_{i→j}`;
//! - the running mean of the task-gradient cosine matrix on the same steps;
//! - [`TaskEmbeddings`]: each task's mean unit-length shared-parameter
//!   gradient over an epoch, reduced to a few dimensions by principal
//!   components, so that tasks pulling the shared parameters the same way lie
//!   near each other.
//!
//! [`suggest_groups`] turns the affinity matrix into the partition of the
//! tasks into a given number of groups that maximises the total affinity
//! (see [`grouping`] for the score), and [`write()`] / [`read`] /
//! [`render_text`] store and show everything in a run directory.
//!
//! Measuring never changes training: the look-ahead copies the shared
//! parameters and buffers back exactly, so a run is bit-identical with or
//! without a tracker.

pub mod embedding;
pub mod grouping;
pub mod matrix;
pub mod output;
pub mod tracker;

pub use embedding::{TaskEmbeddings, EMBEDDING_DIMS};
pub use grouping::{
    exhaustive_groups, greedy_groups, group_score, suggest_groups, suggest_within_budget, Grouping,
    EXHAUSTIVE_MAX_TASKS,
};
pub use matrix::TaskMatrix;
pub use output::{
    number, read, render_text, write, SavedRelations, AFFINITY_PLOT, COSINE_PLOT, EMBEDDINGS_FILE,
    EMBEDDING_PLOT, RELATIONS_FILE, SUGGESTED_GROUPS,
};
pub use tracker::{RelationTracker, Relations};

use crate::error::TrainError;

/// The error for an argument that does not fit (a group count, a list of
/// names), naming the argument.
pub(crate) fn invalid(what: &str, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        path: what.into(),
        message: message.into(),
    }
}
