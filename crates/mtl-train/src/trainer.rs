//! One training step, as the data flows: forward once, one loss per task,
//! then whatever the balancer needs (losses only, gradients at the shared
//! representation, or gradients of the shared parameters), one optimizer step.

use std::ops::Range;

use mtl_core::arch::{build_model, MultiTaskModel, ARCHITECTURES_WITH_REPRESENTATION};
use mtl_core::workers::{keep_awake, products_on_this_thread};
use mtl_core::{Gradients, Graph, ParamGroup, ParamStore, Targets, Tensor, Var};
use mtl_data::{Batch, BatchSource, Dataset, Standardizer};
use mtl_losses::balance::gram::combine_rows;
use mtl_losses::metric::{evaluate, Metric};
use mtl_losses::task::Task;
use mtl_losses::{
    balance::{LookAhead, SecondBatch},
    BalanceInput, Balancer, BalancerConfig, GradRows, GradientSource,
};
use mtl_optim::{
    ClipConfig, LrScheduler, Optimizer, OptimizerConfig, ParamGroup as OptimGroup, ScheduleConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::prepare::Prepared;

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

/// The extra batches of one step (see [`Trainer::train_step_with`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepBatches<'a> {
    /// A second training batch, independent of the first.
    pub second: Option<&'a Batch>,
    /// A validation batch.
    pub validation: Option<&'a Batch>,
}

/// Scores of one split.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Mean loss of each task over the split.
    pub losses: Vec<f32>,
    /// `("<task>.<metric>", value)` for every default metric of every task.
    pub metrics: Vec<(String, f64)>,
    /// The examples each task was scored on: its labelled rows (every row
    /// unless some labels are missing).
    #[serde(default)]
    pub labelled: Vec<usize>,
}

impl Evaluation {
    /// Every score name a validation of `tasks` has: `"loss"` and
    /// `"<task>.<metric>"` for each task's default metrics.
    pub fn score_names_for(tasks: &[Task]) -> Vec<String> {
        let mut names = vec!["loss".to_string()];
        for task in tasks {
            for m in Metric::defaults(task.kind()) {
                names.push(format!("{}.{}", task.name(), m.name()));
            }
        }
        names
    }

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

/// The model, its parameters and everything that updates them: one
/// optimisation step at a time ([`Trainer::train_step`]) or whole epochs
/// ([`Trainer::fit`]).
///
/// Built in code with [`Trainer::builder`] from any [`MultiTaskModel`] (one
/// of `mtl-core`'s architectures or a model of your own), its [`ParamStore`]
/// and the tasks; or from a TOML [`RunConfig`] with
/// [`Trainer::from_config`], which is what `mtl train` does.
///
/// ```
/// use mtl_core::arch::{build_model, ArchConfig, EncoderConfig, HeadConfig};
/// use mtl_core::{nn::Activation, ParamStore, TaskKind, TaskSpec};
/// use mtl_losses::task::Task;
/// use mtl_losses::BalancerConfig;
/// use mtl_train::Trainer;
/// use rand::SeedableRng;
///
/// let specs = vec![
///     TaskSpec { name: "a".into(), kind: TaskKind::Regression { outputs: 1 } },
///     TaskSpec { name: "b".into(), kind: TaskKind::Binary },
/// ];
/// let mut ps = ParamStore::new();
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let encoder = EncoderConfig::Mlp { hidden: vec![8], dropout: 0.0, activation: Activation::Relu, layer_norm: false };
/// let arch = ArchConfig::Hps { head: HeadConfig::default() };
/// let model = build_model(&arch, &encoder, &[3], &specs, &mut ps, &mut rng)?;
/// let tasks = specs.into_iter().map(Task::with_default_loss).collect::<Result<Vec<_>, _>>()?;
/// let trainer = Trainer::builder(model, ps, tasks)
///     .balancer("mgda".parse::<BalancerConfig>()?)
///     .seed(7)
///     .build()?;
/// assert_eq!(trainer.balancer().name(), "mgda");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Trainer {
    pub(crate) model: Box<dyn MultiTaskModel>,
    pub(crate) ps: ParamStore,
    pub(crate) tasks: Vec<Task>,
    pub(crate) target_index: Vec<usize>,
    pub(crate) balancer: Box<dyn Balancer>,
    pub(crate) optimizer: Box<dyn Optimizer>,
    pub(crate) scheduler: LrScheduler,
    pub(crate) clip: Option<ClipConfig>,
    seed: u64,
    pub(crate) step: u64,
    pub(crate) graph: Graph,
    pub(crate) grads: Vec<f32>,
    /// The per-task gradient rows of the last step (kept for their buffer).
    pub(crate) rows: Vec<f32>,
    // Data parallelism (see `parallel.rs`): the group of ranks this trainer belongs to.
    pub(crate) comm: Box<dyn mtl_dist::Communicator + Send>,
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

/// Whether parameter groups `groups` (none: one group over everything)
/// cover every index of `0..len`.
fn covers(groups: &[OptimGroup], len: usize) -> bool {
    let mut ranges: Vec<_> = groups.iter().map(|g| g.range.clone()).collect();
    ranges.sort_by_key(|r| r.start);
    let mut reached = 0;
    for r in &ranges {
        if r.start > reached {
            return false;
        }
        reached = reached.max(r.end);
    }
    groups.is_empty() || reached >= len
}

/// A seed for step `step` derived from the run seed (SplitMix64 finaliser), so
/// dropout masks depend only on the seed and the step.
fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The balancer of a [`TrainerBuilder`]: from its configuration or already built.
enum BalancerChoice {
    Config(BalancerConfig),
    Built(Box<dyn Balancer>),
}

/// The optimizer of a [`TrainerBuilder`]: from its configuration or already built.
enum OptimizerChoice {
    Config(OptimizerConfig),
    Built(Box<dyn Optimizer>),
}

/// Builds a [`Trainer`] in code; see [`Trainer::builder`]. Defaults: equal
/// weighting, Adam with learning rate 1e-3, a constant schedule, no
/// clipping, seed 0, the batch's targets in task order.
pub struct TrainerBuilder {
    model: Box<dyn MultiTaskModel>,
    ps: ParamStore,
    tasks: Vec<Task>,
    target_index: Option<Vec<usize>>,
    balancer: BalancerChoice,
    optimizer: OptimizerChoice,
    schedule: ScheduleConfig,
    clip: Option<ClipConfig>,
    seed: u64,
    comm: Box<dyn mtl_dist::Communicator + Send>,
}

impl std::fmt::Debug for TrainerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerBuilder")
            .field("model", &self.model.name())
            .field("seed", &self.seed)
            .finish()
    }
}

