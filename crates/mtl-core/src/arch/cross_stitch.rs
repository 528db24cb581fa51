//! [`CrossStitch`]: one column per task, mixed by cross-stitch units.

use rand::Rng;

use super::model::check_tasks;
use super::{Encoder, EncoderConfig, Head, HeadConfig, MultiTaskModel, MultiTaskOutput};
use crate::error::Result;
use crate::nn::Module;
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskSpec, Var};

/// Cross-stitch networks (Misra, Shrivastava, Gupta & Hebert, 2016): each task
/// `t` has its own column (an encoder), and after every stage `l` a
/// cross-stitch unit `A^(l)` `[T, T]` mixes the columns' activations:
/// `h̃_t^(l) = Σ_s A^(l)_ts · h_s^(l)`. Heads read `h̃_t^(L)`.
///
/// `A` starts with `self_weight` on the diagonal and `(1 − self_weight)/(T − 1)`
/// elsewhere (the paper's 0.9 / 0.1 for two tasks).
///
/// Parameters: `columns.{task}.*` and `heads.{task}.*` (task group),
/// `cross_stitch.{l}` (shared). The last shared layer is the last unit. There
/// is no shared representation: the shared parameters are the units, spread
/// over every stage between task-specific layers.
#[derive(Debug)]
pub struct CrossStitch {
    tasks: Vec<TaskSpec>,
    columns: Vec<Encoder>,
    units: Vec<ParamId>,
    heads: Vec<Head>,
}

impl CrossStitch {
    /// Registers the columns (stage by stage), the units, then the heads.
    pub fn new<R: Rng + ?Sized>(
        encoder: &EncoderConfig,
        head: &HeadConfig,
        self_weight: f32,
        input_shape: &[usize],
        tasks: &[TaskSpec],
        ps: &mut ParamStore,
        rng: &mut R,
    ) -> Result<CrossStitch> {
        check_tasks("cross-stitch", tasks)?;
        let names: Vec<(String, ParamGroup)> = tasks
            .iter()
            .map(|t| (format!("columns.{}", t.name), ParamGroup::task(&t.name)))
            .collect();
        let columns = Encoder::build_many(encoder, input_shape, ps, &names, rng)?;
        let n = tasks.len();
        let off = if n > 1 {
            (1.0 - self_weight) / (n - 1) as f32
        } else {
            0.0
        };
        let init: Vec<f32> = (0..n * n)
            .map(|i| {
                if i / n == i % n {
                    if n > 1 {
                        self_weight
                    } else {
                        1.0
                    }
                } else {
                    off
                }
            })
            .collect();
        let stages = columns.first().map_or(0, Encoder::num_stages);
        let units = (0..stages)
            .map(|l| {
                ps.add_values(
                    &format!("cross_stitch.{l}"),
                    &[n, n],
                    ParamGroup::Shared,
                    init.clone(),
                )
            })
            .collect::<Result<_>>()?;
        let width = columns.first().map_or(0, Encoder::out_features);
        let heads = tasks
            .iter()
            .map(|t| Head::new(ps, &format!("heads.{}", t.name), t, width, head, rng))
            .collect::<Result<_>>()?;
        Ok(CrossStitch {
            tasks: tasks.to_vec(),
            columns,
            units,
            heads,
        })
    }

    /// The cross-stitch units `[T, T]`, one per stage.
    pub fn units(&self) -> &[ParamId] {
        &self.units
    }
}

/// `h̃ = A · [h_1; …; h_T]`: every activation flattened to one row of `n`
/// values, the rows stacked `[T, n]`, multiplied by the unit `A`, split back.
fn stitch(g: &mut Graph, unit: Var, hs: &[Var]) -> Result<Vec<Var>> {
    let shape = g.shape(hs[0])?.to_vec();
    let n: usize = shape.iter().product();
    let rows = hs
        .iter()
        .map(|&h| g.reshape(h, &[1, n]))
        .collect::<Result<Vec<_>>>()?;
    let stacked = g.concat(&rows, 0)?;
    let mixed = g.matmul(unit, stacked)?;
    (0..hs.len())
        .map(|t| {
            let row = g.narrow(mixed, 0, t, 1)?;
            g.reshape(row, &shape)
        })
        .collect()
}

impl MultiTaskModel for CrossStitch {
    fn name(&self) -> &'static str {
        "cross-stitch"
    }

    fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    fn heads(&self) -> &[Head] {
        &self.heads
    }

    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<MultiTaskOutput> {
        let first = match self.columns.first() {
            Some(column) => column.prepare(g, x)?,
            None => x,
        };
        let mut hs = vec![first; self.columns.len()];
        for (l, &unit) in self.units.iter().enumerate() {
            for (h, column) in hs.iter_mut().zip(&self.columns) {
                *h = column.forward_stage(l, g, ps, *h)?;
            }
            let a = g.param(ps, unit)?;
            hs = stitch(g, a, &hs)?;
        }
        let outputs = self
            .heads
            .iter()
            .zip(&hs)
            .map(|(head, &h)| head.forward(g, ps, h))
            .collect::<Result<_>>()?;
        Ok(MultiTaskOutput {
            representation: None,
            outputs,
            gates: Vec::new(),
            penalties: Vec::new(),
        })
    }

    fn has_representation(&self) -> bool {
        false
    }

    fn why_no_representation(&self) -> &'static str {
        "each task has its own column; the shared cross-stitch units sit between \
         task-specific layers at every stage"
    }

    fn last_shared_params(&self) -> Vec<ParamId> {
        self.units.last().copied().into_iter().collect()
    }
}
