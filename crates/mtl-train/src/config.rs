//! The run configuration, read from TOML.
//!
//! ```toml
//! seed = 0
//!
//! [data]
//! builtin = "multimnist"      # or: csv = "path.csv" with a [data.schema] table,
//!                             # or: dir = "exported" (NPY files as `mtl datasets export` writes them),
//!                             # or: x = "x.npy" with [data.targets] left = "left.npy"
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

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use mtl_core::arch::ModelConfig;
use mtl_data::{ArraysConfig, CsvSchema, SplitConfig};
use mtl_losses::task::{Task, TaskConfig};
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

/// The `[data]` table: where the examples come from, and how many of the
/// training rows to use. The TOML surface is one flat table (see
/// [`DataTable`]); it is checked once, when read, into this type, so a
/// configuration cannot hold two sources or none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DataTable", into = "DataTable")]
pub struct DataConfig {
    /// The source of the examples.
    pub source: DataSource,
    /// Use at most this many training rows (the first ones of the seeded split).
    pub limit: Option<NonZeroUsize>,
}

/// Where the examples of a run come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// A built-in data set (`mtl datasets list`), with its own split.
    Builtin {
        /// Its name.
        name: String,
    },
    /// A CSV file read with a schema.
    Csv {
        /// The file (relative paths are resolved against the configuration file).
        path: PathBuf,
        /// How its columns are read.
        schema: CsvSchema,
        /// The seeded split fractions (default [`SplitConfig::default`]).
        split: Option<SplitConfig>,
    },
    /// NPY or IDX arrays: a features file and one file per task, or a
    /// directory in the layout of `mtl datasets export`.
    Arrays {
        /// The files and how to read them.
        arrays: ArraysConfig,
        /// The seeded split fractions, used when the files carry no split.
        split: Option<SplitConfig>,
    },
}

impl DataConfig {
    /// A built-in data set, all of its rows.
    pub fn builtin(name: impl Into<String>) -> DataConfig {
        DataConfig {
            source: DataSource::Builtin { name: name.into() },
            limit: None,
        }
    }

    /// Resolves the relative file paths of the source against `base`, the
    /// directory of the configuration file.
    pub fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.source {
            DataSource::Builtin { .. } => {}
            DataSource::Csv { path, .. } => join(path),
            DataSource::Arrays { arrays, .. } => {
                arrays.dir.as_mut().map(join);
                arrays.x.as_mut().map(join);
                arrays.split_file.as_mut().map(join);
                arrays.targets.values_mut().for_each(join);
            }
        }
    }
}

/// The `[data]` table as written: a built-in name, or a CSV file with its
/// schema, or array files; the keys of the other sources are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataTable {
    /// Name of a built-in data set (`mtl datasets list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// Path of a CSV file, relative to the configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<PathBuf>,
    /// A directory in the layout of `mtl datasets export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A features file (NPY or IDX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<PathBuf>,
    /// A file of one integer per row: 0 train, 1 validation, 2 test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_file: Option<PathBuf>,
    /// Divide uint8 features by 255 (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_u8: Option<bool>,
    /// The integer label of a row without a label (default -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_label: Option<i64>,
    /// Keep the features on disk (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
    /// Use at most this many training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The seeded split of a CSV file or of arrays without a split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitConfig>,
    /// The schema of the CSV file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<CsvSchema>,
    /// One target file per task, for `x`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, PathBuf>,
}

impl TryFrom<DataTable> for DataConfig {
    type Error = String;

    fn try_from(t: DataTable) -> std::result::Result<DataConfig, String> {
        let limit = match t.limit {
            Some(0) => return Err("[data] limit: must be at least 1".into()),
            Some(n) => NonZeroUsize::new(n),
            None => None,
        };
        let arrays = t.dir.is_some() || t.x.is_some();
        let array_keys = t.split_file.is_some()
            || t.scale_u8.is_some()
            || t.missing_label.is_some()
            || t.on_disk.is_some()
            || !t.targets.is_empty();
        let not_for = |source: &str, keys: &[(&str, bool)]| -> std::result::Result<(), String> {
            match keys.iter().find(|(_, given)| *given) {
                Some((key, _)) => Err(format!("[data] {key}: not a key of a {source} source")),
                None => Ok(()),
            }
        };
        let source = match (t.builtin, t.csv, arrays) {
            (Some(_), Some(_), _) | (Some(_), None, true) | (None, Some(_), true) => {
                return Err(
                    "[data]: give one source (`builtin`, `csv`, or `dir`/`x`), not both".into(),
                )
            }
            (None, None, false) => {
                return Err("[data]: give `builtin = \"<name>\"`, `csv = \"<path>\"` with a [data.schema] table, or array files (`dir` or `x`)".into())
            }
            (Some(name), None, false) => {
                not_for(
                    "built-in",
                    &[
                        ("schema", t.schema.is_some()),
                        ("split", t.split.is_some()),
                        ("targets", !t.targets.is_empty()),
                        ("split_file", t.split_file.is_some()),
                    ],
                )?;
                if array_keys {
                    return Err("[data]: array keys (`scale_u8`, `missing_label`, `on_disk`) need `dir` or `x`".into());
                }
                DataSource::Builtin { name }
            }
            (None, Some(path), false) => {
                let Some(schema) = t.schema else {
                    return Err("[data]: a `csv` source needs a [data.schema] table".into());
                };
                if array_keys {
                    return Err("[data]: array keys (`targets`, `split_file`, `scale_u8`, `missing_label`, `on_disk`) need `dir` or `x`, not `csv`".into());
                }
                DataSource::Csv {
                    path,
                    schema,
                    split: t.split,
                }
            }
            (None, None, true) => {
                not_for("array", &[("schema", t.schema.is_some())])?;
                let defaults = ArraysConfig::default();
                let arrays = ArraysConfig {
                    dir: t.dir,
                    x: t.x,
                    targets: t.targets,
                    split_file: t.split_file,
                    scale_u8: t.scale_u8.unwrap_or(defaults.scale_u8),
                    missing_label: t.missing_label.unwrap_or(defaults.missing_label),
                    on_disk: t.on_disk.unwrap_or(defaults.on_disk),
                };
                arrays.validate().map_err(|e| e.to_string())?;
                DataSource::Arrays {
                    arrays,
                    split: t.split,
                }
            }
        };
        Ok(DataConfig { source, limit })
    }
}

