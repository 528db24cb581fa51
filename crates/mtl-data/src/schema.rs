//! [`CsvSchema`]: how the columns of a delimited text file become features
//! and task targets. Serde types that refuse unknown keys, so a schema can sit
//! in a TOML run configuration:
//!
//! ```toml
//! header = true
//! delimiter = ","
//! ignore = ["name"]                 # features: every other non-task column
//! missing = "impute_mean"           # or "error" (default) or "drop"
//!
//! [[categorical]]
//! column = "color"
//! encoding = "one_hot"              # or "index"
//!
//! [[tasks]]
//! name = "mpg"
//! kind = "regression"
//! columns = ["mpg"]
//!
//! [[tasks]]
//! name = "origin"
//! kind = "classification"
//! column = "origin"                 # labels discovered and saved
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// A column, by header name or by zero-based index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// Zero-based position in the row.
    Index(usize),
    /// Name in the header line.
    Name(String),
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Index(i) => write!(f, "#{i}"),
            Column::Name(n) => write!(f, "{n:?}"),
        }
    }
}

impl From<&str> for Column {
    fn from(name: &str) -> Self {
        Column::Name(name.to_string())
    }
}

impl From<usize> for Column {
    fn from(index: usize) -> Self {
        Column::Index(index)
    }
}

/// How a categorical feature becomes numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryEncoding {
    /// One 0/1 column per category (default).
    #[default]
    OneHot,
    /// One column holding the category's index in the list.
    Index,
}

/// A categorical feature column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Categorical {
    /// The column.
    pub column: Column,
    /// One-hot (default) or index.
    #[serde(default)]
    pub encoding: CategoryEncoding,
    /// The categories, in encoding order. When absent they are discovered
    /// from the file (sorted, numerically if every value is a number) and
    /// written into the resolved schema, so that prediction encodes the same
    /// way; a value outside a given list is an error.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
}

/// What to do with a missing value (an empty field or one of
/// [`CsvSchema::missing_values`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Fail, naming the file, line and column (default).
    #[default]
    Error,
    /// Drop the row.
    Drop,
    /// Replace a missing feature with its training-split mean (a missing
    /// task value is still an error: targets are never invented).
    ImputeMean,
}

/// What to do with a missing target (an empty field or one of
/// [`CsvSchema::missing_values`] in a task column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingTargets {
    /// Fail, naming the file, line and column (default).
    #[default]
    Error,
    /// Keep the row with no label for that task: it takes part in the
    /// other tasks only. A task of several columns must miss all of them.
    Mask,
}

/// A task and the column(s) its targets come from, tagged by `kind` like
/// [`mtl_core::TaskKind`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskColumn {
    /// Class labels in one column.
    Classification {
        /// Task name.
        name: String,
        /// The label column.
        column: Column,
        /// Number of classes; with no `labels`, values must be integers
        /// `0..classes`.
        #[serde(default)]
        classes: Option<usize>,
        /// Class labels in index order. When neither `labels` nor `classes`
        /// is given, labels are discovered (sorted, numerically if possible)
        /// and saved in the resolved schema.
        #[serde(default)]
        labels: Option<Vec<String>>,
    },
    /// A 0/1 column.
    Binary {
        /// Task name.
        name: String,
        /// The column, holding 0 or 1.
        column: Column,
    },
    /// Several 0/1 columns.
    Multilabel {
        /// Task name.
        name: String,
        /// One column per label.
        columns: Vec<Column>,
    },
    /// One or more real-valued columns.
    Regression {
        /// Task name.
        name: String,
        /// One column per output.
        columns: Vec<Column>,
    },
    /// A clustering task; the data has no target, only optional reference
    /// labels used for scoring.
    Clustering {
        /// Task name.
        name: String,
        /// Number of clusters.
        clusters: usize,
        /// A column of reference labels (not a feature), if any.
        #[serde(default)]
        reference: Option<Column>,
    },
}

impl TaskColumn {
    /// The task's name.
    pub fn name(&self) -> &str {
        match self {
            TaskColumn::Classification { name, .. }
            | TaskColumn::Binary { name, .. }
            | TaskColumn::Multilabel { name, .. }
            | TaskColumn::Regression { name, .. }
            | TaskColumn::Clustering { name, .. } => name,
        }
    }

    /// The columns this task reads.
    pub fn columns(&self) -> Vec<&Column> {
        match self {
            TaskColumn::Classification { column, .. } | TaskColumn::Binary { column, .. } => {
                vec![column]
            }
            TaskColumn::Multilabel { columns, .. } | TaskColumn::Regression { columns, .. } => {
                columns.iter().collect()
            }
            TaskColumn::Clustering { reference, .. } => reference.iter().collect(),
        }
    }
}

