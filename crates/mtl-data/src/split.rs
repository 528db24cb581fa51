//! Seeded train/validation/test splits, stratified on request, and k-fold.
//!
//! Every function draws from a ChaCha8 generator seeded with `seed`, so the
//! same arguments give the same split on every machine. Part sizes are
//! `round(n * fraction)` for validation and test; training takes the rest.
//! Stratified splits apply the same rule within each class, so each class's
//! proportions in each part are within one example of the requested ones.
//! The indices of each part are returned in increasing order.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Row indices of the three parts of a data set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows (model selection, early stopping).
    pub validation: Vec<usize>,
    /// Test rows (reported once at the end).
    pub test: Vec<usize>,
}

/// How to split a data set, as a run configuration writes it:
/// `[split]` with `validation = 0.1`, `test = 0.2`, `seed = 0`,
/// `stratify = "digit"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction of rows for validation (default 0.1).
    #[serde(default = "default_validation")]
    pub validation: f64,
    /// Fraction of rows for test (default 0.2).
    #[serde(default = "default_test")]
    pub test: f64,
    /// Seed of the shuffle (default 0).
    #[serde(default)]
    pub seed: u64,
    /// A classification task to stratify by (default none).
    #[serde(default)]
    pub stratify: Option<String>,
}

fn default_validation() -> f64 {
    0.1
}

fn default_test() -> f64 {
    0.2
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            validation: default_validation(),
            test: default_test(),
            seed: 0,
            stratify: None,
        }
    }
}

impl SplitConfig {
    /// Checks the fractions.
    pub fn validate(&self) -> Result<()> {
        check_fractions(self.validation, self.test)
    }

    /// Splits `dataset`, stratified by the configured task if any.
    pub fn split(&self, dataset: &Dataset) -> Result<Split> {
        match &self.stratify {
            Some(task) => stratified(
                dataset.class_labels(task)?,
                self.validation,
                self.test,
                self.seed,
            ),
            None => random(dataset.len(), self.validation, self.test, self.seed),
        }
    }
}

fn check_fractions(validation: f64, test: f64) -> Result<()> {
    let ok = |f: f64| f.is_finite() && (0.0..1.0).contains(&f);
    if !ok(validation) || !ok(test) || validation + test >= 1.0 {
        return Err(DataError::invalid(
            "split fractions",
            format!(
                "validation {validation} and test {test} must each be in [0, 1) and sum to less than 1"
            ),
        ));
    }
    Ok(())
}

fn part_sizes(n: usize, validation: f64, test: f64) -> (usize, usize) {
    let n_test = (n as f64 * test).round() as usize;
    let n_val = ((n as f64 * validation).round() as usize).min(n - n_test);
    (n_val, n_test)
}

/// Splits rows `0..n` at random: `round(n * validation)` validation rows,
/// `round(n * test)` test rows, the rest for training.
///
/// ```
/// let s = mtl_data::split::random(100, 0.1, 0.2, 7).unwrap();
/// assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (70, 10, 20));
/// ```
pub fn random(n: usize, validation: f64, test: f64, seed: u64) -> Result<Split> {
    check_fractions(validation, test)?;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (n_val, n_test) = part_sizes(n, validation, test);
    let mut split = Split {
        test: order[..n_test].to_vec(),
        validation: order[n_test..n_test + n_val].to_vec(),
        train: order[n_test + n_val..].to_vec(),
    };
    split.sort();
    Ok(split)
}

/// Splits rows so that each class of `labels` (one per row) is divided in
/// the requested proportions.
pub fn stratified(labels: &[usize], validation: f64, test: f64, seed: u64) -> Result<Split> {
    check_fractions(validation, test)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split::default();
    for members in class_members(labels) {
        let mut members = members;
        members.shuffle(&mut rng);
        let (n_val, n_test) = part_sizes(members.len(), validation, test);
        split.test.extend_from_slice(&members[..n_test]);
        split
            .validation
            .extend_from_slice(&members[n_test..n_test + n_val]);
        split.train.extend_from_slice(&members[n_test + n_val..]);
    }
    split.sort();
    Ok(split)
}