impl From<DataConfig> for DataTable {
    fn from(c: DataConfig) -> DataTable {
        let mut t = DataTable {
            limit: c.limit.map(NonZeroUsize::get),
            ..DataTable::default()
        };
        match c.source {
            DataSource::Builtin { name } => t.builtin = Some(name),
            DataSource::Csv {
                path,
                schema,
                split,
            } => {
                t.csv = Some(path);
                t.schema = Some(schema);
                t.split = split;
            }
            DataSource::Arrays { arrays, split } => {
                t.dir = arrays.dir;
                t.x = arrays.x;
                t.targets = arrays.targets;
                t.split_file = arrays.split_file;
                t.scale_u8 = Some(arrays.scale_u8);
                t.missing_label = Some(arrays.missing_label);
                t.on_disk = Some(arrays.on_disk);
                t.split = split;
            }
        }
        t
    }
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

/// A [`RunConfig`] that passed [`RunConfig::validate`]: what
/// [`prepare`](crate::prepare::prepare) and [`run::fit`](crate::run::fit)
/// take, so they need not check it again. It reads as a `RunConfig`
/// (`Deref`) but cannot be changed without validating again.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidRunConfig {
    config: RunConfig,
    tasks: Vec<Task>,
}

impl Deref for ValidRunConfig {
    type Target = RunConfig;

    fn deref(&self) -> &RunConfig {
        &self.config
    }
}

impl ValidRunConfig {
    /// The configuration, to change it (then validate it again).
    pub fn into_inner(self) -> RunConfig {
        self.config
    }

    /// The tasks of `[[tasks]]`, built (empty: every task of the data set).
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }
}

