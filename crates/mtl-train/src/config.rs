//! The run configuration, read from TOML.
//!
//! ```toml
//! seed = 0
//!
//! [data]
//! builtin = "multimnist"      # or: csv = "path.csv" with a [data.schema] table
//! limit = 4000                # optional: use at most this many training rows
//!
//! [model]
//! arch = "hps"                # hps | mmoe | dselect-k | cgc | ple | cross-stitch | mtan | ltb
//! [model.encoder]
//! name = "lenet"              # or "mlp" with hidden = [256, 128]
//!
//! [[tasks]]                   # optional: which tasks to train, and their losses
//! name = "left"
//! kind = "classification"
//! classes = 10
//!
//! [train]
//! epochs = 5
//! batch_size = 64
//! optimizer = { name = "adam", lr = 1e-3 }
//! balancer = { name = "equal" }
//! early_stopping = { metric = "left.accuracy", patience = 3 }
//! ```
//!
//! Unknown keys are refused at every level; the error names the key, its line
//! and column, and the keys that are allowed there.

use std::path::{Path, PathBuf};

use mtl_core::arch::ModelConfig;
use mtl_data::{CsvSchema, SplitConfig};
use mtl_losses::task::TaskConfig;
use mtl_losses::BalancerConfig;
use mtl_optim::{ClipConfig, OptimizerConfig, ScheduleConfig};
use serde::{Deserialize, Serialize};

use crate::error::{io, Result, TrainError};

/// A whole run: data, model, tasks and training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random choice (initialisation, data order, dropout, balancers).
    #[serde(default)]
    pub seed: u64,
    /// Where the examples come from.
    pub data: DataConfig,
    /// The architecture and encoder.
    pub model: ModelConfig,
    /// The tasks to train (default: every task of the data set, default losses).
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
    /// The training loop.
    #[serde(default)]
    pub train: TrainConfig,
}

/// The `[data]` table: a built-in data set or a CSV file with a schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Name of a built-in data set (`mtl datasets list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// Path of a CSV file, relative to the configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<PathBuf>,
    /// The schema of the CSV file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<CsvSchema>,
    /// The split of a CSV file (built-in data sets carry their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitConfig>,
    /// Use at most this many training rows (the first ones of the seeded split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Early stopping on a validation score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// `"loss"` (mean validation loss over tasks), or `"<task>.<metric>"`
    /// such as `"left.accuracy"`.
    pub metric: String,
    /// Epochs without improvement before stopping.
    pub patience: usize,
}

/// The `[train]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training rows (default 5).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Examples per step (default 64).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The optimizer (default Adam, lr 1e-3).
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule, stepped once per epoch (default constant).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Gradient clipping (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipConfig>,
    /// The loss balancer (default equal weighting).
    #[serde(default)]
    pub balancer: BalancerConfig,
    /// Early stopping (default none: every epoch runs, the best is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// How task relations are measured (default: every 40 steps, on 128 rows).
    #[serde(default)]
    pub relations: RelationsConfig,
}

/// The `[train.relations]` table: inter-task affinity by look-ahead steps
/// (Fifty et al., 2021) and the task-gradient cosines, measured during
/// training; `mtl relations RUN_DIR` shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationsConfig {
    /// Measure every this many steps; 0 turns the measurement off (default 40).
    #[serde(default = "default_relations_every")]
    pub every: u64,
    /// Learning rate of the look-ahead SGD step (default: the optimizer's
    /// current rate; adaptive optimizers' rates give tiny affinities, so a
    /// larger one such as 0.1 shows them better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead_lr: Option<f64>,
    /// Rows of the sampled batch the measurement uses; `0` uses the whole
    /// batch. A measurement is one forward pass, `T` backward and `T`
    /// look-ahead forward passes on these rows, so with the defaults (128
    /// rows every 40 steps) three tasks on 256-row batches cost about
    /// `(1 + 2·3 + 3)/2 / (40 · 3) ≈ 4 %` of training's passes.
    #[serde(default = "default_relations_rows")]
    pub rows: usize,
}

fn default_relations_rows() -> usize {
    128
}

fn default_relations_every() -> u64 {
    40
}

impl Default for RelationsConfig {
    fn default() -> Self {
        RelationsConfig {
            every: default_relations_every(),
            lookahead_lr: None,
            rows: default_relations_rows(),
        }
    }
}

fn default_epochs() -> usize {
    5
}

fn default_batch_size() -> usize {
    64
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            clip: None,
            balancer: BalancerConfig::default(),
            early_stopping: None,
            relations: RelationsConfig::default(),
        }
    }
}

