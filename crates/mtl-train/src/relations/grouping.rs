//! Suggested task groupings: the partition of the tasks that maximises the
//! total inter-task affinity.
//!
//! The score follows Fifty et al. (2021): what a task gains from a group is
//! the mean affinity onto it from the group's other members,
//! `(1 / (|G| - 1)) Σ_{i ∈ G, i ≠ j} Z_{i→j}`, and a partition scores the
//! sum of that over all tasks. A task alone in its group gains 0 (there is
//! nobody to learn from), so grouping pays only where the affinity onto a
//! task is positive on average, and a partition into more groups is not
//! favoured for its own sake. (The paper lets groups overlap and gives each
//! task its best group; here every task is in exactly one group, so each
//! group is one model to train.)
//!
//! Up to [`EXHAUSTIVE_MAX_TASKS`] tasks every partition is scored; beyond,
//! a greedy search merges the pair of groups that gains the most (starting
//! from singletons), then moves single tasks between groups while that
//! helps. Ties go to the partition found first, so results are deterministic.

use serde::{Deserialize, Serialize};

use super::{invalid, TaskMatrix};
use crate::error::Result;

/// The most tasks whose partitions are all scored.
pub const EXHAUSTIVE_MAX_TASKS: usize = 10;

/// A partition of the tasks and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grouping {
    /// The groups, each sorted, ordered by their first task.
    pub groups: Vec<Vec<usize>>,
    /// The total affinity ([`group_score`]).
    pub score: f64,
    /// Whether every partition was scored (otherwise the greedy search ran).
    pub exhaustive: bool,
}

/// The score of a partition: for every task in a group of two or more, the
/// mean affinity onto it from the other members, summed over tasks.
pub fn group_score(affinity: &TaskMatrix, groups: &[Vec<usize>]) -> f64 {
    groups.iter().map(|g| one_group(affinity, g)).sum()
}

fn one_group(affinity: &TaskMatrix, group: &[usize]) -> f64 {
    if group.len() < 2 {
        return 0.0;
    }
    let mut total = 0.0;
    for &j in group {
        for &i in group {
            if i != j {
                total += affinity.get(i, j);
            }
        }
    }
    total / (group.len() - 1) as f64
}

fn check(affinity: &TaskMatrix, groups: usize, what: &str) -> Result<()> {
    let t = affinity.tasks();
    if groups == 0 || groups > t {
        return Err(invalid(
            what,
            format!("{groups} groups for {t} tasks: give 1 to {t}"),
        ));
    }
    Ok(())
}

/// The best partition into exactly `groups` groups: every partition is
/// scored up to [`EXHAUSTIVE_MAX_TASKS`] tasks, the greedy search runs beyond.
/// Fails unless `1 <= groups <= tasks`.
pub fn suggest_groups(affinity: &TaskMatrix, groups: usize) -> Result<Grouping> {
    if affinity.tasks() <= EXHAUSTIVE_MAX_TASKS {
        exhaustive_groups(affinity, groups)
    } else {
        greedy_groups(affinity, groups)
    }
}

/// The best partition into at most `budget` groups (models), the number of
/// groups chosen by the score; ties go to fewer groups.
pub fn suggest_within_budget(affinity: &TaskMatrix, budget: usize) -> Result<Grouping> {
    check(affinity, budget, "budget")?;
    let mut best: Option<Grouping> = None;
    for k in 1..=budget {
        let g = suggest_groups(affinity, k)?;
        if best.as_ref().is_none_or(|b| g.score > b.score) {
            best = Some(g);
        }
    }
    Ok(best.expect("the budget is at least 1"))
}

/// Scores every partition into exactly `groups` groups (restricted growth
/// strings, so each partition once). Fails unless `1 <= groups <= tasks` and
/// there are at most [`EXHAUSTIVE_MAX_TASKS`] tasks.
pub fn exhaustive_groups(affinity: &TaskMatrix, groups: usize) -> Result<Grouping> {
    check(affinity, groups, "groups")?;
    let t = affinity.tasks();
    if t > EXHAUSTIVE_MAX_TASKS {
        return Err(invalid(
            "groups",
            format!(
                "{t} tasks are too many to score every partition (at most {EXHAUSTIVE_MAX_TASKS})"
            ),
        ));
    }
    let mut labels = vec![0usize; t];
    let mut best = (f64::NEG_INFINITY, labels.clone());
    enumerate(affinity, groups, &mut labels, 0, 0, &mut best);
    Ok(Grouping {
        groups: from_labels(&best.1, groups),
        score: best.0,
        exhaustive: true,
    })
}

