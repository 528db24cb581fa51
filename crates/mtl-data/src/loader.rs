//! [`DataLoader`]: seeded, reshuffled-every-epoch batches assembled in
//! parallel.
//!
//! The order of epoch `e` is the rows shuffled by a ChaCha8 generator seeded
//! with `seed` on stream `e`, so it depends on the seed and the epoch only.
//! Batches are assembled [`PREFETCH_BATCHES`] at a time on the rayon pool;
//! each batch is a pure function of its rows, so the batches are bit-identical
//! whatever the number of threads.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::Batch;
use crate::error::{DataError, Result};
use crate::source::BatchSource;

/// How many batches are assembled together on the rayon pool. Below
/// [`PARALLEL_ELEMENTS`] feature values per batch they are assembled on the
/// calling thread.
pub const PREFETCH_BATCHES: usize = 8;

/// Feature values per batch above which batches are assembled in parallel:
/// copying 16 384 floats takes a few microseconds, the order of a rayon
/// fork-join.
pub const PARALLEL_ELEMENTS: usize = 1 << 14;

/// Loader settings, as a run configuration writes them under `[loader]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Examples per batch (default 64).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Reshuffle every epoch (default true); false keeps the given order.
    #[serde(default = "default_shuffle")]
    pub shuffle: bool,
    /// Drop the last batch when it is smaller than `batch_size` (default false).
    #[serde(default)]
    pub drop_last: bool,
    /// Seed of the shuffle (default 0).
    #[serde(default)]
    pub seed: u64,
}

fn default_batch_size() -> usize {
    64
}

fn default_shuffle() -> bool {
    true
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: default_batch_size(),
            shuffle: default_shuffle(),
            drop_last: false,
            seed: 0,
        }
    }
}

/// Batches of a subset of a data set's rows, epoch after epoch.
///
/// ```
/// use mtl_data::{datasets, DataLoader, LoaderConfig};
///
/// let ds = datasets::load("linnerud", 0).unwrap();
/// let rows: Vec<usize> = (0..ds.len()).collect();
/// let config = LoaderConfig { batch_size: 8, seed: 3, ..LoaderConfig::default() };
/// let loader = DataLoader::new(&ds, &rows, config).unwrap();
/// let sizes: Vec<usize> = loader.epoch(0).map(|b| b.unwrap().len()).collect();
/// assert_eq!(sizes, vec![8, 8, 4]);
/// ```
#[derive(Clone)]
pub struct DataLoader<'a> {
    dataset: &'a dyn BatchSource,
    rows: Vec<usize>,
    config: LoaderConfig,
}

impl<'a> DataLoader<'a> {
    /// A loader over rows `rows` of `dataset` (for example a split's
    /// training part): a [`Dataset`](crate::Dataset) or any other
    /// [`BatchSource`]. Fails on a zero batch size or an out-of-range row.
    pub fn new(dataset: &'a dyn BatchSource, rows: &[usize], config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::invalid(
                "loader batch_size",
                "must be at least 1",
            ));
        }
        if let Some(&i) = rows.iter().find(|&&i| i >= dataset.len()) {
            return Err(DataError::invalid(
                "loader rows",
                format!(
                    "row {i} is out of range for data set {:?} of {} rows",
                    dataset.name(),
                    dataset.len()
                ),
            ));
        }
        Ok(DataLoader {
            dataset,
            rows: rows.to_vec(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The number of rows the loader draws from.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The number of batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let b = self.config.batch_size;
        if self.config.drop_last {
            self.rows.len() / b
        } else {
            self.rows.len().div_ceil(b)
        }
    }

    /// The order in which epoch `epoch` visits the rows.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.rows.clone();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
            rng.set_stream(epoch);
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> Epoch<'_> {
        let mut order = self.order(epoch);
        order.truncate(self.batches_per_epoch() * self.config.batch_size);
        Epoch {
            dataset: self.dataset,
            order,
            batch_size: self.config.batch_size,
            next: 0,
            ready: Vec::new(),
        }
    }
}

impl std::fmt::Debug for DataLoader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("source", &self.dataset.name())
            .field("rows", &self.rows.len())
            .field("config", &self.config)
            .finish()
    }
}

impl std::fmt::Debug for Epoch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("source", &self.dataset.name())
            .field("rows", &self.order.len())
            .field("next", &self.next)
            .finish()
    }
}

/// The batches of one epoch; an iterator of `Result<Batch>`.
pub struct Epoch<'a> {
    dataset: &'a dyn BatchSource,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    /// Assembled batches not yet returned, last batch first.
    ready: Vec<Result<Batch>>,
}

impl Epoch<'_> {
    fn refill(&mut self) {
        let chunks: Vec<&[usize]> = self.order[self.next..]
            .chunks(self.batch_size)
            .take(PREFETCH_BATCHES)
            .collect();
        self.next += chunks.iter().map(|c| c.len()).sum::<usize>();
        let per_batch = self.batch_size * self.dataset.feature_shape().iter().product::<usize>();
        let mut batches: Vec<Result<Batch>> = if per_batch >= PARALLEL_ELEMENTS && chunks.len() > 1
        {
            chunks
                .par_iter()
                .map(|rows| self.dataset.gather(rows))
                .collect()
        } else {
            chunks
                .iter()
                .map(|rows| self.dataset.gather(rows))
                .collect()
        };
        batches.reverse();
        self.ready = batches;
    }
}

impl Iterator for Epoch<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.ready.is_empty() && self.next < self.order.len() {
            self.refill();
        }
        self.ready.pop()
    }
}
