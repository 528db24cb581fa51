//! # mtl-cli
//!
//! The training loop of the `mtl` workspace and the `mtl` command built on it.
//! A run is described by a TOML [`RunConfig`]; [`fit`] trains it into a run
//! directory holding the configuration, `metrics.csv`, SVG plots (loss per
//! task, task weights, the task-gradient cosine matrix), checkpoints written
//! atomically, and `summary.json` with the test scores of the best epoch.
//!
//! ```no_run
//! use mtl_cli::{fit, RunConfig, RunOptions};
//!
//! let config = RunConfig::default_job();
//! let opts = RunOptions { out: "runs/default".into(), resume: false, quiet: false, stop_after: None };
//! let summary = fit(config, &opts)?;
//! println!("{:?}", summary.test.metrics);
//! # Ok::<(), mtl_cli::CliError>(())
//! ```
//!
//! ```
//! // Configurations refuse unknown keys and name them.
//! let err = mtl_cli::RunConfig::parse("sed = 1", std::path::Path::new("run.toml")).unwrap_err();
//! assert!(err.to_string().contains("sed"));
//! ```
#![warn(missing_docs)]

pub mod allocator;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod relations;
pub mod report;
pub mod run;
pub mod trainer;

pub use config::RunConfig;
pub use error::{CliError, Result};
pub use run::{fit, RunOptions, RunSummary};
pub use trainer::{Evaluation, Trainer};
