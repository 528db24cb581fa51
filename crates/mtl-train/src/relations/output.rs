//! What a run directory holds about task relations, and the text
//! `mtl relations` prints.
//!
//! - `relations.json`: the task names, the [`Relations`] and the suggested
//!   partition into `k` groups for `k` from 1 to [`SUGGESTED_GROUPS`];
//! - `task_embeddings.csv`: `task,dim1,dim2,...`, one row per task;
//! - `affinity.svg` and `cosine_mean.svg` (and PNG copies): heatmaps in the
//!   colours of the run's `cosine.svg`, blue for positive, red for negative,
//!   row `i` column `j` holding `Z_{i→j}`; the affinities are divided by the
//!   largest absolute one (named in the title) so the scale is used fully;
//! - `task_embeddings.svg` (and PNG): the tasks at their first two
//!   coordinates.
//!
//! The embedding files are written only once an epoch with a measured step
//! has ended.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{invalid, suggest_groups, Grouping, Relations, TaskMatrix};
use crate::error::{io, Result, TrainError};

/// File name of the relations inside a run directory.
pub const RELATIONS_FILE: &str = "relations.json";
/// File name of the task embeddings (CSV).
pub const EMBEDDINGS_FILE: &str = "task_embeddings.csv";
/// File name of the affinity heatmap.
pub const AFFINITY_PLOT: &str = "affinity.svg";
/// File name of the heatmap of the mean gradient cosines.
pub const COSINE_PLOT: &str = "cosine_mean.svg";
/// File name of the embedding scatter plot.
pub const EMBEDDING_PLOT: &str = "task_embeddings.svg";
/// `relations.json` holds the best partition into each number of groups up
/// to this many (or the number of tasks).
pub const SUGGESTED_GROUPS: usize = 8;

/// The content of `relations.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRelations {
    /// Task names, in the order of the matrices' rows.
    pub tasks: Vec<String>,
    /// What was measured.
    pub relations: Relations,
    /// Entry `k - 1`: the best partition into `k` groups.
    pub suggestions: Vec<Grouping>,
}

fn check_names(relations: &Relations, names: &[String]) -> Result<()> {
    let t = relations.tasks();
    if names.len() != t || relations.cosine_mean.tasks() != t {
        return Err(invalid(
            "relations",
            format!(
                "{} task names for matrices of {t} and {} tasks",
                names.len(),
                relations.cosine_mean.tasks()
            ),
        ));
    }
    if let Some(e) = &relations.embeddings {
        if e.coords.len() != t || e.coords.iter().any(|r| r.len() != e.dims()) {
            return Err(invalid(
                "relations",
                format!("the embeddings do not hold one row per task for {t} tasks"),
            ));
        }
    }
    Ok(())
}

/// Writes `relations.json` and, once there are embeddings,
/// `task_embeddings.csv` into `run_dir` (the plots are drawn by the `mtl`
/// command). Fails when `names`
/// does not hold one name per task.
pub fn write(run_dir: &Path, relations: &Relations, names: &[String]) -> Result<()> {
    check_names(relations, names)?;
    let t = relations.tasks();
    let suggestions = (1..=t.min(SUGGESTED_GROUPS))
        .map(|k| suggest_groups(&relations.affinity, k))
        .collect::<Result<Vec<_>>>()?;
    let saved = SavedRelations {
        tasks: names.to_vec(),
        relations: relations.clone(),
        suggestions,
    };
    let path = run_dir.join(RELATIONS_FILE);
    let json = serde_json::to_string_pretty(&saved).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, json).map_err(io(&path))?;
    if let Some(e) = &relations.embeddings {
        let path = run_dir.join(EMBEDDINGS_FILE);
        std::fs::write(&path, embeddings_csv(names, &e.coords)).map_err(io(&path))?;
    }
    Ok(())
}

