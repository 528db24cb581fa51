//! The checkpointable position of a balancer's seeded ChaCha generator.
//!
//! A ChaCha stream is fully described by its 32-byte seed, its stream number
//! and its word position, so restoring these three continues the exact
//! sequence of draws (resume equals an uninterrupted run).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Serialisable position of a [`ChaCha8Rng`]. The word position is a `u128`,
/// stored as a decimal string so every JSON reader keeps it exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// The 32-byte seed.
    pub seed: Vec<u8>,
    /// The stream number.
    pub stream: u64,
    /// The word position, in decimal.
    pub word_pos: String,
}

impl RngState {
    /// Captures the position of `rng`.
    pub fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed().to_vec(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// A generator at the captured position; a malformed seed or position
    /// (only possible in a hand-edited checkpoint) falls back to zeros.
    pub fn restore(&self) -> ChaCha8Rng {
        let mut seed = [0u8; 32];
        for (s, b) in seed.iter_mut().zip(&self.seed) {
            *s = *b;
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().unwrap_or(0));
        rng
    }
}

/// A balancer's ChaCha generator together with the seed it was built with,
/// so that it can be saved, restored and reset to its first draw.
#[derive(Debug, Clone)]
pub struct SeededRng {
    seed: u64,
    rng: ChaCha8Rng,
}

impl SeededRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The generator, to draw from.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The position to save in a checkpoint.
    pub fn saved(&self) -> RngState {
        RngState::of(&self.rng)
    }

    /// Continues from a saved position.
    pub fn restore(&mut self, saved: &RngState) {
        self.rng = saved.restore();
    }

    /// Back to the first draw of the seed.
    pub fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn restored_generator_continues_the_sequence() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let _: [u64; 7] = rng.gen();
        let state = RngState::of(&rng);
        let json = serde_json::to_value(&state).unwrap();
        let back: RngState = serde_json::from_value(json).unwrap();
        let mut copy = back.restore();
        let a: [u32; 9] = rng.gen();
        let b: [u32; 9] = copy.gen();
        assert_eq!(a, b);
    }
}
