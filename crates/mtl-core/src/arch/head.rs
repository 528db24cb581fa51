//! [`Head`]: the task-specific output layer, shaped by the task's kind.

use rand::Rng;

use super::HeadConfig;
use crate::error::Result;
use crate::nn::{Init, Mlp, Module};
use crate::{Graph, ParamGroup, ParamId, ParamStore, TaskKind, TaskSpec, Var};

/// A task's head: a tower (`Mlp` of widths `[in, tower…, out]`, the
/// configured activation between layers, none after the last), and for
/// clustering learnable centroids.
///
/// What the output means, per [`TaskKind`]:
///
/// | kind | output | meaning |
/// |------|--------|---------|
/// | classification | `[B, classes]` | logits (softmax cross-entropy applies the softmax) |
/// | binary | `[B, 1]` | a logit (the sigmoid is inside the BCE-with-logits loss) |
/// | multilabel | `[B, labels]` | one logit per label |
/// | regression | `[B, outputs]` | the predicted values |
/// | clustering | `[B, clusters]` | probabilities: the Student-t soft assignment `q` |
///
/// A clustering head projects its input to an embedding `z` of size `d` and
/// compares it with learnable centroids `μ` `[clusters, d]` (Xie, Girshick &
/// Farhadi, 2016, "DEC"): `q_ij ∝ (1 + ‖z_i − μ_j‖²/α)^(−(α+1)/2)`, each row
/// summing to one. Its loss is `KL(P ‖ Q)` against the sharpened target `P`.
///
/// Parameters, all in the task's group: `{name}.{i}.weight` / `.bias` for the
/// layers and `{name}.centroids` for clustering (initialised `N(0, 1)`).
#[derive(Debug)]
pub struct Head {
    body: Mlp,
    centroids: Option<ParamId>,
    alpha: f32,
}

impl Head {
    /// Registers the head of `task` on inputs of width `in_features` under
    /// `name` (e.g. `heads.left`).
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        task: &TaskSpec,
        in_features: usize,
        config: &HeadConfig,
        rng: &mut R,
    ) -> Result<Head> {
        task.kind.validate()?;
        config.validate()?;
        let group = ParamGroup::task(&task.name);
        let out = match task.kind {
            TaskKind::Clustering { clusters } => config.embedding.unwrap_or(clusters),
            ref kind => kind.output_width(),
        };
        let mut widths = vec![in_features];
        widths.extend(&config.tower);
        widths.push(out);
        let body = Mlp::builder(&widths).activation(config.activation).build(
            ps,
            name,
            group.clone(),
            rng,
        )?;
        let centroids = match task.kind {
            TaskKind::Clustering { clusters } => Some(ps.add(
                &format!("{name}.centroids"),
                &[clusters, out],
                group,
                Init::Normal(1.0),
                rng,
            )?),
            _ => None,
        };
        Ok(Head {
            body,
            centroids,
            alpha: config.alpha,
        })
    }

    /// The centroids `[clusters, d]` of a clustering head (to initialise
    /// them, e.g. by k-means on embeddings), `None` for other kinds.
    pub fn centroids(&self) -> Option<ParamId> {
        self.centroids
    }

    /// Every parameter of the head, in the order it was registered.
    pub fn params(&self) -> Vec<ParamId> {
        let mut ids: Vec<ParamId> = self
            .body
            .layers()
            .iter()
            .flat_map(|l| std::iter::once(l.weight).chain(l.bias))
            .collect();
        ids.extend(self.centroids);
        ids
    }

    /// The embedding `z` `[B, d]` of a clustering head, or the output of any
    /// other head.
    pub fn embed(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        self.body.forward(g, ps, x)
    }
}

impl Module for Head {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let z = self.body.forward(g, ps, x)?;
        match self.centroids {
            Some(mu) => {
                let mu = g.param(ps, mu)?;
                g.student_t(z, mu, self.alpha)
            }
            None => Ok(z),
        }
    }
}