/// Assigns a label to task `pos` and recurses; `used` labels appear in
/// `labels[..pos]`, always `0..used`.
fn enumerate(
    affinity: &TaskMatrix,
    groups: usize,
    labels: &mut [usize],
    pos: usize,
    used: usize,
    best: &mut (f64, Vec<usize>),
) {
    let t = labels.len();
    if pos == t {
        if used == groups {
            let score = labels_score(affinity, labels, groups);
            if score > best.0 {
                *best = (score, labels.to_vec());
            }
        }
        return;
    }
    // Leave enough tasks to open every remaining group.
    if t - pos < groups - used {
        return;
    }
    for label in 0..=used.min(groups - 1) {
        labels[pos] = label;
        enumerate(affinity, groups, labels, pos + 1, used.max(label + 1), best);
    }
}

fn labels_score(affinity: &TaskMatrix, labels: &[usize], groups: usize) -> f64 {
    let mut sizes = vec![0usize; groups];
    for &l in labels {
        sizes[l] += 1;
    }
    let mut total = 0.0;
    for (j, &lj) in labels.iter().enumerate() {
        if sizes[lj] < 2 {
            continue;
        }
        let mut onto = 0.0;
        for (i, &li) in labels.iter().enumerate() {
            if li == lj && i != j {
                onto += affinity.get(i, j);
            }
        }
        total += onto / (sizes[lj] - 1) as f64;
    }
    total
}

fn from_labels(labels: &[usize], groups: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); groups];
    for (task, &l) in labels.iter().enumerate() {
        out[l].push(task);
    }
    canonical(out)
}

fn canonical(mut groups: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    groups.retain(|g| !g.is_empty());
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.sort_by_key(|g| g[0]);
    groups
}

/// The greedy search, for any number of tasks: from singletons, merge the
/// pair of groups whose merge gains the most until `groups` are left, then
/// move single tasks to another group while a move raises the score (no
/// group is emptied). Fails unless `1 <= groups <= tasks`.
pub fn greedy_groups(affinity: &TaskMatrix, groups: usize) -> Result<Grouping> {
    check(affinity, groups, "groups")?;
    let t = affinity.tasks();
    let mut parts: Vec<Vec<usize>> = (0..t).map(|i| vec![i]).collect();
    while parts.len() > groups {
        let mut best: Option<(f64, usize, usize)> = None;
        for a in 0..parts.len() {
            for b in a + 1..parts.len() {
                let merged: Vec<usize> = parts[a].iter().chain(&parts[b]).copied().collect();
                let gain = one_group(affinity, &merged)
                    - one_group(affinity, &parts[a])
                    - one_group(affinity, &parts[b]);
                if best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, a, b));
                }
            }
        }
        let (_, a, b) = best.expect("more than one group is left");
        let moved = parts.remove(b);
        parts[a].extend(moved);
    }
    // Single-task moves, best first, until none helps (bounded for safety).
    for _ in 0..t * t + 10 {
        let mut best: Option<(f64, usize, usize, usize)> = None;
        for from in 0..parts.len() {
            if parts[from].len() < 2 {
                continue;
            }
            let before_from = one_group(affinity, &parts[from]);
            for (pos, &task) in parts[from].iter().enumerate() {
                let rest: Vec<usize> = parts[from].iter().copied().filter(|&x| x != task).collect();
                let left = one_group(affinity, &rest) - before_from;
                for (to, target) in parts.iter().enumerate() {
                    if to == from {
                        continue;
                    }
                    let mut joined = target.clone();
                    joined.push(task);
                    let gain = left + one_group(affinity, &joined) - one_group(affinity, target);
                    if gain > 1e-12 && best.is_none_or(|(g, ..)| gain > g) {
                        best = Some((gain, from, pos, to));
                    }
                }
            }
        }
        let Some((_, from, pos, to)) = best else {
            break;
        };
        let task = parts[from].remove(pos);
        parts[to].push(task);
    }
    let parts = canonical(parts);
    Ok(Grouping {
        score: group_score(affinity, &parts),
        groups: parts,
        exhaustive: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted() -> TaskMatrix {
        // Tasks 0, 2, 4 help each other, so do 1, 3, 5; across, they conflict.
        TaskMatrix::from_fn(6, |i, j| if i % 2 == j % 2 { 0.5 } else { -0.3 }).unwrap()
    }

    #[test]
    fn planted_clusters_are_found_by_both_searches() {
        let a = planted();
        let want = vec![vec![0, 2, 4], vec![1, 3, 5]];
        let e = exhaustive_groups(&a, 2).unwrap();
        assert_eq!(e.groups, want);
        assert!((e.score - 3.0).abs() < 1e-12, "{}", e.score);
        let g = greedy_groups(&a, 2).unwrap();
        assert_eq!(g.groups, want);
        assert_eq!(g.score, e.score);
        assert_eq!(suggest_within_budget(&a, 6).unwrap().groups, want);
    }

    #[test]
    fn group_counts_are_checked() {
        let a = planted();
        assert!(suggest_groups(&a, 0).is_err());
        assert!(suggest_groups(&a, 7).is_err());
        assert_eq!(suggest_groups(&a, 6).unwrap().score, 0.0);
        assert_eq!(
            suggest_groups(&a, 1).unwrap().groups,
            vec![(0..6).collect::<Vec<_>>()]
        );
    }
}