/// How to read a delimited text file into a [`crate::Dataset`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSchema {
    /// Whether the first line names the columns (default true).
    #[serde(default = "default_true")]
    pub header: bool,
    /// The field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Feature columns in order. When absent: every column that no task
    /// reads and that is not in `ignore`, in file order.
    #[serde(default)]
    pub features: Option<Vec<Column>>,
    /// Columns that are neither features nor targets (names, ids).
    #[serde(default)]
    pub ignore: Vec<Column>,
    /// Feature columns holding categories rather than numbers.
    #[serde(default)]
    pub categorical: Vec<Categorical>,
    /// The tasks (none when reading features for prediction).
    #[serde(default)]
    pub tasks: Vec<TaskColumn>,
    /// What to do with missing values (default: error).
    #[serde(default)]
    pub missing: MissingPolicy,
    /// What to do with missing targets (default: error); `"mask"` keeps the
    /// row unlabelled for that task.
    #[serde(default)]
    pub missing_targets: MissingTargets,
    /// Field values that mean "missing", besides the empty field (default
    /// `NA`, `N/A`, `NaN`, `nan`, `?`).
    #[serde(default = "default_missing_values")]
    pub missing_values: Vec<String>,
    /// Standardise numeric feature columns with statistics of the training
    /// split (default true); one-hot and index columns are left as they are.
    #[serde(default = "default_true")]
    pub standardize: bool,
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> char {
    ','
}

fn default_missing_values() -> Vec<String> {
    ["NA", "N/A", "NaN", "nan", "?"].map(String::from).to_vec()
}

impl CsvSchema {
    /// A schema with the defaults and these tasks.
    pub fn new(tasks: Vec<TaskColumn>) -> Self {
        CsvSchema {
            header: true,
            delimiter: default_delimiter(),
            features: None,
            ignore: Vec::new(),
            categorical: Vec::new(),
            tasks,
            missing: MissingPolicy::Error,
            missing_targets: MissingTargets::Error,
            missing_values: default_missing_values(),
            standardize: true,
        }
    }

    /// Checks what can be checked without the file: the delimiter, unique
    /// task names, label lists and sizes.
    pub fn validate(&self) -> Result<()> {
        if !self.delimiter.is_ascii() {
            return Err(DataError::invalid(
                "schema delimiter",
                format!("{:?} is not an ASCII character", self.delimiter),
            ));
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let what = || format!("schema task {:?}", task.name());
            if self.tasks[..i].iter().any(|t| t.name() == task.name()) {
                return Err(DataError::invalid(what(), "task name is used twice"));
            }
            match task {
                TaskColumn::Classification {
                    classes, labels, ..
                } => match (classes, labels) {
                    (Some(c), Some(l)) if *c != l.len() => {
                        return Err(DataError::invalid(
                            what(),
                            format!("classes = {c} but {} labels are listed", l.len()),
                        ))
                    }
                    (Some(c), _) if *c < 2 => {
                        return Err(DataError::invalid(what(), "needs at least 2 classes"))
                    }
                    _ => {}
                },
                TaskColumn::Multilabel { columns, .. } | TaskColumn::Regression { columns, .. }
                    if columns.is_empty() =>
                {
                    return Err(DataError::invalid(what(), "lists no column"))
                }
                TaskColumn::Clustering { clusters, .. } if *clusters < 2 => {
                    return Err(DataError::invalid(what(), "needs at least 2 clusters"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The same schema without tasks, for reading the features of new data
    /// at prediction. Use it on the resolved schema a read returned, which
    /// lists the features and categories explicitly.
    pub fn features_only(&self) -> CsvSchema {
        CsvSchema {
            tasks: Vec::new(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_toml_and_refuses_unknown_keys() {
        let s: CsvSchema = toml::from_str(
            r#"
            ignore = ["name", 0]
            missing = "drop"
            [[categorical]]
            column = "color"
            encoding = "index"
            [[tasks]]
            name = "y"
            kind = "regression"
            columns = ["y", 3]
            [[tasks]]
            name = "c"
            kind = "classification"
            column = "c"
            labels = ["a", "b"]
            "#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.ignore, vec![Column::from("name"), Column::Index(0)]);
        assert_eq!(s.missing, MissingPolicy::Drop);
        assert_eq!(s.categorical[0].encoding, CategoryEncoding::Index);
        assert_eq!(
            s.tasks[0].columns(),
            vec![&Column::from("y"), &Column::Index(3)]
        );
        assert!(s.header && s.standardize && s.delimiter == ',');
        let bad = toml::from_str::<CsvSchema>(
            "[[tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumn = [\"y\"]\n",
        );
        assert!(bad.unwrap_err().to_string().contains("column"));
        let bad = toml::from_str::<CsvSchema>("delimeter = \";\"");
        assert!(bad.unwrap_err().to_string().contains("delimeter"));
        // Serialising and reading back gives the same schema.
        let again: CsvSchema = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn validation_catches_inconsistent_tasks() {
        let mut s = CsvSchema::new(vec![TaskColumn::Classification {
            name: "c".into(),
            column: "c".into(),
            classes: Some(3),
            labels: Some(vec!["a".into(), "b".into()]),
        }]);
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("classes = 3 but 2 labels"));
        s.tasks = vec![
            TaskColumn::Binary {
                name: "b".into(),
                column: 0.into(),
            },
            TaskColumn::Binary {
                name: "b".into(),
                column: 1.into(),
            },
        ];
        assert!(s.validate().unwrap_err().to_string().contains("used twice"));
        s.tasks.truncate(1);
        s.delimiter = '→';
        assert!(s.validate().is_err());
    }
}
