//! The serialisable state of an optimizer, for checkpoints and resume.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{OptimError, Result};

/// Everything an optimizer accumulates while stepping: the step count, the
/// current learning rate and its per-parameter buffers (moments, momentum,
/// accumulators), named as in PyTorch (`exp_avg`, `exp_avg_sq`,
/// `momentum_buffer`, …).
///
/// Loading a state saved after `k` steps into a fresh optimizer built from
/// the same configuration and continuing gives bit-identical parameters to an
/// uninterrupted run. Hyperparameters are not part of the state: they come
/// from the configuration.
///
/// Buffers are serialised as f64 numbers, each the exact value of its f32, so
/// a round trip through a text format (JSON, TOML) reproduces every bit even
/// if the parser is off by an f64 ulp. The f64 learning rate needs a
/// correctly rounding parser to come back bit for bit: the workspace enables
/// serde_json's `float_roundtrip` feature for that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerState {
    /// Name of the optimizer that wrote the state (`"adam"`, `"sgd"`, …).
    pub optimizer: String,
    /// Number of steps taken.
    pub step: u64,
    /// Learning rate at the time of saving.
    pub lr: f64,
    /// Per-parameter buffers by name; empty before the first step.
    #[serde(serialize_with = "serialize_buffers")]
    #[serde(deserialize_with = "deserialize_buffers")]
    pub buffers: BTreeMap<String, Vec<f32>>,
}

struct Widened<'a>(&'a [f32]);

impl Serialize for Widened<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|&x| f64::from(x)))
    }
}

fn serialize_buffers<S: Serializer>(
    buffers: &BTreeMap<String, Vec<f32>>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_map(buffers.iter().map(|(k, v)| (k, Widened(v))))
}

fn deserialize_buffers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, Vec<f32>>, D::Error> {
    let wide = BTreeMap::<String, Vec<f64>>::deserialize(deserializer)?;
    Ok(wide
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|x| x as f32).collect()))
        .collect())
}

impl OptimizerState {
    /// Checks that the state was written by `optimizer` with exactly the
    /// buffers `names`, all of one length, and returns them in the order of
    /// `names` together with the step and learning rate.
    pub(crate) fn into_parts(
        self,
        optimizer: &str,
        names: &[&str],
    ) -> Result<(u64, f64, Vec<Vec<f32>>)> {
        if self.optimizer != optimizer {
            return Err(OptimError::StateMismatch {
                reason: format!(
                    "state was written by `{}` but is loaded into `{optimizer}`",
                    self.optimizer
                ),
            });
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(OptimError::InvalidConfig {
                key: "lr",
                value: self.lr,
                reason: "must be finite and >= 0",
            });
        }
        let mut buffers = self.buffers;
        let parts: Vec<Vec<f32>> = names
            .iter()
            .map(|&name| buffers.remove(name).unwrap_or_default())
            .collect();
        if let Some(extra) = buffers.keys().next() {
            return Err(OptimError::StateMismatch {
                reason: format!("unexpected buffer `{extra}` for `{optimizer}`"),
            });
        }
        let expected = parts.iter().map(Vec::len).max().unwrap_or(0);
        if self.step > 0 {
            for (name, buf) in names.iter().zip(&parts) {
                if buf.len() != expected || expected == 0 {
                    return Err(OptimError::StateLengthMismatch {
                        buffer: (*name).to_owned(),
                        expected,
                        found: buf.len(),
                    });
                }
            }
        } else if expected != 0 {
            return Err(OptimError::StateMismatch {
                reason: "buffers present in a state with step 0".to_owned(),
            });
        }
        Ok((self.step, self.lr, parts))
    }
}

/// Sizes `buffer` to `len` filled with `init` on the first step, or checks its
/// length on later ones.
pub(crate) fn ensure_len(buffer: &mut Vec<f32>, name: &str, len: usize, init: f32) -> Result<()> {
    if buffer.is_empty() {
        buffer.resize(len, init);
        Ok(())
    } else if buffer.len() != len {
        Err(OptimError::StateLengthMismatch {
            buffer: name.to_owned(),
            expected: len,
            found: buffer.len(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(buffers: &[(&str, Vec<f32>)]) -> OptimizerState {
        OptimizerState {
            optimizer: "adam".to_owned(),
            step: 3,
            lr: 1e-3,
            buffers: buffers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn json_round_trip_keeps_every_bit() {
        let values = vec![
            0.1f32,
            1.0 / 3.0,
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE / 3.0,
            -f32::MAX,
            16_777_217.0,
            -0.0,
        ];
        let s = state(&[("exp_avg", values.clone())]);
        let back: OptimizerState =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.buffers["exp_avg"]), bits(&values));
    }

    #[test]
    fn rejects_wrong_optimizer_extra_buffer_and_ragged_lengths() {
        let s = state(&[("exp_avg", vec![0.0; 3]), ("exp_avg_sq", vec![0.0; 3])]);
        assert!(matches!(
            s.clone().into_parts("sgd", &["momentum_buffer"]),
            Err(OptimError::StateMismatch { .. })
        ));
        assert!(matches!(
            s.clone().into_parts("adam", &["exp_avg"]),
            Err(OptimError::StateMismatch { .. })
        ));
        let ragged = state(&[("exp_avg", vec![0.0; 3]), ("exp_avg_sq", vec![0.0; 2])]);
        assert_eq!(
            ragged.into_parts("adam", &["exp_avg", "exp_avg_sq"]),
            Err(OptimError::StateLengthMismatch {
                buffer: "exp_avg_sq".to_owned(),
                expected: 3,
                found: 2
            })
        );
        let (step, lr, parts) = s.into_parts("adam", &["exp_avg", "exp_avg_sq"]).unwrap();
        let [m, v] = <[Vec<f32>; 2]>::try_from(parts).unwrap();
        assert_eq!((step, lr, m.len(), v.len()), (3, 1e-3, 3, 3));
    }
}
