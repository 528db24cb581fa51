//! [`Ltb`]: Learning to Branch, a tree of shared and task-specific blocks
//! whose branching is learned with Gumbel-softmax, then fixed.

use rand::{Rng, RngCore};

use super::model::check_tasks;
use super::{
    Encoder, EncoderConfig, Gate, GateWeights, Head, HeadConfig, MultiTaskModel, MultiTaskOutput,
};
use crate::error::{CoreError, Result};
use crate::nn::Module;
use crate::{BufferId, Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Tensor, Var};

/// The tree entry of a block whose parent is still being learned.
const SEARCHING: f32 = -1.0;

/// How Learning to Branch lays out its blocks and when it fixes its tree.
#[derive(Clone, Debug, PartialEq)]
pub struct BranchSettings {
    /// Blocks in every layer but the last, first to last: one entry per
    /// encoder stage but the last (the last layer has one block per task).
    pub blocks: Vec<usize>,
    /// Gumbel-softmax temperature `τ₀` at the first epoch (positive).
    pub temperature: f32,
    /// Temperature `τ_end` the annealing reaches at epoch `search_epochs`
    /// (positive).
    pub final_temperature: f32,
    /// Epochs during which the branching is learned (at least 1); the tree
    /// is fixed when epoch `search_epochs` (counted from 0) begins.
    pub search_epochs: u64,
}

impl BranchSettings {
    /// Checks the block counts, the temperatures and the search length.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(CoreError::InvalidArgument {
                what: format!("ltb {what}"),
                reason,
            })
        };
        if self.blocks.is_empty() || self.blocks.contains(&0) {
            return bad(
                "blocks",
                format!(
                    "{:?}: need at least one layer below the task layer, each with a block",
                    self.blocks
                ),
            );
        }
        for (what, t) in [
            ("temperature", self.temperature),
            ("final_temperature", self.final_temperature),
        ] {
            if !(t > 0.0 && t.is_finite()) {
                return bad(what, format!("{t} must be positive and finite"));
            }
        }
        if self.search_epochs == 0 {
            return bad("search_epochs", "must be at least 1".into());
        }
        Ok(())
    }

    /// The temperature during epoch `epoch` of the search: geometric
    /// annealing `τ₀ · (τ_end/τ₀)^(epoch/search_epochs)`, constant within an
    /// epoch.
    pub fn temperature_at(&self, epoch: u64) -> f32 {
        let progress = epoch.min(self.search_epochs) as f64 / self.search_epochs as f64;
        let (start, end) = (self.temperature as f64, self.final_temperature as f64);
        (start * (end / start).powf(progress)) as f32
    }
}

/// Learning to Branch (Guo, Lee & Ulbricht, ICML 2020) on the stages of an
/// [`Encoder`].
///
/// Layer `l` of the tree holds `N_l` blocks, each one stage `l` of the
/// encoder (`blocks` gives `N_0 … N_{L−2}`; the last layer has one block per
/// task, and a head reads it). Every block of layer 0 reads the input. A block
/// `i` of a later layer reads a mixture of the blocks of the layer below,
/// weighted by a Gumbel-softmax sample over its learnable branching logits
/// `α_i` `[1, N_{l−1}]`:
///
/// ```text
/// d_i = softmax((α_i + g) / τ),  g_j = −ln(−ln u_j),  u_j ~ U(0, 1)
/// input_i = Σ_j d_ij · y_j
/// ```
///
/// One sample is drawn per block and forward pass (the whole batch follows
/// the same soft tree), from the graph's seeded random stream, so a step's
/// noise depends only on the seed the graph was given. In evaluation mode the
/// noise is left out (`softmax(α_i/τ)`).
///
/// What is learned, and when it is frozen: the blocks, heads and branching
/// logits train together. The temperature starts at `temperature` and is
/// annealed geometrically towards `final_temperature` over `search_epochs`
/// epochs ([`BranchSettings::temperature_at`]), so the samples move from
/// near-uniform mixtures to near one-hot choices. When epoch `search_epochs`
/// begins ([`MultiTaskModel::begin_step`]), or when [`Ltb::fix_tree`] is
/// called, every block keeps the parent with the largest logit (the first on
/// ties) and reads it alone from then on: the tree is fixed, the logits
/// receive no more gradient, and blocks no task reaches are no longer
/// computed. The training then goes on with the fixed tree (the paper
/// retrains it; here it is fine-tuned in place). The temperature and the
/// chosen parents live in the buffers `branching.temperature` and
/// `branching.tree` (a parent's index per block of layers `1 … L−1`, −1
/// while searching), so checkpoints carry them and a resumed run is
/// bit-identical.
///
/// Parameters: `layers.{l}.{b}.*` and `branching.{l}.{b}` (shared) for the
/// layers below the last; `layers.{L−1}.{task}.*`, `branching.{L−1}.{task}`
/// and `heads.{task}.*` (task group). The last shared layer is layer `L−2`'s
/// blocks. There is no shared representation: which blocks a task shares
/// depends on the learned tree.
#[derive(Debug)]
pub struct Ltb {
    tasks: Vec<TaskSpec>,
    settings: BranchSettings,
    /// `layers[l][b]`: stage `l` of the encoder, block `b` of layer `l`.
    layers: Vec<Vec<Encoder>>,
    /// `branching[l − 1][b]`: the logits of block `b` of layer `l ≥ 1`.
    branching: Vec<Vec<ParamId>>,
    /// The names of the blocks, as in `layers.{l}.{name}`.
    block_names: Vec<Vec<String>>,
    heads: Vec<Head>,
    tree: BufferId,
    temperature: BufferId,
}

