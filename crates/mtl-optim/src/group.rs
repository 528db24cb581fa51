//! Parameter groups: ranges of the flat parameter buffer with their own
//! learning-rate factor and weight decay.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::elementwise::first_non_finite;
use crate::error::{OptimError, Result};

/// A contiguous range of the flat parameter buffer that is optimized with its
/// own learning-rate factor and, optionally, its own weight decay.
///
/// The learning rate used for the group is `lr · lr_scale`; the weight decay is
/// `weight_decay` if set, else the optimizer's. A typical use is a second group
/// with `weight_decay = Some(0.0)` for biases and normalisation parameters.
///
/// Parameters covered by no group are left unchanged by a step. An optimizer
/// built with no groups at all treats the whole buffer as one default group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    /// Indices of the flat buffer in this group.
    pub range: Range<usize>,
    /// Factor applied to the optimizer's learning rate (default 1).
    #[serde(default = "unit_scale")]
    pub lr_scale: f64,
    /// Weight decay of this group; `None` uses the optimizer's.
    #[serde(default)]
    pub weight_decay: Option<f64>,
}

fn unit_scale() -> f64 {
    1.0
}

impl ParamGroup {
    /// A group over `range` with learning-rate factor 1 and the optimizer's
    /// weight decay.
    pub fn new(range: Range<usize>) -> Self {
        Self {
            range,
            lr_scale: 1.0,
            weight_decay: None,
        }
    }

    /// Sets the learning-rate factor.
    pub fn with_lr_scale(mut self, lr_scale: f64) -> Self {
        self.lr_scale = lr_scale;
        self
    }

    /// Sets the weight decay of this group, overriding the optimizer's.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }
}

/// The validated groups of one optimizer.
///
/// Construction checks what does not depend on the buffer (non-empty ranges,
/// no overlap, finite non-negative factors); [`ParamGroups::check_step`] checks
/// the rest once per step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamGroups {
    groups: Vec<ParamGroup>,
}

impl ParamGroups {
    /// Validates `groups`.
    pub(crate) fn new(groups: Vec<ParamGroup>) -> Result<Self> {
        for (i, g) in groups.iter().enumerate() {
            if g.range.start >= g.range.end {
                return Err(OptimError::EmptyGroup {
                    group: i,
                    start: g.range.start,
                    end: g.range.end,
                });
            }
            if !(g.lr_scale.is_finite() && g.lr_scale >= 0.0) {
                return Err(OptimError::InvalidConfig {
                    key: "lr_scale",
                    value: g.lr_scale,
                    reason: "must be finite and >= 0",
                });
            }
            if let Some(wd) = g.weight_decay {
                if !(wd.is_finite() && wd >= 0.0) {
                    return Err(OptimError::InvalidConfig {
                        key: "weight_decay",
                        value: wd,
                        reason: "must be finite and >= 0",
                    });
                }
            }
        }
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&i| groups[i].range.start);
        for pair in order.windows(2) {
            let (a, b) = (&groups[pair[0]].range, &groups[pair[1]].range);
            if b.start < a.end {
                return Err(OptimError::GroupOverlap {
                    first: pair[0],
                    second: pair[1],
                    index: b.start,
                });
            }
        }
        Ok(Self { groups })
    }

    /// The groups as given.
    pub(crate) fn as_slice(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// Checks one step's inputs: equal lengths, every group inside the buffer,
    /// and finite gradients in every group (reporting the lowest bad index).
    pub(crate) fn check_step(&self, params: &[f32], grads: &[f32]) -> Result<()> {
        let len = params.len();
        if grads.len() != len {
            return Err(OptimError::LengthMismatch {
                params: len,
                grads: grads.len(),
            });
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.range.end > len {
                return Err(OptimError::GroupOutOfRange {
                    group: i,
                    start: g.range.start,
                    end: g.range.end,
                    len,
                });
            }
        }
        let mut first_bad: Option<(usize, f32)> = None;
        self.for_each(len, |group| {
            if let Some((i, value)) = first_non_finite(&grads[group.range.clone()]) {
                let index = group.range.start + i;
                if first_bad.is_none_or(|(best, _)| index < best) {
                    first_bad = Some((index, value));
                }
            }
        });
        match first_bad {
            Some((index, value)) => Err(OptimError::NonFiniteGradient { index, value }),
            None => Ok(()),
        }
    }

    /// Calls `f` on each group, or on one default group over `0..len` when
    /// none was given.
    pub(crate) fn for_each(&self, len: usize, mut f: impl FnMut(&ParamGroup)) {
        if self.groups.is_empty() {
            f(&ParamGroup::new(0..len));
        } else {
            self.groups.iter().for_each(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_overlap_naming_both_groups() {
        let err = ParamGroups::new(vec![
            ParamGroup::new(5..10),
            ParamGroup::new(0..3),
            ParamGroup::new(8..12),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            OptimError::GroupOverlap {
                first: 0,
                second: 2,
                index: 8
            }
        );
    }

    #[test]
    fn rejects_empty_range() {
        let err = ParamGroups::new(vec![ParamGroup::new(4..4)]).unwrap_err();
        assert_eq!(
            err,
            OptimError::EmptyGroup {
                group: 0,
                start: 4,
                end: 4
            }
        );
    }

    #[test]
    fn step_check_names_lengths_range_and_index() {
        let groups = ParamGroups::new(vec![ParamGroup::new(0..2), ParamGroup::new(2..6)]).unwrap();
        let p = [0.0f32; 5];
        assert_eq!(
            groups.check_step(&p, &[0.0; 4]),
            Err(OptimError::LengthMismatch {
                params: 5,
                grads: 4
            })
        );
        assert_eq!(
            groups.check_step(&p, &[0.0; 5]),
            Err(OptimError::GroupOutOfRange {
                group: 1,
                start: 2,
                end: 6,
                len: 5
            })
        );
        let groups = ParamGroups::new(vec![ParamGroup::new(3..5), ParamGroup::new(0..2)]).unwrap();
        let g = [0.0, f32::NAN, 0.0, f32::NEG_INFINITY, 0.0];
        match groups.check_step(&p, &g) {
            Err(OptimError::NonFiniteGradient { index, value }) => {
                assert_eq!(index, 1);
                assert!(value.is_nan());
            }
            other => panic!("expected a non-finite gradient error, got {other:?}"),
        }
        // Index 2 belongs to no group, so its NaN does not block the step.
        let g = [0.0, 0.0, f32::NAN, 0.0, 0.0];
        assert_eq!(groups.check_step(&p, &g), Ok(()));
    }

    #[test]
    fn group_deserialises_with_defaults() {
        let g: ParamGroup = serde_json::from_str(r#"{"range":{"start":2,"end":7}}"#).unwrap();
        assert_eq!(g, ParamGroup::new(2..7));
    }
}
