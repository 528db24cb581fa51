//! [`BatchNorm`]: batch normalisation with running statistics.

use rand::Rng;

use super::{Init, Module};
use crate::params::BufferId;
use crate::{Graph, ParamGroup, ParamId, ParamStore, Result, Var};

/// Batch normalisation per channel (axis 1) with learnable scale and shift and
/// running estimates of the mean and variance, updated in training mode as
/// `r ← (1 − momentum)·r + momentum·batch` (PyTorch's convention, unbiased
/// batch variance) and used in evaluation mode.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale `[C]`.
    pub gamma: ParamId,
    /// Shift `[C]`.
    pub beta: ParamId,
    /// Running mean `[C]` (a non-trainable buffer).
    pub running_mean: BufferId,
    /// Running variance `[C]` (a non-trainable buffer).
    pub running_var: BufferId,
    /// Weight of the new batch in the running estimates.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
}

impl BatchNorm {
    /// Registers `{name}.weight`, `{name}.bias` and the buffers
    /// `{name}.running_mean`, `{name}.running_var` for `channels` channels.
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        channels: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let gamma = ps.add(
            &format!("{name}.weight"),
            &[channels],
            group.clone(),
            Init::Ones,
            rng,
        )?;
        let beta = ps.add(
            &format!("{name}.bias"),
            &[channels],
            group,
            Init::Zeros,
            rng,
        )?;
        let running_mean = ps.add_buffer(&format!("{name}.running_mean"), vec![0.0; channels])?;
        let running_var = ps.add_buffer(&format!("{name}.running_var"), vec![1.0; channels])?;
        Ok(BatchNorm {
            gamma,
            beta,
            running_mean,
            running_var,
            momentum: 0.1,
            eps: 1e-5,
        })
    }
}

impl Module for BatchNorm {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let gamma = g.param(ps, self.gamma)?;
        let beta = g.param(ps, self.beta)?;
        let (y, stats) = {
            let mean = ps.buffer(self.running_mean)?;
            let var = ps.buffer(self.running_var)?;
            g.batch_norm(x, gamma, beta, self.eps, (mean, var))?
        };
        if let Some(stats) = stats {
            let m = self.momentum;
            for (r, b) in ps
                .buffer_mut(self.running_mean)?
                .iter_mut()
                .zip(&stats.mean)
            {
                *r = (1.0 - m) * *r + m * b;
            }
            for (r, b) in ps.buffer_mut(self.running_var)?.iter_mut().zip(&stats.var) {
                *r = (1.0 - m) * *r + m * b;
            }
        }
        Ok(y)
    }
}