impl TrainerBuilder {
    /// The loss balancer, from its configuration (built for the number of
    /// tasks and the seed) or already built (a [`BalancerConfig`] or a
    /// `Box<dyn Balancer>`).
    pub fn balancer(mut self, balancer: impl Into<BalancerSpec>) -> Self {
        self.balancer = match balancer.into() {
            BalancerSpec(b) => b,
        };
        self
    }

    /// The optimizer, from its configuration (an [`OptimizerConfig`]) or
    /// already built (a `Box<dyn Optimizer>` over the whole store).
    pub fn optimizer(mut self, optimizer: impl Into<OptimizerSpec>) -> Self {
        self.optimizer = match optimizer.into() {
            OptimizerSpec(o) => o,
        };
        self
    }

    /// The learning-rate schedule, stepped once per epoch.
    pub fn schedule(mut self, schedule: ScheduleConfig) -> Self {
        self.schedule = schedule;
        self
    }

    /// Gradient clipping before each optimizer step.
    pub fn clip(mut self, clip: ClipConfig) -> Self {
        self.clip = Some(clip);
        self
    }

    /// The seed of dropout masks and of the balancer's random choices.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The group of ranks this trainer trains with (default:
    /// [`mtl_dist::SingleProcess`]); see [`crate::parallel`].
    pub fn communicator(mut self, comm: Box<dyn mtl_dist::Communicator + Send>) -> Self {
        self.comm = comm;
        self
    }

    /// For each task, the index of its targets in a batch (default: task
    /// `t` reads `batch.targets[t]`).
    pub fn target_index(mut self, index: Vec<usize>) -> Self {
        self.target_index = Some(index);
        self
    }

