//! Synchronous data parallelism: the same run on `W` ranks of a
//! [`Communicator`] (MPI processes, or threads in tests).
//!
//! Every rank holds the whole model, builds the same seeded data order and
//! receives every global batch; it computes the contiguous shard
//! [`shard_range`]`(B, rank, W)` of it. A task's loss on a shard is the mean
//! over the shard's labelled rows; weighted by `labelled(shard) /
//! labelled(batch)` it becomes the shard's share of the mean over the global
//! batch, so the sums over ranks are the losses and gradients of the global
//! batch. What is exchanged follows the balancer's need:
//!
//! - losses only: all-reduce the `T` losses, balance, backward with the
//!   weights, all-reduce the `P` gradient values;
//! - the last shared layer (GradNorm): all-reduce the task rows of that
//!   layer (small) with the losses, then as above;
//! - the representation (MGDA-UB): the representation rows of the ranks are
//!   disjoint columns of the global rows, so the `T × T` Gram is all-reduced
//!   and a balancer that supports column shards solves on its own columns;
//!   otherwise the rows are all-gathered. Backward from the representation
//!   with the shard's part of the direction, all-reduce the gradient;
//! - the shared parameters: with column shards, [`ShardedRows`]
//!   (reduce-scatter the rows, all-reduce the Gram of the owned slices,
//!   all-gather the direction); otherwise all-reduce the full rows. Head
//!   gradients are all-reduced;
//! - a second training batch (MoDo, SDMGrad) or a validation look-ahead
//!   (Auto-Lambda): each rank computes its shard of the extra batch, scaled
//!   like the step's, and the `T` losses and `T × P_s` rows are all-reduced
//!   (for the look-ahead, once at `θ` to move the shared parameters and once
//!   at `θ'`); such a balancer then reads full rows, not column shards.
//!
//! A task without a label anywhere in the global batch is absent on every
//! rank, as in one process.
//!
//! Every rank runs the balancer on identical numbers with the same RNG
//! stream, so the parameters stay identical on every rank.
//!
//! Choices: batch-norm statistics are those of the shard (each rank
//! normalises with its own rows); the running statistics are averaged over
//! the ranks after every step so they stay identical. Dropout masks come from
//! the step's seed on every rank, so with dropout a `W`-rank run is a
//! different (equally valid) draw than the one-rank run. Evaluation runs
//! the model on a contiguous share of the rows on each rank and all-gathers
//! the head outputs, so every rank scores the whole split bit for bit as one
//! process does ([`Trainer::evaluate`]). Only rank 0 writes files; the
//! outcome of its writes, and every hook's error or stop, is agreed by all
//! ranks so that they stop together. With `W = 1` none of this runs:
//! [`Trainer::train_step`] is the single-process code.

use std::ops::Range;

use mtl_core::{Tensor, Var};
use mtl_data::Batch;
use mtl_dist::{shard_range, Communicator, Failure, ShardedRows};
use mtl_losses::balance::gram::gram;
use mtl_losses::balance::ColumnShard;
use mtl_losses::balance::{LookAhead, SecondBatch};
use mtl_losses::{BalanceInput, GradRows, GradientSource};

use crate::error::{Result, TrainError};
use crate::hook::Control;
use crate::trainer::{weighted_rows, StepBatches, StepLog, Trainer};

/// The step's inputs besides the rows, identical on every rank: which tasks
/// have labels in the global batch, and the global second batch's or
/// look-ahead's losses and shared-parameter rows (`T × P_s`, summed over the
/// ranks).
struct StepExtras {
    step: u64,
    epoch: u64,
    present: Vec<bool>,
    second: Option<(Vec<f32>, Vec<f32>)>,
    lookahead: Option<(f64, Vec<f32>, Vec<f32>)>,
    shared_len: usize,
}

