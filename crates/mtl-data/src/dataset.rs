//! [`Dataset`]: features and one target per task, and the [`Batch`] a loader
//! cuts from it.

use std::fmt;

use mtl_core::{Targets, TaskSpec, Tensor};
use serde::{Deserialize, Serialize};

use crate::disk::DiskFeatures;
use crate::error::{DataError, Result};
use crate::split::Split;
use crate::standardize::Standardizer;

/// Features and one [`Targets`] per task, row `i` of every part describing
/// example `i`.
///
/// Features are a tensor `[n, ...]`: a matrix `[n, d]` for tables, `[n, C, H, W]`
/// for images. A data set may carry a predefined [`Split`] (MultiMNIST's
/// disjoint training and test pools, for instance) and the [`Standardizer`]
/// already applied to its features, so that `predict` can apply the same one.
///
/// Features live in memory, or on disk ([`Dataset::on_disk`]): then every
/// batch is read from the files when gathered, and [`Dataset::features`]
/// is an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    features: Features,
    tasks: Vec<TaskSpec>,
    targets: Vec<Targets>,
    split: Option<Split>,
    standardizer: Option<Standardizer>,
}

/// Where the features are.
#[derive(Clone, Debug, PartialEq)]
enum Features {
    Memory(Tensor),
    Disk(DiskFeatures),
}

/// A batch of examples: features `[b, ...]` and the targets of each task, in
/// the order of the data set's tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Features of the batch's examples, `[b, ...]`.
    pub x: Tensor,
    /// One entry per task, each holding `b` examples.
    pub targets: Vec<Targets>,
    /// The data-set rows the batch holds, in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// A summary of a data set: what `mtl datasets describe` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// The data set's name.
    pub name: String,
    /// The number of examples.
    pub rows: usize,
    /// The shape of one example's features.
    pub feature_shape: Vec<usize>,
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
    /// Sizes of the predefined split (train, validation, test), if any.
    pub split: Option<[usize; 3]>,
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} rows, features {:?}",
            self.name, self.rows, self.feature_shape
        )?;
        if let Some([train, validation, test]) = self.split {
            writeln!(
                f,
                "  split: {train} train, {validation} validation, {test} test"
            )?;
        }
        for task in &self.tasks {
            writeln!(
                f,
                "  task {}: {} (width {})",
                task.name,
                task.kind.name(),
                task.kind.output_width()
            )?;
        }
        Ok(())
    }
}

impl Dataset {
    /// A data set from features `[n, ...]` and one `(spec, targets)` pair per
    /// task. Fails when a task's targets do not hold `n` examples or do not fit
    /// its kind, or when two tasks share a name.
    ///
    /// ```
    /// use mtl_core::{Targets, TaskKind, TaskSpec, Tensor};
    /// use mtl_data::Dataset;
    ///
    /// let x = Tensor::from_vec(vec![0.0, 1.0, 2.0, 3.0], &[2, 2]).unwrap();
    /// let spec = TaskSpec { name: "y".into(), kind: TaskKind::Classification { classes: 2 } };
    /// let ds = Dataset::new("tiny", x, vec![(spec, Targets::Classes(vec![1, 0]))]).unwrap();
    /// assert_eq!(ds.len(), 2);
    /// ```
    pub fn new(
        name: impl Into<String>,
        features: Tensor,
        tasks: Vec<(TaskSpec, Targets)>,
    ) -> Result<Self> {
        Dataset::build(name.into(), Features::Memory(features), tasks)
    }

    /// A data set whose features stay on disk: each batch is read from the
    /// files when gathered. Targets are in memory, as for [`Dataset::new`].
    pub fn on_disk(
        name: impl Into<String>,
        features: DiskFeatures,
        tasks: Vec<(TaskSpec, Targets)>,
    ) -> Result<Self> {
        Dataset::build(name.into(), Features::Disk(features), tasks)
    }

    fn build(name: String, features: Features, tasks: Vec<(TaskSpec, Targets)>) -> Result<Self> {
        let shape = match &features {
            Features::Memory(t) => t.shape(),
            Features::Disk(d) => d.shape(),
        };
        let rows = *shape.first().ok_or_else(|| {
            DataError::invalid(format!("data set {name:?}"), "features have no rows axis")
        })?;
        let mut specs = Vec::with_capacity(tasks.len());
        let mut targets = Vec::with_capacity(tasks.len());
        for (spec, target) in tasks {
            spec.kind.validate()?;
            target.check(&spec.name, &spec.kind)?;
            if let Some(len) = target.len() {
                if len != rows {
                    return Err(DataError::invalid(
                        format!("data set {name:?}, task {:?}", spec.name),
                        format!("{len} targets for {rows} rows of features"),
                    ));
                }
            }
            if specs.iter().any(|s: &TaskSpec| s.name == spec.name) {
                return Err(DataError::invalid(
                    format!("data set {name:?}"),
                    format!("task name {:?} is used twice", spec.name),
                ));
            }
            specs.push(spec);
            targets.push(target);
        }
        Ok(Dataset {
            name,
            features,
            tasks: specs,
            targets,
            split: None,
            standardizer: None,
        })
    }