    /// Checks the pieces against each other and builds the trainer.
    ///
    /// # Errors
    /// A balancer or optimizer configuration that does not fit the tasks, a
    /// balancer that needs a shared representation the model lacks, a model
    /// whose tasks differ from `tasks`, or a target index of another length.
    pub fn build(self) -> Result<Trainer> {
        let t_count = self.tasks.len();
        if self.model.tasks().len() != t_count
            || self
                .model
                .tasks()
                .iter()
                .zip(&self.tasks)
                .any(|(spec, task)| spec.name != task.name())
        {
            return Err(TrainError::Mismatch {
                what: "tasks".into(),
                message: format!(
                    "the model has tasks [{}] but the trainer was given [{}]",
                    self.model
                        .tasks()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.tasks
                        .iter()
                        .map(|t| t.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let shared = self.ps.group_range(&ParamGroup::Shared).unwrap_or(0..0);
        if let Some(v) = self
            .ps
            .views()
            .iter()
            .find(|v| v.group != ParamGroup::Shared && v.range().start < shared.end)
        {
            return Err(TrainError::Mismatch {
                what: "parameters".into(),
                message: format!(
                    "{} is not shared but lies among the shared parameters; register every shared parameter before any task's",
                    v.name
                ),
            });
        }
        let target_index = self.target_index.unwrap_or_else(|| (0..t_count).collect());
        if target_index.len() != t_count {
            return Err(TrainError::Mismatch {
                what: "target index".into(),
                message: format!("{} entries for {t_count} tasks", target_index.len()),
            });
        }
        let balancer = match self.balancer {
            BalancerChoice::Config(c) => c.build(t_count, self.seed)?,
            BalancerChoice::Built(b) => b,
        };
        if balancer.num_tasks() != t_count {
            return Err(TrainError::Mismatch {
                what: "balancer".into(),
                message: format!(
                    "{} was built for {} tasks, the model has {t_count}",
                    balancer.name(),
                    balancer.num_tasks()
                ),
            });
        }
        if balancer.needs() == GradientSource::Representation && !self.model.has_representation() {
            return Err(TrainError::Mismatch {
                what: "balancer".into(),
                message: no_representation(self.model.as_ref(), balancer.name()),
            });
        }
        let (optimizer, lr) = match self.optimizer {
            OptimizerChoice::Config(c) => {
                (c.build(vec![OptimGroup::new(0..self.ps.len())])?, c.lr())
            }
            OptimizerChoice::Built(o) => {
                let lr = o.lr();
                (o, lr)
            }
        };
        let scheduler = LrScheduler::new(self.schedule, lr)?;
        if let Some(clip) = &self.clip {
            clip.validate()?;
        }
        let grads = vec![0.0; self.ps.len()];
        Ok(Trainer {
            graph: Graph::new(self.seed),
            model: self.model,
            ps: self.ps,
            tasks: self.tasks,
            target_index,
            balancer,
            optimizer,
            scheduler,
            clip: self.clip,
            seed: self.seed,
            step: 0,
            grads,
            rows: Vec::new(),
            comm: self.comm,
        })
    }
}

/// A balancer for [`TrainerBuilder::balancer`]: a [`BalancerConfig`] or a
/// built `Box<dyn Balancer>`.
pub struct BalancerSpec(BalancerChoice);

impl From<BalancerConfig> for BalancerSpec {
    fn from(c: BalancerConfig) -> Self {
        BalancerSpec(BalancerChoice::Config(c))
    }
}

impl From<Box<dyn Balancer>> for BalancerSpec {
    fn from(b: Box<dyn Balancer>) -> Self {
        BalancerSpec(BalancerChoice::Built(b))
    }
}

/// An optimizer for [`TrainerBuilder::optimizer`]: an [`OptimizerConfig`]
/// or a built `Box<dyn Optimizer>`.
pub struct OptimizerSpec(OptimizerChoice);

impl From<OptimizerConfig> for OptimizerSpec {
    fn from(c: OptimizerConfig) -> Self {
        OptimizerSpec(OptimizerChoice::Config(c))
    }
}

impl From<Box<dyn Optimizer>> for OptimizerSpec {
    fn from(o: Box<dyn Optimizer>) -> Self {
        OptimizerSpec(OptimizerChoice::Built(o))
    }
}

/// Why `balancer` cannot run on `model`, naming the architectures that would work.
fn no_representation(model: &dyn MultiTaskModel, balancer: &str) -> String {
    format!(
        "{balancer} needs a shared representation, which architecture {} does not have ({}); use one of: {}",
        model.name(),
        model.why_no_representation(),
        ARCHITECTURES_WITH_REPRESENTATION.join(", ")
    )
}

impl Trainer {
    /// Starts building a trainer for `model`, whose parameters live in `ps`,
    /// and `tasks` (in the model's output order).
    pub fn builder(
        model: Box<dyn MultiTaskModel>,
        ps: ParamStore,
        tasks: Vec<Task>,
    ) -> TrainerBuilder {
        TrainerBuilder {
            model,
            ps,
            tasks,
            target_index: None,
            balancer: BalancerChoice::Config(BalancerConfig::default()),
            optimizer: OptimizerChoice::Config(OptimizerConfig::default()),
            schedule: ScheduleConfig::default(),
            clip: None,
            seed: 0,
            comm: Box::new(mtl_dist::SingleProcess),
        }
    }

    /// Builds the model of `config` (initialised from its seed) for examples
    /// of `input_shape`, with its balancer, optimizer, schedule and clipping:
    /// the trainer `mtl train` uses.
    ///
    /// # Errors
    /// As [`TrainerBuilder::build`], and a model configuration that does not
    /// fit the input or the tasks.
    pub fn from_config(
        config: &RunConfig,
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
        let mut builder = Trainer::builder(model, ps, tasks)
            .balancer(config.train.balancer.clone())
            .optimizer(config.train.optimizer.clone())
            .schedule(config.train.schedule.clone())
            .seed(config.seed)
            .target_index(target_index);
        if let Some(clip) = &config.train.clip {
            builder = builder.clip(*clip);
        }
        builder.build()
    }

    /// The model.
    pub fn model(&self) -> &dyn MultiTaskModel {
        self.model.as_ref()
    }

    /// [`Trainer::from_config`] for the data, tasks and targets `prepared`
    /// from that configuration (its tasks are cloned).
    ///
    /// # Errors
    /// As [`Trainer::from_config`].
    pub fn from_prepared(config: &RunConfig, prepared: &Prepared) -> Result<Self> {
        Self::from_config(
            config,
            prepared.dataset.feature_shape(),
            prepared.tasks.clone(),
            prepared.target_index.clone(),
        )
    }

    /// Every trainable value of the model.
    pub fn params(&self) -> &ParamStore {
        &self.ps
    }

    /// The parameters, to change them in place (initialisation, loading).
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.ps
    }

    /// The tasks, in order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// The task names, in order.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name().to_string()).collect()
    }

    /// The loss balancer.
    pub fn balancer(&self) -> &dyn Balancer {
        self.balancer.as_ref()
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The learning-rate schedule.
    pub fn scheduler(&self) -> &LrScheduler {
        &self.scheduler
    }

    /// Optimisation steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The seed of dropout masks and of the balancer.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn shared_range(&self) -> Range<usize> {
        self.ps.group_range(&ParamGroup::Shared).unwrap_or(0..0)
    }

    pub(crate) fn last_shared_range(&self) -> Result<Range<usize>> {
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

    /// Records the forward pass and the task losses of `batch` (each with
    /// the penalty the architecture adds to it, if any).
    pub(crate) fn forward_losses(
        &mut self,
        batch: &Batch,
    ) -> Result<(Vec<Var>, Vec<f32>, Option<Var>)> {
        self.graph.reset();
        self.graph.reseed(step_seed(self.seed, self.step));
        self.graph.set_training(true);
        let x = self.graph.input_copy(&batch.x)?;
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
                return Err(TrainError::Diverged {
                    step: self.step,
                    what: format!("the output of task {:?}", task.name()),
                    value: *v,
                });
            }
            let targets = &batch.targets[self.target_index[t]];
            let mut l = task.loss(&mut self.graph, out.outputs[t], targets)?;
            if let Some(penalty) = out.penalty(t) {
                l = self.graph.add(l, penalty)?;
            }
            let v = self.graph.value(l)?.item()?;
            if !v.is_finite() {
                return Err(TrainError::Diverged {
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
    pub(crate) fn per_task(&self, losses: &[Var], stop_at: &[Var]) -> Result<Vec<Gradients>> {
        let g = &self.graph;
        losses
            .par_iter()
            .map(|&l| Ok(g.backward_from(&[(l, Tensor::scalar(1.0))], stop_at)?))
            .collect()
    }

    /// Every task's gradient of the parameters at `range`, written over
    /// `rows` (row-major `T x range.len()`, resized, never cleared: every
    /// element is written, zero where a task's loss does not reach a
    /// parameter). One backward pass per task, in parallel, each writing its
    /// parameters' gradients straight into its row and keeping no gradient
    /// per node; nodes in `cut` receive none (see [`Graph::boundary_of`]),
    /// and parameters outside `range` get no weight gradient. Where the
    /// passes share evenly among the threads, each pass computes its
    /// matrix products on its own thread
    /// ([`mtl_core::workers::products_on_this_thread`]; the same bits).
    fn task_param_rows(
        &self,
        losses: &[Var],
        cut: &[Var],
        range: Range<usize>,
        rows: &mut Vec<f32>,
    ) -> Result<()> {
        let width = range.len();
        rows.resize(losses.len() * width, 0.0);
        let graph = &self.graph;
        let own = losses.len().is_multiple_of(rayon::current_num_threads());
        rows.par_chunks_mut(width.max(1))
            .zip(losses.par_iter())
            .try_for_each(|(row, &l)| {
                let seed = [(l, Tensor::scalar(1.0))];
                let mut pass = || graph.param_gradients(&seed, cut, range.clone(), row);
                if own {
                    products_on_this_thread(pass)
                } else {
                    pass()
                }
            })?;
        Ok(())
    }

    /// The per-task gradients of the last shared layer's parameters at
    /// `range`, one checked row per task (row-major `T x range.len()`),
    /// written over `rows` as [`Trainer::task_param_rows`] writes them. The
    /// passes stop before the layer's input (its gradient is never needed),
    /// so they cover that layer and the heads.
    pub(crate) fn last_layer_rows(
        &self,
        losses: &[Var],
        range: Range<usize>,
        rows: &mut Vec<f32>,
    ) -> Result<()> {
        let cut = self.graph.boundary_of(range.clone());
        self.task_param_rows(losses, &cut, range.clone(), rows)?;
        self.check_rows(rows, losses.len())
    }

    /// Every task's gradient of every parameter, one pass per task
    /// ([`Trainer::task_param_rows`] over the whole store, in `rows`), split
    /// in place: `rows` is left with the checked rows of the shared
    /// parameters (row-major `T x shared_len()`), and the rows of the other
    /// parameters, which follow the shared ones in the store, are returned
    /// (row-major `T x (P - shared_len())`, for [`Trainer::write_heads`]).
    pub(crate) fn shared_and_head_rows(
        &self,
        losses: &[Var],
        rows: &mut Vec<f32>,
    ) -> Result<Vec<f32>> {
        let shared = self.shared_range();
        let all = shared.start..self.ps.len();
        self.task_param_rows(losses, &[], all.clone(), rows)?;
        let (width, s) = (all.len(), shared.len());
        let mut heads = Vec::with_capacity(losses.len() * (width - s));
        for t in 0..losses.len() {
            // Row t's head part lies past where its shared part moves to
            // (`t·s + s ≤ t·width + s`), and the later rows lie past both.
            heads.extend_from_slice(&rows[t * width + s..(t + 1) * width]);
            rows.copy_within(t * width..t * width + s, t * s);
        }
        rows.truncate(losses.len() * s);
        self.check_rows(rows, losses.len())?;
        Ok(heads)
    }

    /// The rows of the parameters after the shared ones (row-major
    /// `T x (P - shared_len())`, for [`Trainer::write_heads`]) from each
    /// task's pass `per`.
    pub(crate) fn head_rows(&self, per: &[Gradients]) -> Result<Vec<f32>> {
        let heads = self.shared_range().end..self.ps.len();
        let mut rows = vec![0.0f32; per.len() * heads.len()];
        for (gr, row) in per.iter().zip(rows.chunks_mut(heads.len().max(1))) {
            gr.accumulate_params(&self.graph, heads.clone(), row)?;
        }
        Ok(rows)
    }

    /// The per-task gradients at the representation `z` (`zlen` values),
    /// one checked row per task, written over `rows` (resized; every row is
    /// written: copied, or zero for a task whose loss does not reach `z`).
    /// The rows are copied and checked in parallel, a task a piece; a bad
    /// row is reported for the first such task.
    pub(crate) fn representation_rows(
        &self,
        per: &[Gradients],
        z: Var,
        zlen: usize,
        rows: &mut Vec<f32>,
    ) -> Result<()> {
        rows.resize(per.len() * zlen, 0.0);
        let bad: Vec<Option<f32>> = rows
            .par_chunks_mut(zlen.max(1))
            .zip(per.par_iter())
            .map(|(row, gr)| {
                match gr.get(z) {
                    Some(dz) => row.copy_from_slice(dz.data()),
                    None => row.fill(0.0),
                }
                mtl_optim::first_non_finite(row).map(|(_, value)| value)
            })
            .collect();
        match bad.iter().enumerate().find_map(|(t, b)| Some((t, (*b)?))) {
            Some((t, value)) => Err(self.diverged_task(t, value)),
            None => Ok(()),
        }
    }

    /// Checks each of the `tasks` rows of `rows` (row-major), naming the
    /// first task whose row is not finite.
    fn check_rows(&self, rows: &[f32], tasks: usize) -> Result<()> {
        let width = rows.len() / tasks.max(1);
        for (t, row) in rows.chunks(width.max(1)).enumerate() {
            if let Some((_, value)) = mtl_optim::first_non_finite(row) {
                return Err(self.diverged_task(t, value));
            }
        }
        Ok(())
    }

    /// The divergence of task `t`'s gradient, which holds `value`.
    fn diverged_task(&self, t: usize, value: f32) -> TrainError {
        TrainError::Diverged {
            step: self.step,
            what: format!("the gradient of task {:?}", self.tasks[t].name()),
            value,
        }
    }

    /// One optimisation step on `batch` (of epoch `epoch`).
    pub fn train_step(&mut self, batch: &Batch, epoch: u64) -> Result<StepLog> {
        self.train_step_with(batch, epoch, &StepBatches::default())
    }

    /// One optimisation step on `batch` with the extra batches some
    /// balancers need: a second, independent training batch (MoDo, SDMGrad:
    /// [`Balancer::needs_second_batch`]) and a validation batch for a
    /// look-ahead step (Auto-Lambda: [`Balancer::lookahead_weights`]).
    /// [`Trainer::fit`] draws both from its seed; [`Trainer::train_step`]
    /// supplies none.
    ///
    /// A task without a label in `batch` is absent from the step: its loss
    /// is 0 with a zero gradient, and the balancer gives it weight 0 and
    /// learns nothing from it.
    ///
    /// # Errors
    /// As [`Trainer::train_step`], and a balancer whose extra batch is missing.
    pub fn train_step_with(
        &mut self,
        batch: &Batch,
        epoch: u64,
        extra: &StepBatches<'_>,
    ) -> Result<StepLog> {
        // Data parallelism: with more than one rank, see `parallel.rs`.
        if self.comm.size() > 1 {
            return self.parallel_step(batch, epoch, extra);
        }
        // The step runs on one of rayon's threads, so that each parallel
        // piece of it (a matrix product, the per-task passes, the optimizer)
        // is shared with the thread already running instead of being handed
        // to the pool and waited for, and the other workers stay awake
        // between the pieces: one wake-up per step, not one per piece.
        keep_awake(|| self.local_step(batch, epoch, extra))
    }

    /// [`Trainer::train_step_with`] on one process.
    fn local_step(
        &mut self,
        batch: &Batch,
        epoch: u64,
        extra: &StepBatches<'_>,
    ) -> Result<StepLog> {
        self.model.begin_step(&mut self.ps, self.step, epoch)?;
        let present = self.present_tasks(batch);
        let second = match (self.balancer.needs_second_batch(), extra.second) {
            (false, _) => None,
            (true, Some(b)) => Some(self.shared_task_rows(b)?),
            (true, None) => return Err(self.missing_batch("a second training batch")),
        };
        let lookahead = match (self.balancer.lookahead_weights(), extra.validation) {
            (None, _) => None,
            (Some(w), Some(val)) => Some(self.lookahead_gradients(batch, val, &w)?),
            (Some(_), None) => return Err(self.missing_batch("a validation batch")),
        };
        let (loss_vars, losses, rep) = self.forward_losses(batch)?;
        let shared = self.shared_range();
        let t_count = self.tasks.len();
        let mut input = BalanceInput::from_losses(&losses).at(self.step, epoch);
        if present.iter().any(|p| !p) {
            input = input.with_present(&present);
        }
        if let Some((l, rows)) = &second {
            input = input.with_second(SecondBatch {
                losses: l,
                grads: GradRows::new(rows, t_count, shared.len())?,
            });
        }
        if let Some((lr, l, rows)) = &lookahead {
            input = input.with_lookahead(LookAhead {
                lr: *lr,
                losses: l,
                grads: GradRows::new(rows, t_count, shared.len())?,
            });
        }
        // Every branch writes the whole gradient. (The buffer is put back
        // after the step; after a failed one it is allocated again.)
        let mut grads = std::mem::take(&mut self.grads);
        grads.resize(self.ps.len(), 0.0);
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
                let mut rows = std::mem::take(&mut self.rows);
                self.last_layer_rows(&loss_vars, range.clone(), &mut rows)?;
                let gr = GradRows::new(&rows, t_count, range.len())?;
                let balanced = self.balancer.balance(&input.with_grads(gr))?;
                let w = balanced.weights().to_vec();
                let written = self.weighted_backward_with_rows(
                    &loss_vars,
                    (&w, &w),
                    &rows,
                    range,
                    &mut grads,
                );
                self.rows = rows;
                written?;
                w
            }
            GradientSource::Representation => {
                let z = rep.ok_or_else(|| TrainError::Mismatch {
                    what: "balancer".into(),
                    message: no_representation(self.model.as_ref(), self.balancer.name()),
                })?;
                let zshape = self.graph.shape(z)?.to_vec();
                let per = self.per_task(&loss_vars, &[z])?;
                let zlen: usize = zshape.iter().product();
                let mut rows = std::mem::take(&mut self.rows);
                self.representation_rows(&per, z, zlen, &mut rows)?;
                let gr = GradRows::new(&rows, t_count, zlen)?;
                let balanced = self.balancer.balance(&input.with_grads(gr))?;
                let w = balanced.weights().to_vec();
                let direction = balanced.into_shared_direction(&gr)?;
                self.rows = rows;
                self.graph.param_gradients(
                    &[(z, Tensor::from_vec(direction, &zshape)?)],
                    &[],
                    shared.clone(),
                    &mut grads[shared.clone()],
                )?;
                self.write_heads(&self.head_rows(&per)?, &w, &mut grads);
                w
            }
            GradientSource::SharedParameters => {
                let mut rows = std::mem::take(&mut self.rows);
                let heads = self.shared_and_head_rows(&loss_vars, &mut rows)?;
                let gr = GradRows::new(&rows, t_count, shared.len())?;
                let balanced = self.balancer.balance(&input.with_grads(gr))?;
                let w = balanced.weights().to_vec();
                let direction = balanced.into_shared_direction(&gr)?;
                self.rows = rows;
                grads[shared.clone()].copy_from_slice(&direction);
                self.write_heads(&heads, &w, &mut grads);
                w
            }
        };
        let applied = self.apply_gradient(&mut grads);
        self.grads = grads;
        applied?;
        if self.balancer.needs_losses_after_step() {
            let (_, after, _) = self.forward_losses(batch)?;
            self.balancer.observe_after_step(&after)?;
        }
        self.step += 1;
        Ok(StepLog { losses, weights })
    }

    /// Clips the step's gradient `grads` (when configured) and applies it
    /// with the optimizer. A NaN or infinite entry is reported as divergence
    /// naming its parameter, and nothing changes. The optimizer checks the
    /// entries of its groups before it changes anything (the
    /// [`mtl_optim::Optimizer`] contract), so the gradient is scanned here
    /// only when its groups leave parameters out.
    pub(crate) fn apply_gradient(&mut self, grads: &mut [f32]) -> Result<()> {
        let diverged = |step: u64, name: String, value: f32| TrainError::Diverged {
            step,
            what: format!("the gradient of parameter {name}"),
            value,
        };
        if !covers(self.optimizer.groups(), grads.len()) {
            if let Some((i, value)) = mtl_optim::first_non_finite(grads) {
                return Err(diverged(self.step, self.parameter_at(i), value));
            }
        }
        let clipped = match &self.clip {
            Some(clip) => clip.apply(grads).map(|_norm| ()),
            None => Ok(()),
        };
        let applied = clipped.and_then(|()| self.optimizer.step(self.ps.flat_mut(), grads));
        applied.map_err(|e| match e {
            mtl_optim::OptimError::NonFiniteGradient { index, value } => {
                diverged(self.step, self.parameter_at(index), value)
            }
            other => other.into(),
        })
    }

    /// The name of the parameter holding flat index `i` of the store.
    fn parameter_at(&self, i: usize) -> String {
        self.ps
            .views()
            .iter()
            .find(|v| v.range().contains(&i))
            .map_or_else(|| format!("index {i}"), |v| v.name.clone())
    }

    /// Writes the gradient of `Σ_t w_t L_t` with respect to every parameter
    /// into `grads` (one backward pass).
    pub(crate) fn weighted_backward(
        &self,
        losses: &[Var],
        w: &[f32],
        grads: &mut [f32],
    ) -> Result<()> {
        self.weighted_backward_except(losses, w, 0..0, grads)
    }

    /// [`Trainer::weighted_backward`] whose parameters at `range` (the last
    /// shared layer) take `Σ_t v_t row_t` of their per-task gradient `rows`
    /// (row-major `T x range.len()`, summed in `f64`) instead of a weight
    /// gradient product of their own: one product fewer per step. The row
    /// weights `v` are `row_w`: `w` itself, or `w` without a shard's scale
    /// when the rows carry it already. Where a parameter of `range` is
    /// recorded more than once (shared weights), the rows, which stop at the
    /// layer, may not hold all of its gradient, and the whole backward pass
    /// is taken instead.
    pub(crate) fn weighted_backward_with_rows(
        &self,
        losses: &[Var],
        (w, row_w): (&[f32], &[f32]),
        rows: &[f32],
        range: Range<usize>,
        grads: &mut [f32],
    ) -> Result<()> {
        if !self.graph.recorded_once(range.clone()) {
            return self.weighted_backward(losses, w, grads);
        }
        self.weighted_backward_except(losses, w, range.clone(), grads)?;
        let row_w: Vec<f64> = row_w.iter().map(|&x| f64::from(x)).collect();
        combine_rows(rows, range.len(), &row_w, &mut grads[range]);
        Ok(())
    }

    /// [`Trainer::weighted_backward`] leaving the parameters at `skip` zero.
    fn weighted_backward_except(
        &self,
        losses: &[Var],
        w: &[f32],
        skip: Range<usize>,
        grads: &mut [f32],
    ) -> Result<()> {
        let seeds: Vec<(Var, Tensor)> = losses
            .iter()
            .zip(w)
            .map(|(&l, &wt)| Ok((l, Tensor::filled(self.graph.shape(l)?, wt))))
            .collect::<Result<_>>()?;
        self.graph
            .param_gradients_except(&seeds, &[], 0..self.ps.len(), skip, grads)?;
        Ok(())
    }

    /// Writes `Σ_t w_t ∇L_t` for every parameter outside the shared group,
    /// from each task's gradient of those parameters (`heads`, row-major
    /// `T x (P - shared_len())`).
    pub(crate) fn write_heads(&self, heads: &[f32], w: &[f32], grads: &mut [f32]) {
        // Shared parameters come first in the store, so every other parameter
        // lies in one range after them.
        let out = &mut grads[self.shared_range().end..self.ps.len()];
        out.fill(0.0);
        for (row, &wt) in heads.chunks(out.len().max(1)).zip(w) {
            for (g, o) in out.iter_mut().zip(row) {
                *g += wt * o;
            }
        }
    }

    /// Whether each task has at least one label in `batch`.
    pub(crate) fn present_tasks(&self, batch: &Batch) -> Vec<bool> {
        self.tasks
            .iter()
            .zip(&self.target_index)
            .map(|(task, &i)| task.labelled_count(&batch.targets[i], batch.len()) > 0)
            .collect()
    }

    pub(crate) fn missing_batch(&self, what: &str) -> TrainError {
        TrainError::Mismatch {
            what: "balancer".into(),
            message: format!(
                "{} needs {what} each step: train with Trainer::fit or pass it to Trainer::train_step_with",
                self.balancer.name()
            ),
        }
    }

    /// Auto-Lambda's look-ahead: the shared parameters moved to
    /// `θ' = θ − lr Σ_t w_t g_t` with the training rows of `batch`, then the
    /// validation losses and rows (row-major `T x shared_len()`) at `θ'`;
    /// everything is restored exactly. Returns `(lr, losses, rows)`.
    fn lookahead_gradients(
        &mut self,
        batch: &Batch,
        validation: &Batch,
        weights: &[f32],
    ) -> Result<(f64, Vec<f32>, Vec<f32>)> {
        let lr = self.optimizer.lr();
        let (_, rows) = self.shared_task_rows(batch)?;
        let width = self.shared_len();
        let direction = weighted_rows(rows.chunks_exact(width.max(1)), weights, width);
        let (losses, rows) =
            self.at_moved_shared(&direction, lr as f32, |t| t.shared_task_rows(validation))?;
        Ok((lr, losses, rows))
    }

    /// The loss of every task on `batch` and every task's gradient with
    /// respect to the shared parameters (one row of `shared_len()` values per
    /// task), without changing anything.
    pub fn shared_task_gradients(&mut self, batch: &Batch) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let (losses, rows) = self.shared_task_rows(batch)?;
        let s = self.shared_len();
        let rows = (0..losses.len())
            .map(|t| rows[t * s..(t + 1) * s].to_vec())
            .collect();
        Ok((losses, rows))
    }

    /// [`Trainer::shared_task_gradients`] with the rows in one buffer
    /// (row-major `T x shared_len()`), as the balancers read them.
    pub(crate) fn shared_task_rows(&mut self, batch: &Batch) -> Result<(Vec<f32>, Vec<f32>)> {
        let (loss_vars, losses, _) = self.forward_losses(batch)?;
        let mut rows = Vec::new();
        self.task_param_rows(&loss_vars, &[], self.shared_range(), &mut rows)?;
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
            return Err(TrainError::Core(mtl_core::CoreError::ShapeMismatch {
                op: "look-ahead step",
                lhs: vec![shared.len()],
                rhs: vec![direction.len()],
            }));
        }
        match self.at_moved_shared(direction, lr, |t| t.forward_losses(batch)) {
            Ok((_, losses, _)) => Ok(Some(losses)),
            Err(TrainError::Diverged { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` with the shared parameters moved to `θ_s - lr * direction`,
    /// then copies the shared parameters and the non-trainable buffers back
    /// exactly, whatever `f` returned.
    pub(crate) fn at_moved_shared<R>(
        &mut self,
        direction: &[f32],
        lr: f32,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let shared = self.shared_range();
        let saved = self.ps.flat()[shared.clone()].to_vec();
        let buffers = self.ps.buffers_flat().to_vec();
        for (p, &g) in self.ps.flat_mut()[shared.clone()].iter_mut().zip(direction) {
            *p -= lr * g;
        }
        let result = f(self);
        self.ps.flat_mut()[shared].copy_from_slice(&saved);
        self.ps.buffers_flat_mut().copy_from_slice(&buffers);
        result
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

    /// Outputs of every task on every example of `data`, in evaluation mode.
    pub fn predict(&mut self, data: &dyn BatchSource) -> Result<Vec<Tensor>> {
        let rows: Vec<usize> = (0..data.len()).collect();
        let outputs = self.predict_chunks(rows.len(), |start, end| {
            Ok(Some(data.gather(&rows[start..end])?.x))
        })?;
        self.output_tensors(outputs, rows.len())
    }

    /// Outputs of every task on the examples of `features` (`[n, ...]`, in
    /// the layout and scale the model was trained on), in evaluation mode.
    pub fn predict_features(&mut self, features: &Tensor) -> Result<Vec<Tensor>> {
        let n = features.shape().first().copied().unwrap_or(0);
        let width = features.len() / n.max(1);
        let shape = features.shape().to_vec();
        let outputs = self.predict_chunks(n, |start, end| {
            let mut s = shape.clone();
            s[0] = end - start;
            Ok(Some(Tensor::from_vec(
                features.data()[start * width..end * width].to_vec(),
                &s,
            )?))
        })?;
        self.output_tensors(outputs, n)
    }

    /// Runs the model on examples `0..n`, [`EVAL_CHUNK`] at a time:
    /// `chunk(a, b)` gives the features of examples `a..b`, or `None` to
    /// skip them. Returns every task's outputs, row after row.
    fn predict_chunks(
        &mut self,
        n: usize,
        mut chunk: impl FnMut(usize, usize) -> Result<Option<Tensor>>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut outputs: Vec<Vec<f32>> = vec![Vec::new(); self.tasks.len()];
        let mut run = || -> Result<()> {
            for start in (0..n).step_by(EVAL_CHUNK) {
                let Some(x) = chunk(start, (start + EVAL_CHUNK).min(n))? else {
                    continue;
                };
                self.graph.reset();
                self.graph.set_training(false);
                let x = self.graph.input(x);
                let out = self.model.forward(&mut self.graph, &mut self.ps, x)?;
                for (o, v) in outputs.iter_mut().zip(&out.outputs) {
                    o.extend_from_slice(self.graph.value(*v)?.data());
                }
            }
            Ok(())
        };
        let result = run();
        self.graph.set_training(true);
        result.map(|()| outputs)
    }

    /// Every task's outputs of [`Trainer::predict_chunks`] as `[rows, width]`
    /// tensors.
    fn output_tensors(&self, outputs: Vec<Vec<f32>>, rows: usize) -> Result<Vec<Tensor>> {
        outputs
            .into_iter()
            .zip(&self.tasks)
            .map(|(o, t)| Ok(Tensor::from_vec(o, &[rows, t.output_width()])?))
            .collect()
    }

    /// Mean losses and default metrics of every task on every example of
    /// `data`.
    ///
    /// With a communicator of `W > 1` ranks, each rank runs the model on a
    /// contiguous share of the rows (the balanced partition of
    /// [`mtl_dist::split_counts`]) and the head outputs are all-gathered, so
    /// that every rank scores the whole split as one process does: losses
    /// and metrics (sums, counts, and those that need every prediction such
    /// as ROC-AUC, F1, NMI, ARI or the clustering loss alike) are
    /// bit-identical on every rank and to the single-process evaluation.
    /// Every rank reads the targets of every row; the model runs on `1/W`
    /// of them. It is then a collective call: every rank calls it, on the
    /// same data (a hook evaluating on rank 0 alone would wait forever).
    pub fn evaluate(&mut self, data: &dyn BatchSource) -> Result<Evaluation> {
        let n = data.len();
        let (rank, size) = (self.comm.rank(), self.comm.size());
        let counts = mtl_dist::split_counts(n, size)?;
        let first: usize = counts[..rank].iter().sum();
        let mine = first..first + counts[rank];
        let rows: Vec<usize> = (0..n).collect();
        let index = self.target_index.clone();
        let mut targets: Vec<Vec<Targets>> = vec![Vec::new(); self.tasks.len()];
        // Each chunk is gathered once: the features of this rank's rows go
        // to the model, the targets of every row are kept for the losses and
        // metrics.
        let local = self.predict_chunks(n, |start, end| {
            let mut batch = data.gather(&rows[start..end])?;
            for (t, &i) in index.iter().enumerate() {
                // Moved out of the batch, or copied when an earlier task
                // reads the same targets.
                let target = match index[..t].iter().position(|&j| j == i) {
                    Some(p) => targets[p].last().cloned(),
                    None => None,
                }
                .unwrap_or_else(|| {
                    std::mem::replace(
                        &mut batch.targets[i],
                        Targets::Unsupervised { reference: None },
                    )
                });
                targets[t].push(target);
            }
            let (a, b) = (start.max(mine.start), end.min(mine.end));
            if a >= b {
                return Ok(None);
            }
            if (a, b) == (start, end) {
                return Ok(Some(batch.x));
            }
            let width = batch.x.len() / (end - start);
            let mut shape = batch.x.shape().to_vec();
            shape[0] = b - a;
            let x = &batch.x.data()[(a - start) * width..(b - start) * width];
            Ok(Some(Tensor::from_vec(x.to_vec(), &shape)?))
        });
        let local = self.agreed(local)?;
        let outputs = match size {
            1 => self.output_tensors(local, n)?,
            _ => self.all_gather_outputs(local, &counts)?,
        };
        let mut losses = Vec::new();
        let mut metrics = Vec::new();
        let mut labelled = Vec::new();
        for (t, task) in self.tasks.iter().enumerate() {
            let targets = Targets::concat(&targets[t])?;
            labelled.push(task.labelled_count(&targets, rows.len()));
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
        Ok(Evaluation {
            losses,
            metrics,
            labelled,
        })
    }

    /// Every task's outputs on all rows from each rank's outputs on its
    /// share (`counts[r]` rows on rank `r`, in rank order): one all-gather
    /// per task.
    fn all_gather_outputs(&self, local: Vec<Vec<f32>>, counts: &[usize]) -> Result<Vec<Tensor>> {
        let rows: usize = counts.iter().sum();
        local
            .iter()
            .zip(&self.tasks)
            .map(|(mine, task)| {
                let width = task.output_width();
                let values: Vec<usize> = counts.iter().map(|c| c * width).collect();
                let mut all = vec![0.0f32; rows * width];
                self.comm.all_gather_f32(mine, &values, &mut all)?;
                Ok(Tensor::from_vec(all, &[rows, width])?)
            })
            .collect()
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

/// `Σ_t weights[t] · rows[t]` of `T` rows of `width` values, summed over
/// the tasks in order from −0 (as `Iterator::sum` does), so the result is the
/// same on one rank as on many.
pub(crate) fn weighted_rows<'a>(
    rows: impl IntoIterator<Item = &'a [f32]>,
    weights: &[f32],
    width: usize,
) -> Vec<f32> {
    let mut out = vec![-0.0f32; width];
    for (row, &w) in rows.into_iter().zip(weights) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += w * v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtl_core::arch::{build_model, ArchConfig, EncoderConfig, HeadConfig};
    use mtl_core::nn::Activation;
    use mtl_core::{TaskKind, TaskSpec};
    use mtl_optim::{AdamConfig, OptimizerConfig};

    /// A trainer of two regressions on four inputs (two hidden layers), with
    /// `optimizer`.
    fn trainer(optimizer: impl Into<OptimizerSpec>) -> Trainer {
        trainer_of(&["a", "b"], optimizer)
    }

    /// A trainer of one regression per name on four inputs (two hidden
    /// layers), with `optimizer`.
    fn trainer_of(names: &[&str], optimizer: impl Into<OptimizerSpec>) -> Trainer {
        let specs: Vec<TaskSpec> = names
            .iter()
            .map(|n| TaskSpec {
                name: (*n).into(),
                kind: TaskKind::Regression { outputs: 1 },
            })
            .collect();
        let mut ps = ParamStore::new();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let encoder = EncoderConfig::Mlp {
            hidden: vec![5, 3],
            dropout: 0.0,
            activation: Activation::Relu,
            layer_norm: false,
        };
        let arch = ArchConfig::Hps {
            head: HeadConfig::default(),
        };
        let model = build_model(&arch, &encoder, &[4], &specs, &mut ps, &mut rng).unwrap();
        let tasks = specs
            .into_iter()
            .map(Task::with_default_loss)
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        Trainer::builder(model, ps, tasks)
            .optimizer(optimizer)
            .build()
            .unwrap()
    }

    /// Six random rows of the [`trainer`]'s four inputs and two targets.
    fn random_batch(seed: u64) -> Batch {
        random_batch_of(2, seed)
    }

    /// Six random examples of four inputs with `tasks` regression targets.
    fn random_batch_of(tasks: usize, seed: u64) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Batch {
            x: Tensor::randn(&[6, 4], 0.0, 1.0, &mut rng).unwrap(),
            targets: (0..tasks)
                .map(|_| Targets::Values(Tensor::randn(&[6, 1], 0.0, 1.0, &mut rng).unwrap()))
                .collect(),
            indices: (0..6).collect(),
        }
    }

    #[test]
    fn the_last_layer_summed_from_task_rows_matches_its_own_product() {
        let mut t = trainer(OptimizerConfig::Adam(AdamConfig::default()));
        let batch = random_batch(11);
        let (losses, _, _) = t.forward_losses(&batch).unwrap();
        let range = t.last_shared_range().unwrap();
        assert!(range.start > 0 && range.end < t.ps.len(), "{range:?}");
        let mut rows = Vec::new();
        t.last_layer_rows(&losses, range.clone(), &mut rows)
            .unwrap();
        let w = [0.7f32, 1.3];
        let mut want = vec![f32::NAN; t.ps.len()];
        t.weighted_backward(&losses, &w, &mut want).unwrap();
        let mut got = vec![f32::NAN; t.ps.len()];
        t.weighted_backward_with_rows(&losses, (&w, &w), &rows, range.clone(), &mut got)
            .unwrap();
        // Outside the layer: the full pass's bits. In it: the same sums in
        // another order, within f32 rounding.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got[..range.start]), bits(&want[..range.start]));
        assert_eq!(bits(&got[range.end..]), bits(&want[range.end..]));
        let scale = want[range.clone()]
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        for (a, b) in got[range.clone()].iter().zip(&want[range.clone()]) {
            assert!((a - b).abs() <= 1e-6 * scale, "{a} vs {b}");
        }
        // Rows that carry a shard's scale already are weighted without it.
        let scaled: Vec<f32> = rows
            .chunks(range.len())
            .zip([2.0f32, 0.5])
            .flat_map(|(r, s)| r.iter().map(move |v| v * s))
            .collect();
        let seeds = [w[0] * 2.0, w[1] * 0.5];
        let mut shard = vec![f32::NAN; t.ps.len()];
        t.weighted_backward_with_rows(&losses, (&seeds, &w), &scaled, range.clone(), &mut shard)
            .unwrap();
        let mut full = vec![f32::NAN; t.ps.len()];
        t.weighted_backward(&losses, &seeds, &mut full).unwrap();
        for (a, b) in shard.iter().zip(&full) {
            assert!((a - b).abs() <= 1e-6 * scale.max(b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn representation_rows_are_the_task_gradients_and_name_the_first_bad_task() {
        let mut t = trainer(OptimizerConfig::Adam(AdamConfig::default()));
        let batch = random_batch(5);
        let (losses, _, rep) = t.forward_losses(&batch).unwrap();
        let z = rep.unwrap();
        let zlen = t.graph.value(z).unwrap().len();
        // Each task's pass seeded with its loss's gradient; a NaN seed makes
        // that task's row NaN.
        for (seeds, named) in [
            ([1.0, 1.0], None),
            ([1.0, f32::NAN], Some("\"b\"")),
            ([f32::NAN, f32::NAN], Some("\"a\"")),
        ] {
            let per: Vec<Gradients> = losses
                .iter()
                .zip(seeds)
                .map(|(&l, s)| {
                    t.graph
                        .backward_from(&[(l, Tensor::scalar(s))], &[z])
                        .unwrap()
                })
                .collect();
            let mut rows = vec![f32::NAN; 3];
            let got = t.representation_rows(&per, z, zlen, &mut rows);
            match named {
                None => {
                    got.unwrap();
                    assert_eq!(rows.len(), 2 * zlen);
                    for (gr, row) in per.iter().zip(rows.chunks(zlen)) {
                        assert_eq!(row, gr.get(z).unwrap().data());
                    }
                }
                Some(task) => {
                    let err = got.unwrap_err();
                    assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
                    assert!(err.to_string().contains(task), "{err}");
                }
            }
        }
    }

    #[test]
    fn shared_and_head_rows_are_each_tasks_full_gradient_split() {
        // Three tasks, so that the rows moved into place overlap the rows
        // they came from; the rows start longer than needed and NaN.
        let mut t = trainer_of(
            &["a", "b", "c"],
            OptimizerConfig::Adam(AdamConfig::default()),
        );
        let batch = random_batch_of(3, 8);
        let (losses, _, _) = t.forward_losses(&batch).unwrap();
        let shared = t.shared_range();
        let p = t.ps.len();
        assert!(
            shared.start == 0 && shared.end > 0 && shared.end < p,
            "{shared:?}"
        );
        let mut rows = vec![f32::NAN; 4 * p];
        let heads = t.shared_and_head_rows(&losses, &mut rows).unwrap();
        assert_eq!(rows.len(), 3 * shared.len());
        assert_eq!(heads.len(), 3 * (p - shared.end));
        for (i, &l) in losses.iter().enumerate() {
            let gr = t.graph.backward(&[(l, 1.0)]).unwrap();
            let mut want = vec![0.0f32; p];
            gr.accumulate_params(&t.graph, 0..p, &mut want).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let s = shared.len();
            assert_eq!(
                bits(&rows[i * s..(i + 1) * s]),
                bits(&want[..s]),
                "task {i}"
            );
            let h = p - s;
            assert_eq!(
                bits(&heads[i * h..(i + 1) * h]),
                bits(&want[s..]),
                "task {i}"
            );
            // Each task's head part holds its own head's gradient.
            assert!(heads[i * h..(i + 1) * h].iter().any(|&v| v != 0.0));
        }
        // The step writes the weighted heads from those rows.
        let w = [0.5f32, 2.0, -1.0];
        let mut grads = vec![f32::NAN; p];
        t.write_heads(&heads, &w, &mut grads);
        let mut want = vec![f32::NAN; p];
        t.weighted_backward(&losses, &w, &mut want).unwrap();
        for (j, (g, e)) in grads[shared.end..]
            .iter()
            .zip(&want[shared.end..])
            .enumerate()
        {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                "head entry {j}: {g} vs {e}"
            );
        }
    }

    #[test]
    fn groups_cover_only_without_gaps() {
        let g = |r: Range<usize>| OptimGroup::new(r);
        assert!(covers(&[], 10));
        assert!(covers(&[g(4..10), g(0..4)], 10));
        assert!(covers(&[g(0..6), g(3..10)], 10));
        assert!(!covers(&[g(0..4), g(5..10)], 10));
        assert!(!covers(&[g(0..9)], 10));
        assert!(!covers(&[g(1..10)], 10));
    }

    #[test]
    fn a_non_finite_gradient_is_named_and_changes_nothing() {
        let adam = OptimizerConfig::Adam(AdamConfig::default());
        let mut t = trainer(adam.clone());
        let len = t.ps.len();
        let head = t.ps.views().last().unwrap().clone();
        // Uncovered by a user's optimizer (its groups leave the last
        // parameter out) or covered by the whole-store default: both refuse.
        let partial = adam.build(vec![OptimGroup::new(0..head.offset)]).unwrap();
        for mut t in [trainer(adam), trainer(partial)] {
            let before = t.ps.flat().to_vec();
            let mut grads = vec![0.5f32; len];
            grads[head.offset] = f32::NAN;
            let err = t.apply_gradient(&mut grads).unwrap_err();
            assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
            assert!(err.to_string().contains(&head.name), "{err}");
            assert_eq!(t.ps.flat(), before.as_slice());
            assert_eq!(t.optimizer.steps_taken(), 0);
        }
        t.apply_gradient(&mut vec![0.5f32; len]).unwrap();
        assert_eq!(t.optimizer.steps_taken(), 1);
    }
}