/// Reads `relations.json` from `run_dir`; fails when it is missing, damaged
/// or inconsistent.
pub fn read(run_dir: &Path) -> Result<SavedRelations> {
    let path = run_dir.join(RELATIONS_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let damaged = |message: String| TrainError::Checkpoint {
        path: path.clone(),
        message,
    };
    let saved: SavedRelations = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    check_names(&saved.relations, &saved.tasks).map_err(|e| damaged(e.to_string()))?;
    let t = saved.tasks.len();
    for g in &saved.suggestions {
        let mut seen = vec![false; t];
        for &task in g.groups.iter().flatten() {
            if task >= t || std::mem::replace(&mut seen[task], true) {
                return Err(damaged(format!(
                    "a suggested grouping names task {task} twice or out of {t}"
                )));
            }
        }
    }
    Ok(saved)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn embeddings_csv(names: &[String], coords: &[Vec<f64>]) -> String {
    let dims = coords.first().map_or(0, Vec::len);
    let mut out = String::from("task");
    for d in 1..=dims {
        write!(out, ",dim{d}").expect("writing to a string");
    }
    out.push('\n');
    for (name, row) in names.iter().zip(coords) {
        out.push_str(&csv_field(name));
        for v in row {
            write!(out, ",{v}").expect("writing to a string");
        }
        out.push('\n');
    }
    out
}

/// `v` with four decimals, or in scientific notation when it is small.
pub fn number(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The matrix as a table with task names, in fixed or scientific notation
/// depending on the size of its entries.
fn matrix_table(out: &mut String, names: &[String], m: &TaskMatrix) {
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let cell = 11.max(width + 1);
    let small = m.max_abs() < 0.01 && m.max_abs() > 0.0;
    let fmt = |v: f64| {
        if small {
            format!("{v:.3e}")
        } else {
            format!("{v:.4}")
        }
    };
    write!(out, "  {:width$}", "").expect("writing to a string");
    for n in names {
        write!(out, "{n:>cell$}").expect("writing to a string");
    }
    out.push('\n');
    for (i, n) in names.iter().enumerate() {
        write!(out, "  {n:width$}").expect("writing to a string");
        for &v in m.row(i) {
            write!(out, "{:>cell$}", fmt(v)).expect("writing to a string");
        }
        out.push('\n');
    }
}

/// The text `mtl relations` prints: the affinity matrix, the mean cosines,
/// the embeddings and, when given, a suggested grouping.
pub fn render_text(relations: &Relations, names: &[String], grouping: Option<&Grouping>) -> String {
    let mut out = String::new();
    let lr = relations.lookahead_lr.map_or_else(
        || "the optimizer's learning rate".to_string(),
        |lr| format!("lr {lr}"),
    );
    writeln!(
        out,
        "inter-task affinity over {} measured steps (one every {}; SGD look-ahead with {}):\n\
         row: the task whose gradient was stepped; column: the task whose loss changed;\n\
         positive: the step lowered that loss",
        relations.samples, relations.every, lr
    )
    .expect("writing to a string");
    if relations.skipped > 0 {
        writeln!(
            out,
            "  ({} look-aheads left out: a loss became non-finite)",
            relations.skipped
        )
        .expect("writing to a string");
    }
    matrix_table(&mut out, names, &relations.affinity);
    writeln!(
        out,
        "\nmean cosine of the task gradients of the shared parameters:"
    )
    .expect("writing to a string");
    matrix_table(&mut out, names, &relations.cosine_mean);
    match &relations.embeddings {
        Some(e) => {
            let shares: Vec<String> = e
                .explained
                .iter()
                .map(|s| format!("{:.0}%", s * 100.0))
                .collect();
            writeln!(
                out,
                "\ntask embeddings (epoch {}; share of spread per dimension: {}):",
                e.epoch,
                shares.join(", ")
            )
            .expect("writing to a string");
            let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
            for (n, row) in names.iter().zip(&e.coords) {
                write!(out, "  {n:width$}").expect("writing to a string");
                for v in row {
                    write!(out, "{v:>11.4}").expect("writing to a string");
                }
                out.push('\n');
            }
        }
        None => {
            out.push_str("\ntask embeddings: none yet (no epoch with a measured step has ended)\n")
        }
    }
    if let Some(g) = grouping {
        writeln!(
            out,
            "\nsuggested grouping into {} ({} search), total affinity {}:",
            g.groups.len(),
            if g.exhaustive { "exhaustive" } else { "greedy" },
            number(g.score)
        )
        .expect("writing to a string");
        for (k, group) in g.groups.iter().enumerate() {
            let members: Vec<&str> = group
                .iter()
                .map(|&t| names.get(t).map_or("?", String::as_str))
                .collect();
            writeln!(out, "  group {}: {}", k + 1, members.join(", "))
                .expect("writing to a string");
        }
    }
    out
}