impl Ltb {
    /// Registers, layer by layer, the branching logits of the layer's blocks
    /// (from layer 1, all zero: every parent equally likely) and the blocks,
    /// then the heads and the two buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        settings: &BranchSettings,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<Ltb> {
        check_tasks("ltb", tasks)?;
        settings.validate()?;
        let stages = Encoder::num_stages_of(encoder, input_shape)?;
        if settings.blocks.len() + 1 != stages {
            return Err(CoreError::InvalidArgument {
                what: "ltb blocks".into(),
                reason: format!(
                    "{:?} has {} layers, but the {} encoder has {stages} stages: \
                     give one block count per stage but the last (which has one block per task)",
                    settings.blocks,
                    settings.blocks.len(),
                    encoder.name()
                ),
            });
        }
        let last = stages - 1;
        let mut layers = Vec::with_capacity(stages);
        let mut branching = Vec::with_capacity(last);
        let mut block_names = Vec::with_capacity(stages);
        for l in 0..stages {
            let names: Vec<(String, ParamGroup)> = if l == last {
                tasks
                    .iter()
                    .map(|t| (t.name.clone(), ParamGroup::task(&t.name)))
                    .collect()
            } else {
                (0..settings.blocks[l])
                    .map(|b| (b.to_string(), ParamGroup::Shared))
                    .collect()
            };
            if l > 0 {
                let parents = settings.blocks[l - 1];
                let logits = names
                    .iter()
                    .map(|(name, group)| {
                        ps.add_values(
                            &format!("branching.{l}.{name}"),
                            &[1, parents],
                            group.clone(),
                            vec![0.0; parents],
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                branching.push(logits);
            }
            let full: Vec<(String, ParamGroup)> = names
                .iter()
                .map(|(name, group)| (format!("layers.{l}.{name}"), group.clone()))
                .collect();
            layers.push(Encoder::build_stages(
                encoder,
                input_shape,
                l..l + 1,
                ps,
                &full,
                rng,
            )?);
            block_names.push(names.into_iter().map(|(name, _)| name).collect());
        }
        let width = layers[last].first().map_or(0, Encoder::out_features);
        let heads = tasks
            .iter()
            .map(|t| Head::new(ps, &format!("heads.{}", t.name), t, width, head, rng))
            .collect::<Result<_>>()?;
        let with_parents: usize = layers[1..].iter().map(Vec::len).sum();
        let tree = ps.add_buffer("branching.tree", vec![SEARCHING; with_parents])?;
        let temperature = ps.add_buffer("branching.temperature", vec![settings.temperature])?;
        Ok(Ltb {
            tasks: tasks.to_vec(),
            settings: settings.clone(),
            layers,
            branching,
            block_names,
            heads,
            tree,
            temperature,
        })
    }

    /// The settings the tree was built with.
    pub fn settings(&self) -> &BranchSettings {
        &self.settings
    }

    /// The fixed tree: for every layer from 1, the parent each block reads
    /// (an index into the layer below; the last layer's blocks in task
    /// order), or `None` while the branching is still learned. A
    /// `branching.tree` buffer that is neither all −1 nor all valid indices
    /// (a damaged checkpoint) is an error.
    pub fn tree(&self, ps: &ParamStore) -> Result<Option<Vec<Vec<usize>>>> {
        let flat = ps.buffer(self.tree)?;
        if flat.iter().all(|&p| p == SEARCHING) {
            return Ok(None);
        }
        let mut rest = flat;
        let mut tree = Vec::with_capacity(self.branching.len());
        for (l, logits) in self.branching.iter().enumerate() {
            let parents = self.layers[l].len();
            let (layer, tail) = rest.split_at(logits.len().min(rest.len()));
            let chosen = layer
                .iter()
                .map(|&p| {
                    if p >= 0.0 && p.fract() == 0.0 && (p as usize) < parents {
                        Ok(p as usize)
                    } else {
                        Err(CoreError::InvalidArgument {
                            what: "ltb buffer branching.tree".into(),
                            reason: format!(
                                "{p} is not a block of layer {l} (0 to {}), nor −1 on every \
                                 block (still searching)",
                                parents - 1
                            ),
                        })
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            tree.push(chosen);
            rest = tail;
        }
        Ok(Some(tree))
    }

    /// Fixes the tree now: every block keeps the parent with the largest
    /// branching logit (the first on ties). Nothing changes if the tree is
    /// already fixed.
    pub fn fix_tree(&self, ps: &mut ParamStore) -> Result<()> {
        if self.tree(ps)?.is_some() {
            return Ok(());
        }
        let mut parents = Vec::with_capacity(ps.buffer(self.tree)?.len());
        for &id in self.branching.iter().flatten() {
            let logits = ps.values(id)?;
            let best = logits
                .iter()
                .enumerate()
                .fold(0, |best, (j, &v)| if v > logits[best] { j } else { best });
            parents.push(best as f32);
        }
        ps.buffer_mut(self.tree)?.copy_from_slice(&parents);
        Ok(())
    }

    /// The temperature the next forward pass uses.
    pub fn temperature(&self, ps: &ParamStore) -> Result<f32> {
        let t = ps.buffer(self.temperature)?[0];
        if t > 0.0 && t.is_finite() {
            Ok(t)
        } else {
            Err(CoreError::InvalidArgument {
                what: "ltb buffer branching.temperature".into(),
                reason: format!("{t} must be positive and finite"),
            })
        }
    }

    /// Which blocks of each layer some task reaches through `tree`.
    fn reached(&self, tree: &[Vec<usize>]) -> Vec<Vec<bool>> {
        let mut reached: Vec<Vec<bool>> =
            self.layers.iter().map(|l| vec![false; l.len()]).collect();
        if let Some(top) = reached.last_mut() {
            top.fill(true);
        }
        for l in (1..self.layers.len()).rev() {
            for (b, &parent) in tree[l - 1].iter().enumerate() {
                if reached[l][b] {
                    reached[l - 1][parent] = true;
                }
            }
        }
        reached
    }

    /// The branching weights `[B, N_{l−1}]` of block `b` of layer `l`: a
    /// Gumbel-softmax sample in training mode, `softmax(α/τ)` in evaluation.
    fn branch_weights(
        &self,
        g: &mut Graph,
        ps: &ParamStore,
        l: usize,
        b: usize,
        batch: usize,
        temperature: f32,
    ) -> Result<Var> {
        let alpha = g.param(ps, self.branching[l - 1][b])?;
        let logits = if g.is_training() {
            let n = self.layers[l - 1].len();
            let rng = g.rng_mut();
            let noise: Vec<f32> = (0..n).map(|_| gumbel(rng)).collect();
            let noise = g.input(Tensor::from_vec(noise, &[1, n])?);
            g.add(alpha, noise)?
        } else {
            alpha
        };
        let scaled = g.mul_scalar(logits, 1.0 / temperature)?;
        let weights = g.softmax(scaled)?;
        g.gather_rows(weights, &vec![0; batch])
    }
}

/// A standard Gumbel draw `−ln(−ln u)`, with `u` strictly inside `(0, 1)`
/// (the midpoint of one of 2³² equal cells) so that both logarithms are finite.
fn gumbel<R: RngCore + ?Sized>(rng: &mut R) -> f32 {
    let u = (rng.next_u32() as f64 + 0.5) / 4_294_967_296.0;
    (-(-u.ln()).ln()) as f32
}

impl MultiTaskModel for Ltb {
    fn name(&self) -> &'static str {
        "ltb"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        let batch = g.shape(x)?.first().copied().unwrap_or(0);
        let temperature = self.temperature(ps)?;
        let tree = self.tree(ps)?;
        let reached = tree.as_ref().map(|t| self.reached(t));
        let mut gates = Vec::new();
        let mut below: Vec<Option<Var>> = Vec::new();
        for (l, blocks) in self.layers.iter().enumerate() {
            let mut here = Vec::with_capacity(blocks.len());
            for (b, block) in blocks.iter().enumerate() {
                if reached.as_ref().is_some_and(|r| !r[l][b]) {
                    here.push(None);
                    continue;
                }
                let input = if l == 0 {
                    x
                } else if let Some(tree) = &tree {
                    let parent = tree[l - 1][b];
                    below[parent].ok_or(CoreError::Index {
                        op: "ltb tree",
                        index: parent,
                        len: below.len(),
                    })?
                } else {
                    let parents: Vec<Var> = below.iter().flatten().copied().collect();
                    let w = self.branch_weights(g, ps, l, b, batch, temperature)?;
                    gates.push(GateWeights {
                        name: format!("branching.{l}.{}", self.block_names[l][b]),
                        weights: w,
                    });
                    Gate::mix(g, w, &parents)?
                };
                here.push(Some(block.forward(g, ps, input)?));
            }
            below = here;
        }
        let outputs = self
            .heads
            .iter()
            .zip(&below)
            .map(|(head, y)| {
                let y = y.ok_or(CoreError::InvalidArgument {
                    what: "ltb forward".into(),
                    reason: "a task block was not computed".into(),
                })?;
                head.forward(g, ps, y)
            })
            .collect::<Result<_>>()?;
        Ok(MultiTaskOutput {
            representation: None,
            outputs,
            gates,
            penalties: Vec::new(),
        })
    }

    fn begin_step(&self, ps: &mut ParamStore, _step: u64, epoch: u64) -> Result<()> {
        if self.tree(ps)?.is_some() {
            return Ok(());
        }
        if epoch >= self.settings.search_epochs {
            return self.fix_tree(ps);
        }
        ps.buffer_mut(self.temperature)?[0] = self.settings.temperature_at(epoch);
        Ok(())
    }

    fn has_representation(&self) -> bool {
        false
    }

    fn why_no_representation(&self) -> &'static str {
        "the tree is learned: which blocks a task shares, and where it branches off, \
         depends on the branching, so no fixed node separates shared from task-specific \
         parameters"
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        let below_tasks = self.layers.len().saturating_sub(2);
        self.layers
            .get(below_tasks)
            .map_or_else(Vec::new, |blocks| {
                blocks.iter().flat_map(Encoder::params).collect()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn settings() -> BranchSettings {
        BranchSettings {
            blocks: vec![2, 3],
            temperature: 4.0,
            final_temperature: 0.25,
            search_epochs: 4,
        }
    }

    #[test]
    fn temperature_anneals_geometrically_to_the_final_value() {
        let s = settings();
        // 4 · (1/16)^(e/4): 4, 2, 1, 0.5, then 0.25 from epoch 4 on.
        let got: Vec<f32> = (0..6).map(|e| s.temperature_at(e)).collect();
        let want = [4.0, 2.0, 1.0, 0.5, 0.25, 0.25];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(settings().validate().is_ok());
        for bad in [
            BranchSettings {
                blocks: vec![],
                ..settings()
            },
            BranchSettings {
                blocks: vec![2, 0],
                ..settings()
            },
            BranchSettings {
                temperature: 0.0,
                ..settings()
            },
            BranchSettings {
                final_temperature: f32::NAN,
                ..settings()
            },
            BranchSettings {
                search_epochs: 0,
                ..settings()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gumbel_draws_are_finite_with_the_standard_mean() {
        let mut rng = rand_chacha::ChaCha8Rng::from_seed([7; 32]);
        let n = 20_000;
        let draws: Vec<f32> = (0..n).map(|_| gumbel(&mut rng)).collect();
        assert!(draws.iter().all(|d| d.is_finite()));
        // The Gumbel mean is the Euler–Mascheroni constant 0.5772 with
        // variance π²/6 ≈ 1.64: the mean of 20 000 draws is within
        // 4 standard errors (4 · 1.28/141 ≈ 0.036) of it.
        let mean = draws.iter().map(|&d| d as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5772).abs() < 0.036, "{mean}");
    }
}
