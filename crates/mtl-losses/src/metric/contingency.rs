//! The contingency table of two partitions, on which NMI and ARI are computed.

use std::collections::BTreeMap;

use super::input::check_pair;
use crate::error::Result;

/// Counts `n_ij` of the examples in group `i` of the first labelling and group
/// `j` of the second, with the group sizes `a_i = Σ_j n_ij`, `b_j = Σ_i n_ij`.
/// Labels are arbitrary integers; only which examples share one matters.
pub(crate) struct Contingency {
    /// The non-zero `n_ij`.
    pub cells: Vec<usize>,
    /// Group sizes `a_i` of the first labelling.
    pub rows: Vec<usize>,
    /// Group sizes `b_j` of the second labelling.
    pub cols: Vec<usize>,
    /// The number of examples `n`.
    pub n: usize,
}

impl Contingency {
    /// The table of `a` against `b`; `metric` names the caller in errors.
    pub fn new(metric: &'static str, a: &[usize], b: &[usize]) -> Result<Contingency> {
        check_pair(metric, a.len(), b.len())?;
        let mut cells = BTreeMap::<(usize, usize), usize>::new();
        let mut rows = BTreeMap::<usize, usize>::new();
        let mut cols = BTreeMap::<usize, usize>::new();
        for (&i, &j) in a.iter().zip(b) {
            *cells.entry((i, j)).or_default() += 1;
            *rows.entry(i).or_default() += 1;
            *cols.entry(j).or_default() += 1;
        }
        Ok(Contingency {
            cells: cells.into_values().collect(),
            rows: rows.into_values().collect(),
            cols: cols.into_values().collect(),
            n: a.len(),
        })
    }
}
