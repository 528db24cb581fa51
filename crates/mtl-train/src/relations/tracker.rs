//! [`RelationTracker`]: measures affinities, gradient cosines and task
//! directions while a run trains, and [`Relations`], what it has measured.

use mtl_data::Batch;
use serde::{Deserialize, Serialize};

use super::{invalid, TaskEmbeddings, TaskMatrix};
use crate::error::Result;
use crate::trainer::{cosine_matrix, Trainer};

/// What a tracker has measured so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relations {
    /// Mean inter-task affinity over the sampled steps: entry `(i, j)` is
    /// `Z_{i→j} = 1 - L_j(after a step along task i's gradient) / L_j(before)`.
    pub affinity: TaskMatrix,
    /// Mean cosine similarity of the tasks' shared-parameter gradients over
    /// the sampled steps.
    pub cosine_mean: TaskMatrix,
    /// Embeddings from the last epoch with a sampled step, if any.
    pub embeddings: Option<TaskEmbeddings>,
    /// Steps measured.
    pub samples: u64,
    /// A step was measured whenever the trainer's step count was a multiple
    /// of this.
    pub every: u64,
    /// Look-aheads left out because a loss became non-finite.
    pub skipped: u64,
    /// The fixed look-ahead learning rate, or `None` for the optimizer's
    /// current one.
    pub lookahead_lr: Option<f64>,
}

impl Relations {
    /// The number of tasks.
    pub fn tasks(&self) -> usize {
        self.affinity.tasks()
    }
}

/// Sums of the unit-length task gradients of the current epoch.
#[derive(Clone, Debug, Default, PartialEq)]
struct EpochDirections {
    sums: Vec<Vec<f64>>,
    counts: Vec<u64>,
}

/// Follows a run and measures task relations every `k` steps.
///
/// Call [`RelationTracker::observe_step`] with every training batch just
/// before [`Trainer::train_step`] runs on it (so the look-ahead starts from
/// the parameters the step starts from, with the same dropout mask, as in
/// Fifty et al.), and [`RelationTracker::end_epoch`] once per epoch before
/// the checkpoint is written. The tracker serialises to JSON for the
/// checkpoint: the running sums are kept exactly, so a resumed run measures
/// the same values as an uninterrupted one. The current epoch's gradient
/// directions are not serialised; they are empty after
/// [`RelationTracker::end_epoch`], which is where checkpoints are taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationTracker {
    tasks: usize,
    every: u64,
    lookahead_lr: Option<f64>,
    /// Measure on the first this many rows of a batch (all when `None`).
    #[serde(default)]
    rows: Option<usize>,
    affinity_sum: Vec<f64>,
    affinity_count: Vec<u64>,
    cosine_sum: Vec<f64>,
    samples: u64,
    skipped: u64,
    embeddings: Option<TaskEmbeddings>,
    #[serde(skip)]
    epoch: EpochDirections,
}

impl RelationTracker {
    /// A tracker for `task_count` tasks measuring every `every_k_steps`-th
    /// step (the steps whose number, from 0, is a multiple of it). Fails
    /// when `every_k_steps` is 0.
    pub fn new(task_count: usize, every_k_steps: u64) -> Result<Self> {
        if every_k_steps == 0 {
            return Err(invalid("relations every", "must be at least 1 step"));
        }
        Ok(RelationTracker {
            tasks: task_count,
            every: every_k_steps,
            lookahead_lr: None,
            rows: None,
            affinity_sum: vec![0.0; task_count * task_count],
            affinity_count: vec![0; task_count * task_count],
            cosine_sum: vec![0.0; task_count * task_count],
            samples: 0,
            skipped: 0,
            embeddings: None,
            epoch: EpochDirections::default(),
        })
    }