impl StepExtras {
    /// The balancer's input for the summed `losses`.
    fn input<'a>(&'a self, losses: &'a [f32]) -> Result<BalanceInput<'a>> {
        let t_count = losses.len();
        let mut input = BalanceInput::from_losses(losses).at(self.step, self.epoch);
        if self.present.iter().any(|p| !p) {
            input = input.with_present(&self.present);
        }
        if let Some((l, rows)) = &self.second {
            input = input.with_second(SecondBatch {
                losses: l,
                grads: GradRows::new(rows, t_count, self.shared_len)?,
            });
        }
        if let Some((lr, l, rows)) = &self.lookahead {
            input = input.with_lookahead(LookAhead {
                lr: *lr,
                losses: l,
                grads: GradRows::new(rows, t_count, self.shared_len)?,
            });
        }
        Ok(input)
    }

    /// Whether the balancer may work on column shards of the rows: not when
    /// it also reads full rows of another batch.
    fn allow_column_shards(&self) -> bool {
        self.second.is_none() && self.lookahead.is_none()
    }
}

/// The process exit status a failure calls for: 1 for divergence, 2 for
/// anything else (bad input, configuration, files).
pub fn exit_code(e: &TrainError) -> i32 {
    match e {
        TrainError::Diverged { .. } => 1,
        TrainError::Rank(f) => f.failure.exit_code,
        _ => 2,
    }
}

/// Rows of `batch` in `rows`, features and targets.
fn shard_batch(batch: &Batch, rows: Range<usize>) -> Result<Batch> {
    let n = batch.len();
    let width = batch.x.len() / n.max(1);
    let mut shape = batch.x.shape().to_vec();
    if let Some(first) = shape.first_mut() {
        *first = rows.len();
    }
    let x = Tensor::from_vec(
        batch.x.data()[rows.start * width..rows.end * width].to_vec(),
        &shape,
    )?;
    let idx: Vec<usize> = rows.clone().collect();
    let targets = batch
        .targets
        .iter()
        .map(|t| t.gather(&idx))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(TrainError::Core)?;
    Ok(Batch {
        x,
        targets,
        indices: batch.indices[rows].to_vec(),
    })
}

/// What one rank computed on its shard before the first exchange.
struct Local {
    loss_vars: Vec<Var>,
    /// Scaled losses (the shard's share of the global mean).
    losses: Vec<f32>,
    rep: Option<Var>,
    /// Each task's gradient of the parameters after the shared ones
    /// (row-major, unscaled; for the balancers that weight per-task
    /// gradients, empty for the others).
    heads: Vec<f32>,
    /// Scaled task rows (last shared layer, representation or shared
    /// parameters, by need); empty for losses only.
    rows: Vec<f32>,
}