/// `k` folds of rows `0..n`: fold `i` validates on the `i`-th of `k` nearly
/// equal random parts (sizes differ by at most one) and trains on the rest;
/// `test` is empty. Every row is validated on exactly once.
pub fn k_fold(n: usize, k: usize, seed: u64) -> Result<Vec<Split>> {
    if k < 2 || k > n {
        return Err(DataError::invalid(
            "k-fold",
            format!("k = {k} must be between 2 and the number of rows {n}"),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let bounds: Vec<usize> = (0..=k).map(|i| i * n / k).collect();
    Ok((0..k)
        .map(|i| {
            let mut split = Split {
                train: order[..bounds[i]]
                    .iter()
                    .chain(&order[bounds[i + 1]..])
                    .copied()
                    .collect(),
                validation: order[bounds[i]..bounds[i + 1]].to_vec(),
                test: Vec::new(),
            };
            split.sort();
            split
        })
        .collect())
}

/// Row indices of each class, in increasing order, for classes `0..=max`.
/// The rows of each class, in increasing class order; unlabelled rows
/// ([`mtl_core::MISSING_CLASS`]) form the last group. Any label value is
/// accepted: nothing is allocated per possible class.
fn class_members(labels: &[usize]) -> Vec<Vec<usize>> {
    let mut members = std::collections::BTreeMap::<usize, Vec<usize>>::new();
    for (i, &c) in labels.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    members.into_values().collect()
}

impl Split {
    fn sort(&mut self) {
        self.train.sort_unstable();
        self.validation.sort_unstable();
        self.test.sort_unstable();
    }

    /// Moves `round(len(train) * fraction)` random training rows into
    /// validation (for data sets that come with only training and test parts).
    pub fn carve_validation(&self, fraction: f64, seed: u64) -> Result<Split> {
        check_fractions(fraction, 0.0)?;
        let mut train = self.train.clone();
        train.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_val = (train.len() as f64 * fraction).round() as usize;
        let mut split = Split {
            validation: self
                .validation
                .iter()
                .chain(&train[..n_val])
                .copied()
                .collect(),
            train: train[n_val..].to_vec(),
            test: self.test.clone(),
        };
        split.sort();
        Ok(split)
    }

    /// Checks that every index is below `n` and no row is in two parts.
    pub fn check(&self, n: usize) -> Result<()> {
        let mut seen = vec![false; n];
        for (part, rows) in [
            ("train", &self.train),
            ("validation", &self.validation),
            ("test", &self.test),
        ] {
            for &i in rows {
                if i >= n {
                    return Err(DataError::invalid(
                        "split",
                        format!("{part} row {i} is out of range for {n} rows"),
                    ));
                }
                if std::mem::replace(&mut seen[i], true) {
                    return Err(DataError::invalid(
                        "split",
                        format!("row {i} appears twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The parts with their names, in the order train, validation, test.
    pub fn parts(&self) -> [(&'static str, &[usize]); 3] {
        [
            ("train", &self.train),
            ("validation", &self.validation),
            ("test", &self.test),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn random_split_sizes_and_seed() {
        let a = random(1000, 0.15, 0.25, 3).unwrap();
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (600, 150, 250)
        );
        a.check(1000).unwrap();
        assert_eq!(a, random(1000, 0.15, 0.25, 3).unwrap());
        assert_ne!(a, random(1000, 0.15, 0.25, 4).unwrap());
        assert!(random(10, 0.6, 0.5, 0).is_err());
        assert!(random(10, -0.1, 0.5, 0).is_err());
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        // 3 classes of 100, 200 and 50 rows, interleaved.
        let labels: Vec<usize> = (0..350)
            .map(|i| if i < 300 { (i % 3).min(1) } else { 2 })
            .collect();
        let counts = |rows: &[usize]| {
            let mut c = [0usize; 3];
            rows.iter().for_each(|&i| c[labels[i]] += 1);
            c
        };
        assert_eq!(counts(&(0..350).collect::<Vec<_>>()), [100, 200, 50]);
        let s = stratified(&labels, 0.1, 0.2, 11).unwrap();
        s.check(350).unwrap();
        assert_eq!(counts(&s.test), [20, 40, 10]);
        assert_eq!(counts(&s.validation), [10, 20, 5]);
        assert_eq!(counts(&s.train), [70, 140, 35]);
    }

    #[test]
    fn carving_validation_keeps_test() {
        let s = Split {
            train: (0..80).collect(),
            validation: vec![],
            test: (80..100).collect(),
        };
        let c = s.carve_validation(0.25, 1).unwrap();
        assert_eq!((c.train.len(), c.validation.len()), (60, 20));
        assert_eq!(c.test, s.test);
        c.check(100).unwrap();
    }

    #[test]
    fn split_config_reads_from_toml() {
        let c: SplitConfig = toml::from_str("test = 0.3\nstratify = \"digit\"").unwrap();
        assert_eq!(c.validation, 0.1);
        assert_eq!(c.test, 0.3);
        assert_eq!(c.stratify.as_deref(), Some("digit"));
        let err = toml::from_str::<SplitConfig>("tset = 0.3").unwrap_err();
        assert!(err.to_string().contains("tset"), "{err}");
    }

    proptest! {
        #[test]
        fn k_fold_validates_every_row_once(n in 2usize..200, k in 2usize..10, seed in 0u64..1000) {
            prop_assume!(k <= n);
            let folds = k_fold(n, k, seed).unwrap();
            let mut hits = vec![0usize; n];
            for f in &folds {
                f.check(n).unwrap();
                prop_assert_eq!(f.train.len() + f.validation.len(), n);
                prop_assert!(f.validation.len() == n / k || f.validation.len() == n / k + 1);
                f.validation.iter().for_each(|&i| hits[i] += 1);
            }
            prop_assert!(hits.iter().all(|&h| h == 1));
        }

        #[test]
        fn random_split_is_a_partition(n in 0usize..300, v in 0.0f64..0.45, t in 0.0f64..0.45, seed in 0u64..100) {
            let s = random(n, v, t, seed).unwrap();
            s.check(n).unwrap();
            prop_assert_eq!(s.train.len() + s.validation.len() + s.test.len(), n);
        }
    }
}
