//! Seeded parameter initialisation.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::Tensor;

/// How a parameter's first values are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every value equal to the constant.
    Constant(f32),
    /// Normal with mean 0 and the given standard deviation.
    Normal(f32),
    /// Uniform in `[-bound, bound)`.
    Uniform(f32),
    /// He/Kaiming uniform for ReLU networks (He et al., 2015):
    /// `U(-b, b)` with `b = sqrt(6 / fan_in)`.
    KaimingUniform {
        /// Inputs per output unit.
        fan_in: usize,
    },
    /// He/Kaiming normal for ReLU networks: `N(0, 2 / fan_in)`.
    KaimingNormal {
        /// Inputs per output unit.
        fan_in: usize,
    },
    /// Glorot/Xavier uniform (Glorot & Bengio, 2010):
    /// `U(-b, b)` with `b = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform {
        /// Inputs per output unit.
        fan_in: usize,
        /// Outputs per input unit.
        fan_out: usize,
    },
}

impl Init {
    /// Draws values of `shape` from `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, shape: &[usize], rng: &mut R) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let positive = |what: &str, v: usize| {
            if v == 0 {
                Err(CoreError::InvalidArgument {
                    what: format!("init {what}"),
                    reason: "must be positive".into(),
                })
            } else {
                Ok(v as f32)
            }
        };
        let values = match *self {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(c) => vec![c; n],
            Init::Normal(std) => Tensor::randn(shape, 0.0, std, rng)?.into_vec(),
            Init::Uniform(b) => Tensor::rand_uniform(shape, -b, b, rng)?.into_vec(),
            Init::KaimingUniform { fan_in } => {
                let b = (6.0 / positive("fan_in", fan_in)?).sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)?.into_vec()
            }
            Init::KaimingNormal { fan_in } => {
                let std = (2.0 / positive("fan_in", fan_in)?).sqrt();
                Tensor::randn(shape, 0.0, std, rng)?.into_vec()
            }
            Init::XavierUniform { fan_in, fan_out } => {
                let b = (6.0 / positive("fan_in + fan_out", fan_in + fan_out)?).sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)?.into_vec()
            }
        };
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn kaiming_uniform_respects_its_bound_and_variance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let v = Init::KaimingUniform { fan_in: 150 }
            .sample(&[20_000], &mut rng)
            .unwrap();
        let b = (6.0f32 / 150.0).sqrt();
        assert!(v.iter().all(|x| x.abs() <= b));
        // Var of U(-b, b) is b²/3 = 2 / fan_in; 20 000 draws give ~1 % error.
        let var = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        assert!((var - 2.0 / 150.0).abs() < 0.05 * 2.0 / 150.0, "{var}");
    }
}