impl Trainer {
    /// The group of ranks this trainer trains with.
    pub fn communicator(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    /// Whether this rank writes files (rank 0).
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// `result` if it is `Ok` on every rank; otherwise every rank returns
    /// the failure of the lowest failing rank ([`TrainError::Rank`]).
    pub(crate) fn agreed<T>(&self, result: Result<T>) -> Result<T> {
        if self.comm.size() == 1 {
            return result;
        }
        let local = result
            .as_ref()
            .err()
            .map(|e| Failure::new(exit_code(e), e.to_string()));
        match self.comm.agree(local)? {
            None => result,
            Some(f) => Err(TrainError::Rank(f)),
        }
    }

    /// [`Trainer::agreed`] for the hooks' verdict: an error on any rank is
    /// every rank's error, and a stop asked on any rank stops every rank
    /// (hooks may differ between ranks: rank 0 alone reports). One
    /// all-reduce of two values when every rank succeeds.
    pub(crate) fn agreed_control(&self, result: Result<Control>) -> Result<Control> {
        if self.comm.size() == 1 {
            return result;
        }
        let mut votes = [
            f64::from(u8::from(result.is_err())),
            f64::from(u8::from(matches!(result, Ok(Control::Stop)))),
        ];
        self.comm.all_reduce_sum_f64(&mut votes)?;
        if votes[0] > 0.0 {
            return self.agreed(result);
        }
        Ok(if votes[1] > 0.0 {
            Control::Stop
        } else {
            Control::Continue
        })
    }

    /// Checks, on every rank, that the ranks run the same configuration
    /// (`description` hashed and compared) and that a global batch of
    /// `batch_size` rows (and a last one of `last` rows, 0 for none) has a
    /// row for every rank.
    pub(crate) fn check_parallel_start(
        &self,
        description: &str,
        batch_size: usize,
        last: usize,
    ) -> Result<()> {
        let size = self.comm.size();
        if size == 1 {
            return Ok(());
        }
        mtl_dist::check_same_config(
            self.comm.as_ref(),
            mtl_dist::config_hash(description.as_bytes()),
        )?;
        for rows in [batch_size, last] {
            if rows > 0 && rows < size {
                return Err(mtl_dist::DistError::MoreRanksThanRows { size, rows }.into());
            }
        }
        Ok(())
    }

    /// One data-parallel optimisation step on the global `batch`: this rank
    /// computes its shard, the ranks exchange what the balancer needs (see
    /// the module docs), and every rank applies the same update.
    pub(crate) fn parallel_step(
        &mut self,
        batch: &Batch,
        epoch: u64,
        extra: &StepBatches<'_>,
    ) -> Result<StepLog> {
        let begun = self.model.begin_step(&mut self.ps, self.step, epoch);
        self.agreed(begun.map_err(TrainError::from))?;
        let extras = self.step_extras(batch, epoch, extra)?;
        let rows = shard_range(batch.len(), self.comm.rank(), self.comm.size())?;
        let shard = shard_batch(batch, rows.clone())?;
        let scale = self.shard_scale(batch, &shard);
        let local = self.local_phase(&shard, &scale);
        let mut local = self.agreed(local)?;
        let t_count = self.tasks.len();
        let mut losses = local.losses.clone();
        let mut grads = std::mem::take(&mut self.grads);
        grads.clear();
        grads.resize(self.ps.len(), 0.0);
        let needs = self.balancer.needs();
        let result = self.exchange(&mut local, &mut losses, &scale, rows, &extras, &mut grads);
        // The rows' buffer serves the next step (its contents are rewritten).
        self.rows = std::mem::take(&mut local.rows);
        let weights = match self.agreed(result) {
            Ok(w) => w,
            Err(e) => {
                self.grads = grads;
                return Err(e);
            }
        };
        match needs {
            GradientSource::SharedParameters => {
                let heads = self.shared_range().end..self.ps.len();
                self.comm.all_reduce_sum_f32(&mut grads[heads])?;
            }
            _ => self.comm.all_reduce_sum_f32(&mut grads)?,
        }
        debug_assert_eq!(weights.len(), t_count);
        let size = self.comm.size() as f32;
        if !self.ps.buffers_flat().is_empty() {
            self.comm.all_reduce_sum_f32(self.ps.buffers_flat_mut())?;
            for b in self.ps.buffers_flat_mut() {
                *b /= size;
            }
        }
        let applied = self.apply_gradient(&mut grads);
        self.grads = grads;
        applied?;
        if self.balancer.needs_losses_after_step() {
            let after = self.forward_losses(&shard).map(|(_, l, _)| l);
            let mut after = self.agreed(after)?;
            for (l, s) in after.iter_mut().zip(&scale) {
                *l *= s;
            }
            self.comm.all_reduce_sum_f32(&mut after)?;
            self.balancer.observe_after_step(&after)?;
        }
        self.step += 1;
        Ok(StepLog { losses, weights })
    }

    /// Per task, the share of the global batch's labelled rows that the
    /// shard holds: the factor that makes the shard's mean loss its part of
    /// the global mean.
    fn shard_scale(&self, global: &Batch, shard: &Batch) -> Vec<f32> {
        self.target_index
            .iter()
            .map(|&i| {
                let all = global.targets[i].labelled_count();
                shard.targets[i].labelled_count() as f32 / all.max(1) as f32
            })
            .collect()
    }

    /// The inputs of the step besides the rows, computed collectively
    /// (see [`StepExtras`]), in the order the one-process step computes
    /// them: the second batch's gradients, then the look-ahead's.
    fn step_extras(
        &mut self,
        batch: &Batch,
        epoch: u64,
        extra: &StepBatches<'_>,
    ) -> Result<StepExtras> {
        let present = self.present_tasks(batch);
        let second = match (self.balancer.needs_second_batch(), extra.second) {
            (false, _) => None,
            (true, Some(b)) => Some(self.global_shared_gradients(b)?),
            (true, None) => return Err(self.missing_batch("a second training batch")),
        };
        let lookahead = match (self.balancer.lookahead_weights(), extra.validation) {
            (None, _) => None,
            (Some(w), Some(validation)) => {
                let lr = self.optimizer.lr();
                let (_, rows) = self.global_shared_gradients(batch)?;
                let width = self.shared_len();
                let direction = weighted_rows(rows.chunks_exact(width.max(1)), &w, width);
                let (losses, rows) = self.at_moved_shared(&direction, lr as f32, |t| {
                    t.global_shared_gradients(validation)
                })?;
                Some((lr, losses, rows))
            }
            (Some(_), None) => return Err(self.missing_batch("a validation batch")),
        };
        Ok(StepExtras {
            step: self.step,
            epoch,
            present,
            second,
            lookahead,
            shared_len: self.shared_len(),
        })
    }

    /// The task losses on the global `batch` and the task gradients of the
    /// shared parameters (`T × P_s`, row-major): this rank's shard, scaled
    /// to its share, summed over the ranks.
    fn global_shared_gradients(&mut self, batch: &Batch) -> Result<(Vec<f32>, Vec<f32>)> {
        let t_count = self.tasks.len();
        let width = self.shared_len();
        let rows = shard_range(batch.len(), self.comm.rank(), self.comm.size())?;
        let local = (|| {
            let shard = shard_batch(batch, rows.clone())?;
            let scale = self.shard_scale(batch, &shard);
            let mut fused = vec![0.0f32; t_count * (1 + width)];
            if !rows.is_empty() {
                let (losses, task_rows) = self.shared_task_rows(&shard)?;
                let (fused_losses, fused_rows) = fused.split_at_mut(t_count);
                for (t, (f, l)) in fused_losses.iter_mut().zip(&losses).enumerate() {
                    *f = l * scale[t];
                    let span = t * width..(t + 1) * width;
                    for (o, v) in fused_rows[span.clone()].iter_mut().zip(&task_rows[span]) {
                        *o = v * scale[t];
                    }
                }
            }
            Ok(fused)
        })();
        let mut fused = self.agreed(local)?;
        self.comm.all_reduce_sum_f32(&mut fused)?;
        let rows = fused.split_off(t_count);
        Ok((fused, rows))
    }

    /// Forward on the shard, scaled losses, and the scaled task rows the
    /// balancer needs (no communication).
    fn local_phase(&mut self, shard: &Batch, scale: &[f32]) -> Result<Local> {
        let (loss_vars, mut losses, rep) = self.forward_losses(shard)?;
        for (l, s) in losses.iter_mut().zip(scale) {
            *l *= s;
        }
        let (heads, mut rows) = match self.balancer.needs() {
            GradientSource::None => (Vec::new(), Vec::new()),
            GradientSource::LastSharedLayer => {
                let range = self.last_shared_range()?;
                let mut rows = std::mem::take(&mut self.rows);
                self.last_layer_rows(&loss_vars, range, &mut rows)?;
                (Vec::new(), rows)
            }
            GradientSource::Representation => {
                let z = rep.ok_or_else(|| TrainError::Mismatch {
                    what: "balancer".into(),
                    message: format!("{} needs a shared representation", self.balancer.name()),
                })?;
                let zlen: usize = self.graph.shape(z)?.iter().product();
                let per = self.per_task(&loss_vars, &[z])?;
                let mut rows = std::mem::take(&mut self.rows);
                self.representation_rows(&per, z, zlen, &mut rows)?;
                (self.head_rows(&per)?, rows)
            }
            GradientSource::SharedParameters => {
                let mut rows = std::mem::take(&mut self.rows);
                let heads = self.shared_and_head_rows(&loss_vars, &mut rows)?;
                (heads, rows)
            }
        };
        if !rows.is_empty() {
            let width = rows.len() / self.tasks.len();
            for (row, s) in rows.chunks_mut(width.max(1)).zip(scale) {
                for v in row {
                    *v *= s;
                }
            }
        }
        Ok(Local {
            loss_vars,
            losses,
            rep,
            heads,
            rows,
        })
    }

    /// The exchange and the balancer: sums `losses` over the ranks, writes
    /// this rank's (unreduced, except for the shared direction) gradient into
    /// `grads` and returns the weights.
    fn exchange(
        &mut self,
        local: &mut Local,
        losses: &mut [f32],
        scale: &[f32],
        rows: Range<usize>,
        extras: &StepExtras,
        grads: &mut [f32],
    ) -> Result<Vec<f32>> {
        let t_count = self.tasks.len();
        let comm = self.comm.as_ref();
        let scaled = |w: &[f32]| -> Vec<f32> { w.iter().zip(scale).map(|(w, s)| w * s).collect() };
        match self.balancer.needs() {
            GradientSource::None => {
                comm.all_reduce_sum_f32(losses)?;
                let input = extras.input(losses)?;
                let w = self.balancer.balance(&input)?.weights().to_vec();
                self.weighted_backward(&local.loss_vars, &scaled(&w), grads)?;
                Ok(w)
            }
            GradientSource::LastSharedLayer => {
                let mut fused = losses.to_vec();
                fused.extend_from_slice(&local.rows);
                comm.all_reduce_sum_f32(&mut fused)?;
                losses.copy_from_slice(&fused[..t_count]);
                let width = local.rows.len() / t_count;
                let gr = GradRows::new(&fused[t_count..], t_count, width)?;
                let input = extras.input(losses)?;
                let w = self
                    .balancer
                    .balance(&input.with_grads(gr))?
                    .weights()
                    .to_vec();
                // The local rows carry the shard's scale already.
                self.weighted_backward_with_rows(
                    &local.loss_vars,
                    (&scaled(&w), &w),
                    &local.rows,
                    self.last_shared_range()?,
                    grads,
                )?;
                Ok(w)
            }
            GradientSource::Representation => {
                comm.all_reduce_sum_f32(losses)?;
                let z = local.rep.ok_or_else(|| TrainError::Mismatch {
                    what: "balancer".into(),
                    message: "no representation".into(),
                })?;
                let zshape = self.graph.shape(z)?.to_vec();
                let zlen = local.rows.len() / t_count;
                let per_row = zlen / rows.len().max(1);
                let total = comm_total_rows(comm, rows.len())? * per_row;
                let input = extras.input(losses)?;
                let (w, direction) =
                    if self.balancer.supports_column_shards() && extras.allow_column_shards() {
                        let mut g = gram(&local.rows, t_count, zlen);
                        comm.all_reduce_sum_f64(g.as_mut_slice())?;
                        let gr = GradRows::new(&local.rows, t_count, zlen)?;
                        let shard = ColumnShard {
                            gram: &g,
                            offset: rows.start * per_row,
                            total_cols: total,
                        };
                        let balanced = self
                            .balancer
                            .balance(&input.with_grads(gr).with_shard(shard))?;
                        let w = balanced.weights().to_vec();
                        (w, balanced.into_shared_direction(&gr)?)
                    } else {
                        let full = gather_rows(comm, &local.rows, t_count, per_row)?;
                        let gr = GradRows::new(&full, t_count, total)?;
                        let balanced = self.balancer.balance(&input.with_grads(gr))?;
                        let d = balanced.shared_direction(&gr)?;
                        (
                            balanced.weights().to_vec(),
                            d[rows.start * per_row..rows.end * per_row].to_vec(),
                        )
                    };
                let shared = self.shared_range();
                self.graph.param_gradients(
                    &[(z, Tensor::from_vec(direction, &zshape)?)],
                    &[],
                    shared.clone(),
                    &mut grads[shared],
                )?;
                self.write_heads(&local.heads, &scaled(&w), grads);
                Ok(w)
            }
            GradientSource::SharedParameters => {
                comm.all_reduce_sum_f32(losses)?;
                let shared = self.shared_range();
                let input = extras.input(losses)?;
                let w = if self.balancer.supports_column_shards() && extras.allow_column_shards() {
                    let mut sharded = ShardedRows::new(comm, t_count, shared.len())?;
                    sharded.reduce_scatter(comm, &local.rows)?;
                    let g = sharded.gram(comm)?;
                    let cols = sharded.columns();
                    let gr = GradRows::new(sharded.owned(), t_count, cols.len())?;
                    let shard = ColumnShard {
                        gram: &g,
                        offset: cols.start,
                        total_cols: shared.len(),
                    };
                    let balanced = self
                        .balancer
                        .balance(&input.with_grads(gr).with_shard(shard))?;
                    let mine = balanced.shared_direction(&gr)?;
                    sharded.all_gather(comm, &mine, &mut grads[shared])?;
                    balanced.weights().to_vec()
                } else {
                    comm.all_reduce_sum_f32(&mut local.rows)?;
                    let gr = GradRows::new(&local.rows, t_count, shared.len())?;
                    let balanced = self.balancer.balance(&input.with_grads(gr))?;
                    grads[shared].copy_from_slice(&balanced.shared_direction(&gr)?);
                    balanced.weights().to_vec()
                };
                self.write_heads(&local.heads, &scaled(&w), grads);
                Ok(w)
            }
        }
    }
}

/// The global batch size: the sum of every rank's shard rows.
fn comm_total_rows(comm: &dyn Communicator, mine: usize) -> Result<usize> {
    let mut n = [mine as f64];
    comm.all_reduce_sum_f64(&mut n)?;
    Ok(n[0] as usize)
}

/// The full `T × (B·per_row)` rows from every rank's `T × (n_r·per_row)`
/// rows (one all-gather per task).
fn gather_rows(
    comm: &dyn Communicator,
    rows: &[f32],
    t_count: usize,
    per_row: usize,
) -> Result<Vec<f32>> {
    let width = rows.len() / t_count.max(1);
    let mut counts = vec![0.0f64; comm.size()];
    counts[comm.rank()] = width as f64;
    comm.all_reduce_sum_f64(&mut counts)?;
    let counts: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
    let total: usize = counts.iter().sum();
    debug_assert_eq!(total % per_row.max(1), 0);
    let mut full = vec![0.0f32; t_count * total];
    for t in 0..t_count {
        comm.all_gather_f32(
            &rows[t * width..(t + 1) * width],
            &counts,
            &mut full[t * total..(t + 1) * total],
        )?;
    }
    Ok(full)
}

impl Trainer {
    /// Replaces the group of ranks this trainer trains with (for a trainer
    /// built by [`Trainer::from_config`]; in code use
    /// [`crate::TrainerBuilder::communicator`]). Call before the first step.
    pub fn set_communicator(&mut self, comm: Box<dyn Communicator + Send>) {
        self.comm = comm;
    }
}
