//! One training step, as the data flows: forward once, one loss per task,
//! then whatever the balancer needs (losses only, gradients at the shared
//! representation, or gradients of the shared parameters), one optimizer step.

use std::ops::Range;

use mtl_core::arch::{build_model, representation_required, MultiTaskModel};
use mtl_core::{Gradients, Graph, ParamGroup, ParamStore, Targets, Tensor, Var};
use mtl_data::{Batch, Dataset, Standardizer};
use mtl_losses::metric::{evaluate, Metric};
use mtl_losses::task::Task;
use mtl_losses::{BalanceInput, Balancer, GradRows, GradientSource};
use mtl_optim::{LrScheduler, Optimizer, ParamGroup as OptimGroup};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::RunConfig;
use crate::error::{CliError, Result};

/// Rows per forward pass when evaluating a split.
pub const EVAL_CHUNK: usize = 512;

/// What one step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepLog {
    /// The loss of each task on the batch.
    pub losses: Vec<f32>,
    /// The task weights the balancer used.
    pub weights: Vec<f32>,
}

/// Scores of one split.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Mean loss of each task over the split.
    pub losses: Vec<f32>,
    /// `("<task>.<metric>", value)` for every default metric of every task.
    pub metrics: Vec<(String, f64)>,
}

impl Evaluation {
    /// The value of `"loss"` (mean of the task losses) or of `"<task>.<metric>"`,
    /// with whether higher is better.
    pub fn score(&self, name: &str) -> Option<(f64, bool)> {
        if name == "loss" {
            let mean = self.losses.iter().map(|&l| l as f64).sum::<f64>()
                / self.losses.len().max(1) as f64;
            return Some((mean, false));
        }
        let (_, metric) = name.rsplit_once('.')?;
        let higher = metric.parse::<Metric>().ok()?.higher_is_better();
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| (*v, higher))
    }
}

/// The model, its parameters and everything that updates them.
pub struct Trainer {
    /// The run configuration.
    pub config: RunConfig,
    /// The architecture.
    pub model: Box<dyn MultiTaskModel>,
    /// Every trainable value.
    pub ps: ParamStore,
    /// The tasks, in order.
    pub tasks: Vec<Task>,
    /// For each task, the index of its targets in a batch.
    pub target_index: Vec<usize>,
    /// The loss balancer.
    pub balancer: Box<dyn Balancer>,
    /// The optimizer.
    pub optimizer: Box<dyn Optimizer>,
    /// The learning-rate schedule (stepped per epoch).
    pub scheduler: LrScheduler,
    /// Optimisation steps taken.
    pub step: u64,
    graph: Graph,
    grads: Vec<f32>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &self.model.name())
            .field("parameters", &self.ps.len())
            .field("balancer", &self.balancer.name())
            .field("optimizer", &self.optimizer.name())
            .field("step", &self.step)
            .finish()
    }
}