    /// Uses `lr` for the look-ahead step instead of the optimizer's current
    /// learning rate (useful with adaptive optimizers, whose rates are much
    /// smaller than a useful SGD step). Fails unless `lr` is positive and
    /// finite.
    pub fn with_lookahead_lr(mut self, lr: f64) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(invalid(
                "relations lookahead_lr",
                format!("{lr} is not a positive learning rate"),
            ));
        }
        self.lookahead_lr = Some(lr);
        Ok(self)
    }

    /// Measures on the first `rows` rows of each sampled batch (a batch is
    /// already a shuffled sample, so these are a smaller random sample): the
    /// per-task gradients and look-ahead passes then cost `rows / batch` of
    /// a full measurement. Fails when `rows` is 0.
    pub fn with_rows(mut self, rows: usize) -> Result<Self> {
        if rows == 0 {
            return Err(invalid("relations rows", "must be at least 1 row"));
        }
        self.rows = Some(rows);
        Ok(self)
    }

    /// The number of tasks.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// How often a step is measured.
    pub fn every(&self) -> u64 {
        self.every
    }

    /// Steps measured so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Measures `batch` at the trainer's current parameters when the
    /// trainer's step count is a multiple of `every`: the task gradients of
    /// the shared parameters (one backward pass per task), their cosines,
    /// their directions for the embeddings, and one look-ahead forward pass
    /// per task for the affinities. Returns whether the step was measured.
    /// The trainer's parameters, buffers and state are left exactly as they
    /// were.
    pub fn observe_step(&mut self, trainer: &mut Trainer, batch: &Batch) -> Result<bool> {
        let t = self.tasks;
        if trainer.tasks.len() != t {
            return Err(invalid(
                "relations",
                format!(
                    "the tracker follows {t} tasks but the trainer has {}",
                    trainer.tasks.len()
                ),
            ));
        }
        let cells = t * t;
        if self.every == 0
            || self.affinity_sum.len() != cells
            || self.affinity_count.len() != cells
            || self.cosine_sum.len() != cells
        {
            return Err(invalid(
                "relations",
                format!("the tracker's state does not describe {t} tasks"),
            ));
        }
        if !trainer.step.is_multiple_of(self.every) {
            return Ok(false);
        }
        let head;
        let batch = match self.rows {
            Some(n) if n < batch.len() => {
                let rows: Vec<usize> = (0..n).collect();
                head = Batch {
                    x: batch.x.gather_rows(&rows)?,
                    targets: batch
                        .targets
                        .iter()
                        .map(|t| t.gather(&rows))
                        .collect::<std::result::Result<_, _>>()?,
                    indices: batch.indices[..n].to_vec(),
                };
                &head
            }
            _ => batch,
        };
        let (losses, rows) = trainer.shared_task_gradients(batch)?;
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            // The training step reports the divergence; nothing to measure.
            self.skipped += 1;
            return Ok(false);
        }
        let lr = self.lookahead_lr.unwrap_or_else(|| trainer.optimizer.lr()) as f32;
        let mut after = Vec::with_capacity(t);
        for row in &rows {
            after.push(trainer.lookahead_losses(batch, row, lr)?);
        }
        for (c, s) in cosine_matrix(&rows).iter().zip(&mut self.cosine_sum) {
            *s += *c as f64;
        }
        for (i, after_i) in after.iter().enumerate() {
            let Some(after_i) = after_i else {
                self.skipped += 1;
                continue;
            };
            for j in 0..t {
                let before = losses[j] as f64;
                let z = 1.0 - after_i[j] as f64 / before;
                if before > 0.0 && z.is_finite() {
                    self.affinity_sum[i * t + j] += z;
                    self.affinity_count[i * t + j] += 1;
                }
            }
        }
        let width = rows.first().map_or(0, Vec::len);
        if self.epoch.sums.len() != t {
            self.epoch = EpochDirections {
                sums: vec![vec![0.0; width]; t],
                counts: vec![0; t],
            };
        }
        for (task, row) in rows.iter().enumerate() {
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 && self.epoch.sums[task].len() == width {
                for (s, &v) in self.epoch.sums[task].iter_mut().zip(row) {
                    *s += v as f64 / norm;
                }
                self.epoch.counts[task] += 1;
            }
        }
        self.samples += 1;
        Ok(true)
    }

    /// Closes epoch `epoch` (from 1): when any step of it was measured, the
    /// embeddings are recomputed from its mean task directions.
    pub fn end_epoch(&mut self, epoch: usize) {
        let directions = std::mem::take(&mut self.epoch);
        if directions.counts.iter().all(|&c| c == 0) {
            return;
        }
        let means: Vec<Vec<f64>> = directions
            .sums
            .into_iter()
            .zip(&directions.counts)
            .map(|(s, &c)| {
                let c = c.max(1) as f64;
                s.into_iter().map(|v| v / c).collect()
            })
            .collect();
        self.embeddings = Some(TaskEmbeddings::from_directions(&means, epoch));
    }

    /// The mean affinity and cosine matrices so far and the last embeddings.
    pub fn relations(&self) -> Relations {
        let t = self.tasks;
        let affinity = self
            .affinity_sum
            .iter()
            .zip(&self.affinity_count)
            .map(|(&s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
            .collect();
        let cosine = self
            .cosine_sum
            .iter()
            .map(|&s| s / self.samples.max(1) as f64)
            .collect();
        Relations {
            affinity: TaskMatrix::from_row_major(t, affinity)
                .unwrap_or_else(|_| TaskMatrix::zeros(t)),
            cosine_mean: TaskMatrix::from_row_major(t, cosine)
                .unwrap_or_else(|_| TaskMatrix::zeros(t)),
            embeddings: self.embeddings.clone(),
            samples: self.samples,
            every: self.every,
            skipped: self.skipped,
            lookahead_lr: self.lookahead_lr,
        }
    }
}
