//! # mtl-data
//!
//! Data for multi-task learning: a [`Dataset`] of features and one target per
//! task, built-in data sets built from bundled real files ([`datasets`]),
//! CSV files read with a serde [`CsvSchema`], NPY and IDX files ([`npy`],
//! [`idx`]), seeded splits ([`split`]), a deterministic parallel
//! [`DataLoader`], and export of any split to NPY ([`export_npy`]).
//!
//! ```
//! use mtl_core::Targets;
//! use mtl_data::{datasets, DataLoader, LoaderConfig};
//!
//! // A built-in data set by name, with its predefined seeded split.
//! let ds = datasets::load("digits", 7).unwrap();
//! assert_eq!(ds.feature_shape(), &[1, 8, 8]);
//! let split = ds.split().unwrap();
//! assert_eq!(split.train.len() + split.validation.len() + split.test.len(), 1797);
//!
//! // Batches of the training part, reshuffled every epoch from the seed.
//! let config = LoaderConfig { batch_size: 128, drop_last: true, seed: 1, ..Default::default() };
//! let loader = DataLoader::new(&ds, &split.train, config).unwrap();
//! for batch in loader.epoch(0) {
//!     let batch = batch.unwrap();
//!     assert_eq!(batch.x.shape(), &[128, 1, 8, 8]);
//!     let Targets::Classes(digits) = &batch.targets[0] else { unreachable!() };
//!     assert!(digits.iter().all(|&d| d < 10));
//! }
//! assert_eq!(loader.epoch(0).count(), split.train.len() / 128);
//! ```
#![warn(missing_docs)]

pub mod array;
pub mod arrays;
pub mod convert;
pub mod csv;
pub mod dataset;
pub mod datasets;
pub mod disk;
pub mod error;
pub mod export;
pub mod idx;
pub mod loader;
pub mod npy;
pub mod schema;
pub mod source;
pub mod split;
pub mod standardize;

pub use array::{Array, ArrayData};
pub use arrays::ArraysConfig;
pub use convert::{convert_csv, Converted};
pub use csv::{read_csv, read_csv_from, CsvTable};
pub use dataset::{Batch, Dataset, Description};
pub use disk::{DiskArray, DiskFeatures};
pub use error::{DataError, Result};
pub use export::export_npy;
pub use loader::{DataLoader, Epoch, LoaderConfig};
pub use schema::{
    Categorical, CategoryEncoding, Column, CsvSchema, MissingPolicy, MissingTargets, TaskColumn,
};
pub use source::{BatchSource, FromFn, InMemory, Subset};
pub use split::{Split, SplitConfig};
pub use standardize::Standardizer;
