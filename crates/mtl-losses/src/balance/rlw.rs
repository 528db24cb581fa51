//! Random Loss Weighting (RLW), Lin, Ye, Xu, Shi & Zhang (TMLR 2022).
//!
//! Every step draws `ε ~ N(0, I_T)` and uses `w = softmax(ε)`: positive
//! weights summing to 1, with `E[w_t] = 1/T`. The normal-plus-softmax
//! sampler is the one LibMTL and Nash-MTL use.
//!
//! The draws come from a ChaCha8 generator seeded from the `seed` given to
//! [`BalancerConfig::build`](super::BalancerConfig::build); the generator's
//! position is part of the saved state, so a resumed run draws the same
//! weights as an uninterrupted one.
//!
//! **Scale.** `softmax` already sums to 1: mean scale, returned as drawn.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{
    parse_state, require_tasks, to_state, BalanceInput, Balanced, Balancer, GradientSource,
    MethodConfig,
};
use crate::error::{Error, Result};

/// Configuration of [`RandomLossWeighting`]; it has no parameters (the seed
/// comes from the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlwConfig {}

impl MethodConfig for RlwConfig {
    const NAME: &'static str = "rlw";
    const SUMMARY: &'static str =
        "Random Loss Weighting: w = softmax(eps), eps ~ N(0, I) each step (Lin et al. 2022)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[];

    fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(RandomLossWeighting::new(num_tasks, seed)?))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RlwState {
    seed: u64,
    /// The generator's word position, in decimal (a `u128`).
    word_pos: String,
}

/// RLW; owns its seeded generator.
#[derive(Debug, Clone)]
pub struct RandomLossWeighting {
    num_tasks: usize,
    seed: u64,
    rng: ChaCha8Rng,
}

impl RandomLossWeighting {
    /// RLW for `num_tasks` tasks drawing from a generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::NoTasks`] for zero tasks.
    pub fn new(num_tasks: usize, seed: u64) -> Result<Self> {
        require_tasks(num_tasks)?;
        Ok(Self {
            num_tasks,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// Draws the next weight vector (`softmax` of a standard normal sample).
    pub fn draw(&mut self) -> Vec<f32> {
        let eps: Vec<f64> = (0..self.num_tasks)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        let max = eps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = eps.iter().map(|e| (e - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        exps.iter().map(|e| (e / sum) as f32).collect()
    }
}

impl Balancer for RandomLossWeighting {
    fn name(&self) -> &'static str {
        RlwConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn needs(&self) -> GradientSource {
        GradientSource::None
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        input.validate(self.num_tasks)?;
        // Every task's draw is made, present or not, so the stream does not
        // depend on which tasks are labelled.
        let drawn: Vec<f64> = self.draw().iter().map(|&w| f64::from(w)).collect();
        Ok(Balanced::Weights(input.present_weights(&drawn, true)))
    }

    fn state(&self) -> serde_json::Value {
        to_state(&RlwState {
            seed: self.seed,
            word_pos: self.rng.get_word_pos().to_string(),
        })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let loaded: RlwState = parse_state(self.name(), state)?;
        let word_pos: u128 = loaded.word_pos.parse().map_err(|_| Error::State {
            balancer: RlwConfig::NAME,
            reason: format!("word position `{}` is not an integer", loaded.word_pos),
        })?;
        self.seed = loaded.seed;
        self.rng = ChaCha8Rng::seed_from_u64(loaded.seed);
        self.rng.set_word_pos(word_pos);
        Ok(())
    }

    fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistical band: 4 standard errors of a mean over `DRAWS` samples
    /// (a false failure has probability ~6e-5 per check).
    const BAND_SIGMAS: f64 = 4.0;
    const DRAWS: usize = 40_000;

    fn moments(t: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rlw = RandomLossWeighting::new(t, seed).unwrap();
        let mut sum = vec![0.0; t];
        let mut sum_sq = vec![0.0; t];
        for _ in 0..DRAWS {
            let w = rlw.draw();
            for i in 0..t {
                sum[i] += f64::from(w[i]);
                sum_sq[i] += f64::from(w[i]) * f64::from(w[i]);
            }
        }
        let n = DRAWS as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| (s / n - m * m).sqrt())
            .collect();
        (mean, std)
    }

    #[test]
    fn rlw_1_every_draw_positive_summing_to_one() {
        let mut rlw = RandomLossWeighting::new(5, 3).unwrap();
        for _ in 0..1000 {
            let out = rlw.balance(&BalanceInput::from_losses(&[1.0; 5])).unwrap();
            let w = out.weights();
            assert!(w.iter().all(|w| *w > 0.0 && w.is_finite()), "{w:?}");
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{w:?}");
        }
    }

    #[test]
    fn rlw_2_mean_and_spread_match_theory() {
        // T = 2: std(w_1) = 0.261570; T = 3: std(w_i) = 0.222285.
        for (t, std_true) in [(2usize, 0.261570), (3, 0.222285)] {
            let (mean, std) = moments(t, 11);
            let band = BAND_SIGMAS * std_true / (DRAWS as f64).sqrt();
            for i in 0..t {
                assert!(
                    (mean[i] - 1.0 / t as f64).abs() < band,
                    "T={t} mean {mean:?}"
                );
                assert!((std[i] - std_true).abs() < band, "T={t} std {std:?}");
            }
        }
    }

    #[test]
    fn same_seed_same_draws_and_resume_continues_identically() {
        let mut a = RandomLossWeighting::new(4, 99).unwrap();
        let mut b = RandomLossWeighting::new(4, 99).unwrap();
        for _ in 0..5 {
            assert_eq!(a.draw(), b.draw());
        }
        let mut c = RandomLossWeighting::new(4, 100).unwrap();
        assert_ne!(a.draw(), c.draw());
        let saved = serde_json::to_string(&a.state()).unwrap();
        let expected: Vec<Vec<f32>> = (0..5).map(|_| a.draw()).collect();
        let mut resumed = RandomLossWeighting::new(4, 0).unwrap();
        resumed
            .load_state(&serde_json::from_str(&saved).unwrap())
            .unwrap();
        let got: Vec<Vec<f32>> = (0..5).map(|_| resumed.draw()).collect();
        assert_eq!(got, expected);
        resumed.reset();
        assert_eq!(
            resumed.draw(),
            RandomLossWeighting::new(4, 99).unwrap().draw()
        );
    }
}
