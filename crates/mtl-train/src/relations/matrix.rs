//! [`TaskMatrix`]: a square matrix with one row and one column per task.

use serde::{Deserialize, Serialize};

use super::invalid;
use crate::error::Result;

/// A `T x T` matrix of task-pair values, stored row-major: entry `(i, j)`
/// is about task `i` acting on task `j` (for affinities, `Z_{i→j}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMatrix", into = "RawMatrix")]
pub struct TaskMatrix {
    tasks: usize,
    values: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    tasks: usize,
    values: Vec<f64>,
}

impl TryFrom<RawMatrix> for TaskMatrix {
    type Error = String;

    fn try_from(raw: RawMatrix) -> std::result::Result<Self, String> {
        TaskMatrix::from_row_major(raw.tasks, raw.values).map_err(|e| e.to_string())
    }
}

impl From<TaskMatrix> for RawMatrix {
    fn from(m: TaskMatrix) -> Self {
        RawMatrix {
            tasks: m.tasks,
            values: m.values,
        }
    }
}

impl TaskMatrix {
    /// A `tasks x tasks` matrix of zeros.
    pub fn zeros(tasks: usize) -> Self {
        TaskMatrix {
            tasks,
            values: vec![0.0; tasks * tasks],
        }
    }

    /// A matrix from `tasks * tasks` row-major values; fails when the count
    /// does not fit or a value is not finite.
    pub fn from_row_major(tasks: usize, values: Vec<f64>) -> Result<Self> {
        if values.len() != tasks * tasks {
            return Err(invalid(
                "task matrix",
                format!(
                    "{} values for {tasks} tasks (needs {})",
                    values.len(),
                    tasks * tasks
                ),
            ));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(invalid("task matrix", format!("holds the value {v}")));
        }
        Ok(TaskMatrix { tasks, values })
    }

    /// A matrix with entry `(i, j) = f(i, j)`; fails when a value is not finite.
    pub fn from_fn(tasks: usize, mut f: impl FnMut(usize, usize) -> f64) -> Result<Self> {
        let values = (0..tasks * tasks)
            .map(|k| f(k / tasks.max(1), k % tasks.max(1)))
            .collect();
        TaskMatrix::from_row_major(tasks, values)
    }

    /// The number of tasks (rows, and columns).
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Entry `(i, j)`; both must be below [`TaskMatrix::tasks`].
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.tasks + j]
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.tasks..(i + 1) * self.tasks]
    }

    /// Every entry, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The largest absolute entry (0 for an empty matrix).
    pub fn max_abs(&self) -> f64 {
        self.values.iter().fold(0.0, |m, v| m.max(v.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_values_are_checked() {
        assert!(TaskMatrix::from_row_major(2, vec![0.0; 3]).is_err());
        assert!(TaskMatrix::from_row_major(1, vec![f64::NAN]).is_err());
        let m = TaskMatrix::from_fn(3, |i, j| (i * 10 + j) as f64).unwrap();
        assert_eq!(m.get(2, 1), 21.0);
        assert_eq!(m.row(1), &[10.0, 11.0, 12.0]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<TaskMatrix>(&json).unwrap(), m);
        assert!(serde_json::from_str::<TaskMatrix>(r#"{"tasks":2,"values":[1]}"#).is_err());
    }
}