/// A seed for step `step` derived from the run seed (SplitMix64 finaliser), so
/// dropout masks depend only on the seed and the step.
fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Trainer {
    /// Builds the model (initialised from the seed), the balancer and the optimizer.
    pub fn new(
        config: RunConfig,
        input_shape: &[usize],
        tasks: Vec<Task>,
        target_index: Vec<usize>,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut ps = ParamStore::new();
        let specs: Vec<_> = tasks.iter().map(|t| t.spec().clone()).collect();
        let model = build_model(
            &config.model.arch,
            &config.model.encoder,
            input_shape,
            &specs,
            &mut ps,
            &mut rng,
        )?;
        let balancer = config.train.balancer.build(tasks.len(), config.seed)?;
        if balancer.needs() == GradientSource::Representation && !model.has_representation() {
            return Err(representation_required(model.as_ref(), balancer.name()).into());
        }
        let optimizer = config
            .train
            .optimizer
            .build(vec![OptimGroup::new(0..ps.len())])?;
        let scheduler =
            LrScheduler::new(config.train.schedule.clone(), config.train.optimizer.lr())?;
        let grads = vec![0.0; ps.len()];
        Ok(Trainer {
            graph: Graph::new(config.seed),
            config,
            model,
            ps,
            tasks,
            target_index,
            balancer,
            optimizer,
            scheduler,
            step: 0,
            grads,
        })
    }

    fn shared_range(&self) -> Range<usize> {
        self.ps.group_range(&ParamGroup::Shared).unwrap_or(0..0)
    }

    fn last_shared_range(&self) -> Result<Range<usize>> {
        let ids = self.model.last_shared_params();
        let mut lo = usize::MAX;
        let mut hi = 0;
        for id in ids {
            let r = self.ps.view(id)?.range();
            lo = lo.min(r.start);
            hi = hi.max(r.end);
        }
        Ok(if lo < hi { lo..hi } else { self.shared_range() })
    }

    /// Records the forward pass and the task losses of `batch`.
    fn forward_losses(&mut self, batch: &Batch) -> Result<(Vec<Var>, Vec<f32>, Option<Var>)> {
        self.graph.reset();
        self.graph.reseed(step_seed(self.config.seed, self.step));
        self.graph.set_training(true);
        let x = self.graph.input(batch.x.clone());
        let out = self.model.forward(&mut self.graph, &mut self.ps, x)?;
        let mut vars = Vec::with_capacity(self.tasks.len());
        let mut values = Vec::with_capacity(self.tasks.len());
        for (t, task) in self.tasks.iter().enumerate() {
            if let Some(v) = self
                .graph
                .value(out.outputs[t])?
                .data()
                .iter()
                .find(|v| !v.is_finite())
            {
                return Err(CliError::Diverged {
                    step: self.step,
                    what: format!("the output of task {:?}", task.name()),
                    value: *v,
                });
            }
            let targets = &batch.targets[self.target_index[t]];
            let l = task.loss(&mut self.graph, out.outputs[t], targets)?;
            let v = self.graph.value(l)?.item()?;
            if !v.is_finite() {
                return Err(CliError::Diverged {
                    step: self.step,
                    what: format!("the loss of task {:?}", task.name()),
                    value: v,
                });
            }
            vars.push(l);
            values.push(v);
        }
        Ok((vars, values, out.representation))
    }

    /// One backward pass per task, in parallel (the graph is only read).
    fn per_task(&self, losses: &[Var], stop: &[Var]) -> Result<Vec<Gradients>> {
        let g = &self.graph;
        losses
            .par_iter()
            .map(|&l| {
                g.backward_from(&[(l, Tensor::scalar(1.0))], stop)
                    .map_err(CliError::from)
            })
            .collect()
    }

    /// The per-task gradients of the parameters at `range`, one checked row
    /// per task (row-major `T x range.len()`).
    fn param_rows(&self, per: &[Gradients], range: Range<usize>) -> Result<Vec<f32>> {
        let width = range.len();
        let mut rows = vec![0.0f32; per.len() * width];
        for (t, (gr, row)) in per.iter().zip(rows.chunks_mut(width.max(1))).enumerate() {
            gr.accumulate_params(&self.graph, range.clone(), row)?;
            self.check_row(t, row)?;
        }
        Ok(rows)
    }

    /// Checks a per-task gradient row, naming the task.
    fn check_row(&self, t: usize, row: &[f32]) -> Result<()> {
        if let Some(v) = row.iter().find(|v| !v.is_finite()) {
            return Err(CliError::Diverged {
                step: self.step,
                what: format!("the gradient of task {:?}", self.tasks[t].name()),
                value: *v,
            });
        }
        Ok(())
    }

    /// One optimisation step on `batch` (of epoch `epoch`).
    pub fn train_step(&mut self, batch: &Batch, epoch: u64) -> Result<StepLog> {
        let (loss_vars, losses, rep) = self.forward_losses(batch)?;
        let shared = self.shared_range();
        let t_count = self.tasks.len();
        let input = BalanceInput::from_losses(&losses).at(self.step, epoch);
        let mut grads = std::mem::take(&mut self.grads);
        grads.fill(0.0);
        let weights = match self.balancer.needs() {
            GradientSource::None => {
                let balanced = self.balancer.balance(&input)?;
                let w = balanced.weights().to_vec();
                self.weighted_backward(&loss_vars, &w, &mut grads)?;
                w
            }
            GradientSource::LastSharedLayer => {
                // Per-task passes stop where the last shared layer reads its
                // input: they cover that layer and the heads, not the trunk.
                let range = self.last_shared_range()?;
                let stop = self.graph.boundary_of(range.clone());
                let per = self.per_task(&loss_vars, &stop)?;
                let rows = self.param_rows(&per, range.clone())?;
                let gr = GradRows::new(&rows, t_count, range.len())?;
                let balanced = self.balancer.balance(&input.with_grads(gr))?;
                let w = balanced.weights().to_vec();
                self.weighted_backward(&loss_vars, &w, &mut grads)?;
                w
            }
            GradientSource::Representation => {
                let z = rep.ok_or_else(|| {
                    CliError::from(representation_required(
                        self.model.as_ref(),
                        self.balancer.name(),
                    ))
                })?;
                let zshape = self.graph.shape(z)?.to_vec();
                let per = self.per_task(&loss_vars, &[z])?;
                let zlen: usize = zshape.iter().product();
                let mut rows = vec![0.0f32; t_count * zlen];
                for (t, gr) in per.iter().enumerate() {
                    if let Some(dz) = gr.get(z) {
                        rows[t * zlen..(t + 1) * zlen].copy_from_slice(dz.data());
                    }
                    self.check_row(t, &rows[t * zlen..(t + 1) * zlen])?;
                }
                let gr = GradRows::new(&rows, t_count, zlen)?;
                let balanced = self.balancer.balance(&input.with_grads(gr))?;
                let w = balanced.weights().to_vec();
                let direction = balanced.shared_direction(&gr)?;
                let trunk = self
                    .graph
                    .backward_from(&[(z, Tensor::from_vec(direction, &zshape)?)], &[])?;
                trunk.accumulate_params(&self.graph, shared.clone(), &mut grads[shared.clone()])?;
                self.add_heads(&per, &w, &mut grads)?;
                w
            }
            GradientSource::SharedParameters => {
                let per = self.per_task(&loss_vars, &[])?;
                let rows = self.param_rows(&per, shared.clone())?;
                let gr = GradRows::new(&rows, t_count, shared.len())?;
                let balanced = self.balancer.balance(&input.with_grads(gr))?;
                let w = balanced.weights().to_vec();
                let direction = balanced.shared_direction(&gr)?;
                grads[shared.clone()].copy_from_slice(&direction);
                self.add_heads(&per, &w, &mut grads)?;
                w
            }
        };
        if let Some(clip) = &self.config.train.clip {
            clip.apply(&mut grads)?;
        }
        if let Some(i) = grads.iter().position(|v| !v.is_finite()) {
            let name = self
                .ps
                .views()
                .iter()
                .find(|v| v.range().contains(&i))
                .map_or_else(|| format!("index {i}"), |v| v.name.clone());
            return Err(CliError::Diverged {
                step: self.step,
                what: format!("the gradient of parameter {name}"),
                value: grads[i],
            });
        }
        self.optimizer.step(self.ps.flat_mut(), &grads)?;
        self.grads = grads;
        if self.balancer.needs_losses_after_step() {
            let (_, after, _) = self.forward_losses(batch)?;
            self.balancer.observe_after_step(&after)?;
        }
        self.step += 1;
        Ok(StepLog { losses, weights })
    }

    /// Writes the gradient of `Σ_t w_t L_t` with respect to every parameter
    /// into `grads` (one backward pass).
    fn weighted_backward(&self, losses: &[Var], w: &[f32], grads: &mut [f32]) -> Result<()> {
        let seeds: Vec<(Var, f32)> = losses.iter().copied().zip(w.iter().copied()).collect();
        self.graph
            .backward(&seeds)?
            .accumulate_params(&self.graph, 0..self.ps.len(), grads)?;
        Ok(())
    }

    /// Adds `w_t ∇L_t` for every parameter outside the shared group.
    fn add_heads(&self, per: &[Gradients], w: &[f32], grads: &mut [f32]) -> Result<()> {
        // Shared parameters come first in the store, so every other parameter
        // lies in one range after them.
        let heads = self.shared_range().end..self.ps.len();
        let mut own = vec![0.0f32; heads.len()];
        for (gr, &wt) in per.iter().zip(w) {
            own.fill(0.0);
            gr.accumulate_params(&self.graph, heads.clone(), &mut own)?;
            for (g, o) in grads[heads.clone()].iter_mut().zip(&own) {
                *g += wt * o;
            }
        }
        Ok(())
    }

    /// The loss of every task on `batch` and every task's gradient with
    /// respect to the shared parameters (one row of `shared_len()` values per
    /// task), without changing anything.
    pub fn shared_task_gradients(&mut self, batch: &Batch) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let (loss_vars, losses, _) = self.forward_losses(batch)?;
        let shared = self.shared_range();
        let per = self.per_task(&loss_vars, &[])?;
        let mut rows = vec![vec![0.0f32; shared.len()]; per.len()];
        for (row, gr) in rows.iter_mut().zip(&per) {
            gr.accumulate_params(&self.graph, shared.clone(), row)?;
        }
        Ok((losses, rows))
    }

    /// The number of shared parameters (the width of a task-gradient row).
    pub fn shared_len(&self) -> usize {
        self.shared_range().len()
    }

    /// The task losses on `batch` after moving the shared parameters to
    /// `θ_s - lr * direction` (task-specific parameters unchanged), or `None`
    /// when a loss or output there is not finite. The shared parameters and
    /// the non-trainable buffers are copied back exactly afterwards, so
    /// training continues bit-identically; the dropout mask is the one of the
    /// current step, as in [`Trainer::shared_task_gradients`].
    pub fn lookahead_losses(
        &mut self,
        batch: &Batch,
        direction: &[f32],
        lr: f32,
    ) -> Result<Option<Vec<f32>>> {
        let shared = self.shared_range();
        if direction.len() != shared.len() {
            return Err(CliError::Core(mtl_core::CoreError::ShapeMismatch {
                op: "look-ahead step",
                lhs: vec![shared.len()],
                rhs: vec![direction.len()],
            }));
        }
        let saved = self.ps.flat()[shared.clone()].to_vec();
        let buffers = self.ps.buffers_flat().to_vec();
        for (p, &g) in self.ps.flat_mut()[shared.clone()].iter_mut().zip(direction) {
            *p -= lr * g;
        }
        let result = self.forward_losses(batch);
        self.ps.flat_mut()[shared].copy_from_slice(&saved);
        self.ps.buffers_flat_mut().copy_from_slice(&buffers);
        match result {
            Ok((_, losses, _)) => Ok(Some(losses)),
            Err(CliError::Diverged { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The cosine similarity of every pair of tasks' shared-parameter
    /// gradients on `batch` (row-major `T x T`), without changing anything.
    pub fn task_cosines(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        let (_, rows) = self.shared_task_gradients(batch)?;
        Ok(cosine_matrix(&rows))
    }
    /// Starts each regression head at the mean of its training targets (the
    /// bias of the head's last layer), so training begins from the best
    /// constant prediction whatever the targets' scale: weights in pounds or
    /// prices in thousands need no rescaling by the user.
    pub fn init_regression_bias(&mut self, ds: &Dataset, rows: &[usize]) -> Result<()> {
        for (t, task) in self.tasks.iter().enumerate() {
            let mtl_core::TaskKind::Regression { outputs } = *task.kind() else {
                continue;
            };
            let Targets::Values(values) = &ds.targets()[self.target_index[t]] else {
                continue;
            };
            let prefix = format!("heads.{}.", task.name());
            let last_bias = self
                .ps
                .views()
                .iter()
                .filter_map(|v| {
                    let layer = v.name.strip_prefix(&prefix)?.strip_suffix(".bias")?;
                    Some((layer.parse::<usize>().ok()?, v.name.clone(), v.len()))
                })
                .max_by_key(|(layer, _, _)| *layer);
            let Some((_, name, len)) = last_bias else {
                continue;
            };
            if len != outputs {
                continue;
            }
            let mean = Standardizer::fit(values, rows)?.mean;
            if let Some(id) = self.ps.find(&name) {
                self.ps.values_mut(id)?.copy_from_slice(&mean);
            }
        }
        Ok(())
    }

    /// Outputs of every task on `rows` of `ds`, in evaluation mode.
    pub fn predict(&mut self, ds: &Dataset, rows: &[usize]) -> Result<Vec<Tensor>> {
        self.predict_chunks(rows.len(), |start, end| Ok(ds.gather(&rows[start..end])?.x))
    }

    /// Outputs of every task on the examples of `features` (`[n, ...]`, in
    /// the layout and scale the model was trained on), in evaluation mode.
    pub fn predict_features(&mut self, features: &Tensor) -> Result<Vec<Tensor>> {
        let n = features.shape().first().copied().unwrap_or(0);
        let width = features.len() / n.max(1);
        let shape = features.shape().to_vec();
        self.predict_chunks(n, |start, end| {
            let mut s = shape.clone();
            s[0] = end - start;
            Ok(Tensor::from_vec(
                features.data()[start * width..end * width].to_vec(),
                &s,
            )?)
        })
    }

    /// Runs the model on `n` examples, [`EVAL_CHUNK`] at a time; `chunk(a, b)`
    /// gives the features of examples `a..b`.
    fn predict_chunks(
        &mut self,
        n: usize,
        chunk: impl Fn(usize, usize) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut outputs: Vec<Vec<f32>> = vec![Vec::new(); self.tasks.len()];
        for start in (0..n).step_by(EVAL_CHUNK) {
            let x = chunk(start, (start + EVAL_CHUNK).min(n))?;
            self.graph.reset();
            self.graph.set_training(false);
            let x = self.graph.input(x);
            let out = self.model.forward(&mut self.graph, &mut self.ps, x)?;
            for (o, v) in outputs.iter_mut().zip(&out.outputs) {
                o.extend_from_slice(self.graph.value(*v)?.data());
            }
        }
        self.graph.set_training(true);
        outputs
            .into_iter()
            .zip(&self.tasks)
            .map(|(o, t)| Ok(Tensor::from_vec(o, &[n, t.output_width()])?))
            .collect()
    }

    /// Mean losses and default metrics of every task on `rows` of `ds`.
    pub fn evaluate(&mut self, ds: &Dataset, rows: &[usize]) -> Result<Evaluation> {
        let outputs = self.predict(ds, rows)?;
        let mut losses = Vec::new();
        let mut metrics = Vec::new();
        for (t, task) in self.tasks.iter().enumerate() {
            let targets: Targets = ds.targets()[self.target_index[t]].gather(rows)?;
            let mut g = Graph::new(0);
            g.set_training(false);
            let o = g.input(outputs[t].clone());
            let l = task.loss(&mut g, o, &targets)?;
            losses.push(g.value(l)?.item()?);
            // The loss above has checked targets and outputs, so a metric that
            // fails now is undefined on this split (R² of a constant target,
            // ROC-AUC with one class): it is left out rather than ending the run.
            for &m in Metric::defaults(task.kind()) {
                if let Ok(values) = evaluate(task, &outputs[t], &targets, &[m]) {
                    for mv in values {
                        metrics.push((format!("{}.{}", task.name(), mv.metric.name()), mv.value));
                    }
                }
            }
        }
        Ok(Evaluation { losses, metrics })
    }
}

/// The cosine similarity of every pair of `rows` (row-major `T x T`, in
/// double precision, 0 where a row is all zeros).
pub fn cosine_matrix(rows: &[Vec<f32>]) -> Vec<f32> {
    let t_count = rows.len();
    let norms: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut out = vec![0.0f32; t_count * t_count];
    for i in 0..t_count {
        for j in 0..t_count {
            let dot: f64 = rows[i]
                .iter()
                .zip(&rows[j])
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let denom = norms[i] * norms[j];
            out[i * t_count + j] = if denom > 0.0 {
                (dot / denom) as f32
            } else {
                0.0
            };
        }
    }
    out
}