    /// Attaches a predefined split; fails if an index is out of range.
    pub fn with_split(mut self, split: Split) -> Result<Self> {
        split.check(self.len())?;
        self.split = Some(split);
        Ok(self)
    }

    /// The data set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.shape()[0]
    }

    /// The feature shape with its rows axis first.
    fn shape(&self) -> &[usize] {
        match &self.features {
            Features::Memory(t) => t.shape(),
            Features::Disk(d) => d.shape(),
        }
    }

    /// Whether the features stay on disk ([`Dataset::on_disk`]).
    pub fn is_on_disk(&self) -> bool {
        matches!(self.features, Features::Disk(_))
    }

    /// Whether the data set holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All features, `[n, ...]`; an error when they stay on disk (gather
    /// rows with [`Dataset::gather`] instead).
    pub fn features(&self) -> Result<&Tensor> {
        match &self.features {
            Features::Memory(t) => Ok(t),
            Features::Disk(_) => Err(self.on_disk_error("the whole feature array")),
        }
    }

    fn features_mut(&mut self, what: &str) -> Result<&mut Tensor> {
        match &mut self.features {
            Features::Memory(t) => Ok(t),
            Features::Disk(_) => Err(DataError::invalid(
                format!("data set {:?}", self.name),
                format!("its features stay on disk, so {what} is not available"),
            )),
        }
    }

    fn on_disk_error(&self, what: &str) -> DataError {
        DataError::invalid(
            format!("data set {:?}", self.name),
            format!("its features stay on disk, so {what} is not available; gather rows instead"),
        )
    }

    /// The shape of one example's features (the feature tensor's shape
    /// without its first axis).
    pub fn feature_shape(&self) -> &[usize] {
        &self.shape()[1..]
    }

    /// The tasks, in order.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    /// The targets of every task, in the order of [`Dataset::tasks`].
    pub fn targets(&self) -> &[Targets] {
        &self.targets
    }

    /// The targets of the task named `name`, if there is one.
    pub fn task_targets(&self, name: &str) -> Option<&Targets> {
        self.tasks
            .iter()
            .position(|t| t.name == name)
            .map(|i| &self.targets[i])
    }

    /// The predefined split, if the data set has one.
    pub fn split(&self) -> Option<&Split> {
        self.split.as_ref()
    }

    /// The standardisation already applied to the features, if any.
    pub fn standardizer(&self) -> Option<&Standardizer> {
        self.standardizer.as_ref()
    }

    /// Fits a [`Standardizer`] on rows `train` of a `[n, d]` feature matrix,
    /// applies it to every row (imputing missing values, stored as NaN, with
    /// the training mean) and keeps it; returns it so it can be saved.
    /// Fails for features kept on disk.
    pub fn standardize(&mut self, train: &[usize]) -> Result<&Standardizer> {
        let features = self.features_mut("standardisation")?;
        let standardizer = Standardizer::fit(features, train)?;
        standardizer.apply(features)?;
        Ok(self.standardizer.insert(standardizer))
    }

    /// Applies an already-fitted standardisation (for example one read back
    /// from a run directory) and keeps it.
    pub fn apply_standardizer(&mut self, standardizer: Standardizer) -> Result<()> {
        standardizer.apply(self.features_mut("standardisation")?)?;
        self.standardizer = Some(standardizer);
        Ok(())
    }

    /// The examples `indices`, in that order, as a batch.
    pub fn gather(&self, indices: &[usize]) -> Result<Batch> {
        let x = match &self.features {
            Features::Memory(t) => t.gather_rows(indices)?,
            Features::Disk(d) => d.gather_rows(indices)?,
        };
        let targets = self
            .targets
            .iter()
            .map(|t| t.gather(indices))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Batch {
            x,
            targets,
            indices: indices.to_vec(),
        })
    }

    /// The examples `indices` as a new data set with the same tasks (no split
    /// attached; the standardizer, if any, is kept), its features in memory.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let batch = self.gather(indices)?;
        Ok(Dataset {
            name: self.name.clone(),
            features: Features::Memory(batch.x),
            tasks: self.tasks.clone(),
            targets: batch.targets,
            split: None,
            standardizer: self.standardizer.clone(),
        })
    }

    /// A summary: rows, feature shape, tasks, split sizes.
    pub fn describe(&self) -> Description {
        Description {
            name: self.name.clone(),
            rows: self.len(),
            feature_shape: self.feature_shape().to_vec(),
            tasks: self.tasks.clone(),
            split: self
                .split
                .as_ref()
                .map(|s| [s.train.len(), s.validation.len(), s.test.len()]),
        }
    }

    /// Class labels of the classification task `name`, for stratified splits.
    pub fn class_labels(&self, name: &str) -> Result<&[usize]> {
        match self.task_targets(name) {
            Some(Targets::Classes(c)) => Ok(c),
            Some(_) => Err(DataError::invalid(
                format!("task {name:?}"),
                "is not a classification task",
            )),
            None => Err(DataError::invalid(
                format!("task {name:?}"),
                format!(
                    "no such task in data set {:?} (tasks: {})",
                    self.name,
                    self.tasks
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}
