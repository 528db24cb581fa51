//! The built-in data sets, built from the bundled real files or generated
//! from a seed, and a registry to list, build and describe them by name.
//!
//! | name | rows | features | tasks |
//! |---|---|---|---|
//! | `multimnist` | 25,000 (20,000 train / 5,000 test) | `[1, 36, 36]` | `left`, `right` (10 classes), `sum` (regression) |
//! | `autompg` | 392 | 6 | `mpg` (regression), `origin` (3 classes) |
//! | `linnerud` | 20 | 3 | `weight`, `waist`, `pulse` (regression) |
//! | `digits` | 1,797 | `[1, 8, 8]` | `digit` (10 classes), `groups` (clustering, 10) |
//! | `blobs` | 150 | 2 | `groups` (clustering, 3) |
//! | `gradnorm-toy` | 10,000 | 250 | `task_0`, `task_1` (regression, 100 outputs, σ = 1, 100) |
//! | `gradnorm-toy-10` | 10,000 | 250 | `task_0` .. `task_9` (regression, 100 outputs) |
//!
//! Every built-in comes with a predefined seeded [`crate::Split`]
//! ([`crate::Dataset::split`]).

mod autompg;
mod blobs;
mod digits;
mod embedded;
mod gradnorm_toy;
mod linnerud;
mod multimnist;

pub use autompg::auto_mpg;
pub use blobs::blobs;
pub use digits::digits;
pub use gradnorm_toy::GradNormToy;
pub use linnerud::linnerud;
pub use multimnist::{Composition, MultiMnist, CANVAS, MAX_SHIFT, SOURCE_SIDE};

use crate::dataset::{Dataset, Description};
use crate::error::{DataError, Result};

/// A built-in data set's name and a one-line description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinInfo {
    /// The name `load` accepts.
    pub name: &'static str,
    /// One line for `mtl datasets list`.
    pub description: &'static str,
}

/// Every built-in data set, in the order `mtl datasets list` shows them.
pub const BUILTINS: &[BuiltinInfo] = &[
    BuiltinInfo {
        name: "multimnist",
        description: "two MNIST digits overlaid on a 36x36 canvas; left and right digit (10 classes each) and their sum",
    },
    BuiltinInfo {
        name: "autompg",
        description: "UCI Auto MPG, 392 cars: mpg (regression) and origin (3 classes) from 6 numeric columns",
    },
    BuiltinInfo {
        name: "linnerud",
        description: "Linnerud, 20 men: weight, waist and pulse (3 regressions) from 3 exercise counts",
    },
    BuiltinInfo {
        name: "digits",
        description: "UCI 8x8 optical digits, 1,797 images: digit (10 classes) and 10-group clustering",
    },
    BuiltinInfo {
        name: "blobs",
        description: "three 2-D blobs, 150 points: clustering into 3 groups with known labels",
    },
    BuiltinInfo {
        name: "gradnorm-toy",
        description: "GradNorm synthetic regression (Chen et al. 2018): 2 tasks with output scales 1 and 100",
    },
    BuiltinInfo {
        name: "gradnorm-toy-10",
        description: "GradNorm synthetic regression with 10 tasks of scales 3 to 81",
    },
];

/// The built-in data sets' names and descriptions.
pub fn list() -> &'static [BuiltinInfo] {
    BUILTINS
}

/// Builds the built-in data set `name` (also accepted: `three_blobs` for
/// `blobs`) from `seed`, with its default settings and predefined split.
///
/// ```
/// let ds = mtl_data::datasets::load("autompg", 0).unwrap();
/// assert_eq!(ds.len(), 392);
/// assert!(mtl_data::datasets::load("cifar", 0).is_err());
/// ```
pub fn load(name: &str, seed: u64) -> Result<Dataset> {
    match name {
        "multimnist" => MultiMnist::default().build(seed),
        "autompg" => auto_mpg(seed),
        "linnerud" => linnerud(seed),
        "digits" => digits(seed),
        "blobs" | "three_blobs" => blobs(seed),
        "gradnorm-toy" => GradNormToy::default().build(seed),
        "gradnorm-toy-10" => GradNormToy::ten_tasks().build(seed),
        _ => Err(DataError::UnknownDataset {
            name: name.to_string(),
            known: BUILTINS
                .iter()
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Builds `name` with seed 0 and summarises it.
pub fn describe(name: &str) -> Result<Description> {
    Ok(load(name, 0)?.describe())
}