/// The job `mtl train` runs without a configuration file: hard parameter
/// sharing with a LeNet-like encoder on the bundled MultiMNIST (18 000
/// training images, 2 000 for validation, 5 000 for test), three tasks (the
/// `left` and `right` digits and their `sum`, a regression trained with the
/// L1 loss so its scale matches the classification losses), equal weighting,
/// Adam 1e-3, batch 256, 10 epochs (about ten seconds an epoch on two cores).
pub const DEFAULT_CONFIG: &str = r#"
seed = 0

[data]
builtin = "multimnist"

[model]
arch = "hps"
[model.encoder]
name = "lenet"
fc = 100

[[tasks]]
name = "left"
kind = "classification"
classes = 10

[[tasks]]
name = "right"
kind = "classification"
classes = 10

[[tasks]]
name = "sum"
kind = "regression"
loss = "l1"

[train]
epochs = 10
batch_size = 256
optimizer = { name = "adam", lr = 1e-3 }
balancer = { name = "equal" }
"#;

impl RunConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<RunConfig> {
        let config: RunConfig = toml::from_str(text).map_err(|e| TrainError::Config {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and validates a configuration file. A relative CSV path is
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut config = RunConfig::parse(&text, path)?;
        if let Some(csv) = &config.data.csv {
            if csv.is_relative() {
                let base = path.parent().unwrap_or(Path::new("."));
                config.data.csv = Some(base.join(csv));
            }
        }
        Ok(config)
    }

    /// The built-in default job.
    pub fn default_job() -> RunConfig {
        RunConfig::parse(DEFAULT_CONFIG, Path::new("<default configuration>"))
            .expect("the built-in configuration is valid")
    }

    /// Checks what serde cannot: one data source, positive sizes, valid
    /// hyperparameters, unique task names.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |message: String| {
            Err(TrainError::Config {
                path: origin.to_path_buf(),
                message,
            })
        };
        match (&self.data.builtin, &self.data.csv) {
            (Some(_), Some(_)) => {
                return bad("[data]: give either `builtin` or `csv`, not both".into())
            }
            (None, None) => {
                return bad("[data]: give `builtin = \"<name>\"` or `csv = \"<path>\"`".into())
            }
            (None, Some(_)) if self.data.schema.is_none() => {
                return bad("[data]: a `csv` source needs a [data.schema] table".into())
            }
            _ => {}
        }
        if self.data.limit == Some(0) {
            return bad("[data] limit: must be at least 1".into());
        }
        if self.train.epochs == 0 {
            return bad("[train] epochs: must be at least 1".into());
        }
        if self.train.batch_size == 0 {
            return bad("[train] batch_size: must be at least 1".into());
        }
        let wrap = |key: &str, e: &dyn std::fmt::Display| TrainError::Config {
            path: origin.to_path_buf(),
            message: format!("{key}: {e}"),
        };
        self.train
            .optimizer
            .validate()
            .map_err(|e| wrap("[train] optimizer", &e))?;
        self.train
            .schedule
            .validate()
            .map_err(|e| wrap("[train] schedule", &e))?;
        if let Some(clip) = &self.train.clip {
            clip.validate().map_err(|e| wrap("[train] clip", &e))?;
        }
        self.model.validate().map_err(|e| wrap("[model]", &e))?;
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tasks {
            if !seen.insert(t.name.as_str()) {
                return bad(format!("[[tasks]]: the name {:?} is used twice", t.name));
            }
            t.build().map_err(|e| wrap("[[tasks]]", &e))?;
        }
        if let Some(lr) = self.train.relations.lookahead_lr {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(format!(
                    "[train] relations.lookahead_lr: {lr} is not a positive learning rate"
                ));
            }
        }
        if let Some(es) = &self.train.early_stopping {
            if es.patience == 0 {
                return bad("[train] early_stopping.patience: must be at least 1".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_job_parses() {
        let c = RunConfig::default_job();
        assert_eq!(c.tasks.len(), 3);
        assert_eq!(c.train.epochs, 10);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = DEFAULT_CONFIG.replace("batch_size = 256", "batch_sise = 256");
        let err = RunConfig::parse(&text, Path::new("run.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch_sise") && err.contains("run.toml") && err.contains("line"),
            "{err}"
        );
        assert!(
            err.contains("batch_size"),
            "the allowed keys are listed: {err}"
        );
    }

    #[test]
    fn zero_sizes_and_bad_rates_are_refused() {
        for (from, to, key) in [
            ("epochs = 10", "epochs = 0", "epochs"),
            ("batch_size = 256", "batch_size = 0", "batch_size"),
            ("lr = 1e-3", "lr = -1.0", "lr"),
        ] {
            let err = RunConfig::parse(&DEFAULT_CONFIG.replace(from, to), Path::new("r.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
