//! A multi-task MLP written with candle: a shared trunk of fully connected
//! ReLU layers and one linear head per task, its parameters candle `Var`s.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// A fully connected layer `y = x W + b` with `W` stored `inputs × outputs`.
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// PyTorch's default initialisation: `W` and `b` uniform in
    /// `±1/√inputs`, drawn from `rng`.
    fn new(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Self> {
        let bound = 1.0 / (inputs as f32).sqrt();
        let mut uniform =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let weight = Tensor::from_vec(uniform(inputs * outputs), (inputs, outputs), device)?;
        let bias = Tensor::from_vec(uniform(outputs), outputs, device)?;
        Ok(Self {
            weight: Var::from_tensor(&weight)?,
            bias: Var::from_tensor(&bias)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight)?.broadcast_add(&self.bias)?)
    }

    /// The weight and the bias, in that order.
    fn vars(&self) -> [&Var; 2] {
        [&self.weight, &self.bias]
    }
}

/// Hard parameter sharing: `z = trunk(x)`, then `y_t = head_t(z)`.
pub struct MultiTaskMlp {
    trunk: Vec<Linear>,
    heads: Vec<Linear>,
}

impl MultiTaskMlp {
    /// A trunk `inputs → hidden[0] → … → hidden[last]` with a ReLU after
    /// every layer, and one linear head per entry of `head_outputs`,
    /// initialised from a ChaCha generator seeded with `seed`.
    ///
    /// # Errors
    /// A candle error if a tensor cannot be built.
    pub fn new(
        inputs: usize,
        hidden: &[usize],
        head_outputs: &[usize],
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut trunk = Vec::with_capacity(hidden.len());
        let mut width = inputs;
        for &h in hidden {
            trunk.push(Linear::new(width, h, &mut rng, device)?);
            width = h;
        }
        let heads = head_outputs
            .iter()
            .map(|&k| Linear::new(width, k, &mut rng, device))
            .collect::<Result<_>>()?;
        Ok(Self { trunk, heads })
    }

    /// The shared representation `z` of a batch `x` (`n × inputs`).
    ///
    /// # Errors
    /// A candle error on a shape mismatch.
    pub fn representation(&self, x: &Tensor) -> Result<Tensor> {
        let mut z = x.clone();
        for layer in &self.trunk {
            z = layer.forward(&z)?.relu()?;
        }
        Ok(z)
    }

    /// Every head's output for the representation `z`, in task order.
    ///
    /// # Errors
    /// A candle error on a shape mismatch.
    pub fn heads(&self, z: &Tensor) -> Result<Vec<Tensor>> {
        self.heads.iter().map(|head| head.forward(z)).collect()
    }

    /// Number of heads (tasks).
    pub fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    /// The trunk's parameters θ_sh, layer by layer (weight, then bias).
    pub fn shared_vars(&self) -> Vec<&Var> {
        self.trunk.iter().flat_map(Linear::vars).collect()
    }

    /// The last trunk layer's parameters (weight, then bias), GradNorm's `W`.
    pub fn last_shared_vars(&self) -> Vec<&Var> {
        self.trunk
            .last()
            .map(|l| l.vars().to_vec())
            .unwrap_or_default()
    }

    /// The parameters θ_t of head `t` (weight, then bias); empty past the last head.
    pub fn head_vars(&self, t: usize) -> Vec<&Var> {
        self.heads
            .get(t)
            .map(|l| l.vars().to_vec())
            .unwrap_or_default()
    }

    /// Every parameter, for the optimizer.
    pub fn all_vars(&self) -> Vec<Var> {
        self.trunk
            .iter()
            .chain(&self.heads)
            .flat_map(|l| l.vars().map(Var::clone))
            .collect()
    }
}
