//! # mtl-cli
//!
//! The `mtl` command, kept thin: argument parsing, configuration files,
//! progress, plots, comparisons and reports around the training machinery of
//! [`mtl_train`]. A run is described by a TOML [`RunConfig`] and trained with
//! [`mtl_train::run::fit`]; this crate adds the [`Progress`](progress::Progress)
//! display and the [`RunPlots`](run_plots::RunPlots) as hooks.
//!
//! ```no_run
//! use mtl_cli::{progress::Progress, run_plots::RunPlots};
//! use mtl_train::{run, RunConfig, RunOptions};
//!
//! let config = RunConfig::default_job();
//! let opts = RunOptions { out: "runs/default".into(), resume: false, stop_after: None, memory: None };
//! let mut progress = Progress::new(false);
//! let mut plots = RunPlots::new(&opts.out);
//! let summary = run::fit(config, &opts, &mut [&mut progress, &mut plots])?;
//! plots.finish()?;
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
pub mod compare;
pub mod error;
pub mod plot;
pub mod progress;
pub mod relation_plots;
pub mod run_plots;

pub use error::{CliError, Result};
pub use mtl_train::RunConfig;