impl RunConfig {
    /// Parses and validates TOML text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<RunConfig> {
        Ok(RunConfig::parse_valid(text, origin)?.into_inner())
    }

    /// Parses TOML text into a validated configuration.
    pub fn parse_valid(text: &str, origin: &Path) -> Result<ValidRunConfig> {
        let config: RunConfig = toml::from_str(text).map_err(|e| TrainError::Config {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)
    }

    /// Reads and validates a configuration file. Relative data paths (a
    /// CSV file, array files) are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<ValidRunConfig> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut valid = RunConfig::parse_valid(&text, path)?;
        // Paths are not validated: resolving them keeps the config valid.
        valid
            .config
            .data
            .resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(valid)
    }

    /// The built-in default job.
    pub fn default_job() -> RunConfig {
        RunConfig::parse(DEFAULT_CONFIG, Path::new("<default configuration>"))
            .expect("the built-in configuration is valid")
    }

    /// Checks what the types cannot: positive sizes, valid hyperparameters,
    /// valid tasks with unique names (the `[data]` table is checked when
    /// read). `origin` names the file in errors.
    pub fn validate(self, origin: &Path) -> Result<ValidRunConfig> {
        let bad = |message: String| {
            Err(TrainError::Config {
                path: origin.to_path_buf(),
                message,
            })
        };
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
        let mut tasks = Vec::with_capacity(self.tasks.len());
        for t in &self.tasks {
            if !seen.insert(t.name.as_str()) {
                return bad(format!("[[tasks]]: the name {:?} is used twice", t.name));
            }
            tasks.push(t.build().map_err(|e| wrap("[[tasks]]", &e))?);
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
        Ok(ValidRunConfig {
            config: self,
            tasks,
        })
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

    fn with_data(data: &str) -> String {
        let start = DEFAULT_CONFIG.find("[data]").unwrap();
        let end = DEFAULT_CONFIG.find("[model]").unwrap();
        format!(
            "{}{data}\n{}",
            &DEFAULT_CONFIG[..start],
            &DEFAULT_CONFIG[end..]
        )
    }

    fn round_trips(config: &RunConfig) {
        let text = toml::to_string(config).unwrap();
        let back = RunConfig::parse(&text, Path::new("saved.toml")).unwrap();
        assert_eq!(&back, config, "{text}");
    }

    #[test]
    fn every_source_round_trips_through_toml() {
        let builtin = RunConfig::default_job();
        assert_eq!(builtin.data, DataConfig::builtin("multimnist"));
        round_trips(&builtin);
        let csv = with_data(
            "[data]\ncsv = \"cars.csv\"\nlimit = 7\n[data.schema]\nignore = [\"n\"]\n[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y\"]\n[data.split]\nvalidation = 0.2\ntest = 0.1\nseed = 3\n",
        );
        round_trips(&RunConfig::parse(&csv, Path::new("c.toml")).unwrap());
        let arrays = with_data(
            "[data]\nx = \"x.npy\"\nsplit_file = \"split.npy\"\nscale_u8 = false\nmissing_label = -9\non_disk = true\n[data.targets]\nleft = \"left.npy\"\n",
        );
        let config = RunConfig::parse(&arrays, Path::new("a.toml")).unwrap();
        let DataSource::Arrays { arrays, split } = &config.data.source else {
            panic!("{:?}", config.data)
        };
        assert_eq!(arrays.x.as_deref(), Some(Path::new("x.npy")));
        assert_eq!(arrays.targets["left"], PathBuf::from("left.npy"));
        assert_eq!(
            (arrays.scale_u8, arrays.missing_label, arrays.on_disk),
            (false, -9, true)
        );
        assert!(split.is_none());
        round_trips(&config);
        let dir = with_data("[data]\ndir = \"exported\"\nlimit = 100\n");
        let config = RunConfig::parse(&dir, Path::new("d.toml")).unwrap();
        assert_eq!(config.data.limit, NonZeroUsize::new(100));
        round_trips(&config);
    }

    #[test]
    fn relative_array_paths_are_resolved_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let text = with_data(
            "[data]\nx = \"x.npy\"\nsplit_file = \"/abs/split.npy\"\n[data.targets]\nleft = \"t/left.npy\"\n",
        );
        std::fs::write(&path, text).unwrap();
        let config = RunConfig::load(&path).unwrap();
        let DataSource::Arrays { arrays, .. } = &config.data.source else {
            panic!("{:?}", config.data)
        };
        assert_eq!(arrays.x, Some(dir.path().join("x.npy")));
        assert_eq!(arrays.targets["left"], dir.path().join("t/left.npy"));
        assert_eq!(arrays.split_file, Some(PathBuf::from("/abs/split.npy")));
    }

    #[test]
    fn invalid_data_tables_are_refused_naming_the_key() {
        for (data, needles) in [
            (
                "builtin = \"digits\"\ncsv = \"a.csv\"",
                &["[data]", "not both"][..],
            ),
            ("builtin = \"digits\"\ndir = \"d\"", &["[data]", "not both"]),
            ("csv = \"a.csv\"\nx = \"x.npy\"", &["[data]", "not both"]),
            ("limit = 3", &["[data]", "builtin"]),
            ("csv = \"a.csv\"", &["[data.schema]"]),
            (
                "builtin = \"digits\"\nlimit = 0",
                &["[data] limit", "at least 1"],
            ),
            (
                "builtin = \"digits\"\non_disk = true",
                &["[data]", "`dir` or `x`"],
            ),
            (
                "builtin = \"digits\"\nsplit_file = \"s.npy\"",
                &["[data] split_file"],
            ),
            ("x = \"x.npy\"", &["[data] targets"]),
            ("dir = \"d\"\nx = \"x.npy\"", &["[data]", "not both"]),
            (
                "dir = \"d\"\n[data.targets]\nleft = \"l.npy\"",
                &["[data] targets"],
            ),
            ("dir = \"d\"\nscale_u8 = 3", &["scale_u8"]),
            ("dir = \"d\"\ndirr = \"e\"", &["dirr", "split_file"]),
        ] {
            let text = with_data(&format!("[data]\n{data}\n"));
            let err = RunConfig::parse(&text, Path::new("bad.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("bad.toml"), "{err}");
            for needle in needles {
                assert!(err.contains(needle), "{data}: {needle:?} not in {err}");
            }
        }
    }

    #[test]
    fn every_example_configuration_parses_and_round_trips() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = RunConfig::load(&path).unwrap();
                round_trips(&config);
                seen += 1;
            }
        }
        assert!(seen >= 6, "{seen} examples");
    }

    #[test]
    fn validation_builds_the_tasks_once() {
        let valid = RunConfig::parse_valid(DEFAULT_CONFIG, Path::new("d.toml")).unwrap();
        let names: Vec<&str> = valid.tasks().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["left", "right", "sum"]);
        assert_eq!(valid.train.batch_size, 256);
    }
}
