//! [`DSelectGate`]: the differentiable top-k gate of DSelect-k, built on the
//! cubic [`smooth_step`].

use rand::Rng;

use super::encoder::flatten;
use crate::error::{CoreError, Result};
use crate::nn::{Init, Linear, Module};
use crate::{Graph, ParamGroup, ParamStore, Tensor, Var};

/// Added to a selector weight before its logarithm in the entropy penalty,
/// and to a selector's reachable mass before its inverse, so that a selector
/// that has converged to exact zeros keeps both finite (the reference
/// implementation's constant).
const EPSILON: f32 = 1e-6;

/// The sizes of a DSelect-k gate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DSelectSettings {
    /// Number of single-expert selectors `k`: the gate mixes at most `k`
    /// experts once every selector has converged (at least 1).
    pub k: usize,
    /// Width `γ` of the cubic region of the smooth-step function (positive).
    pub gamma: f32,
    /// Weight `λ ≥ 0` of the entropy penalty on the selectors.
    pub entropy: f32,
}

impl DSelectSettings {
    /// Checks the settings for a gate over `experts` experts.
    pub fn validate(&self, experts: usize) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(CoreError::InvalidArgument {
                what: format!("dselect-k {what}"),
                reason,
            })
        };
        if experts < 2 {
            return bad(
                "experts",
                format!("{experts}: selecting among experts needs at least 2"),
            );
        }
        if self.k == 0 || self.k > experts {
            return bad("k", format!("{} is not in 1..={experts}", self.k));
        }
        if !(self.gamma > 0.0 && self.gamma.is_finite()) {
            return bad(
                "gamma",
                format!("{} must be positive and finite", self.gamma),
            );
        }
        if !(self.entropy >= 0.0 && self.entropy.is_finite()) {
            return bad(
                "entropy",
                format!("{} must be non-negative and finite", self.entropy),
            );
        }
        Ok(())
    }
}

/// The smooth-step function of Hazimeh et al. (2020), applied element-wise:
///
/// ```text
/// S(t) = 0                               if t ≤ −γ/2
///        −2 t³/γ³ + 3 t/(2γ) + 1/2       if −γ/2 ≤ t ≤ γ/2
///        1                               if t ≥ γ/2
/// ```
///
/// It is continuously differentiable (its slope is 0 at both ends of the
/// cubic) and reaches exact zeros and ones, which is what lets DSelect-k's
/// gates become sparse. It is recorded as `u = clamp(t/γ, −1/2, 1/2)`, with
/// the clamp written `relu(t/γ + 1/2) − relu(t/γ − 1/2) − 1/2`, then
/// `S = −2u³ + 3u/2 + 1/2`: the value is the formula's, and so is the
/// gradient, since `S'` vanishes where the clamp bends.
pub fn smooth_step(g: &mut Graph, t: Var, gamma: f32) -> Result<Var> {
    let u = g.mul_scalar(t, 1.0 / gamma)?;
    let above_low = g.add_scalar(u, 0.5)?;
    let above_low = g.relu(above_low)?;
    let above_high = g.add_scalar(u, -0.5)?;
    let above_high = g.relu(above_high)?;
    let clamped = g.sub(above_low, above_high)?;
    let u = g.add_scalar(clamped, -0.5)?;
    let square = g.mul(u, u)?;
    let cube = g.mul(square, u)?;
    let cubic = g.mul_scalar(cube, -2.0)?;
    let linear = g.mul_scalar(u, 1.5)?;
    let s = g.add(cubic, linear)?;
    g.add_scalar(s, 0.5)
}

/// What a [`DSelectGate`] computes for a batch.
#[derive(Clone, Debug)]
pub struct DSelectOutput {
    /// The expert weights `[B, experts]`: non-negative, each row summing to
    /// one when the number of experts is a power of two (otherwise to one
    /// minus the mass the selectors still give to unused codes).
    pub weights: Var,
    /// The training penalty (see [`DSelectGate`]), `None` in evaluation mode
    /// or when it is zero by construction.
    pub penalty: Option<Var>,
}

/// The DSelect-k gate of Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen,
/// Mazumder, Hong & Chi (NeurIPS 2021), conditioned on the example.
///
/// With `E` experts and `m = ⌈log₂ E⌉` bits, each of the `k` single-expert
/// selectors reads `m` logits `z⁽ⁱ⁾(x) = W_z⁽ⁱ⁾ x + b_z⁽ⁱ⁾` and puts on
/// expert `e` (binary code `c(e)` of `m` bits, most significant first) the
/// weight
///
/// ```text
/// r⁽ⁱ⁾_e = Π_j [ S(z⁽ⁱ⁾_j) if c(e)_j = 1, else 1 − S(z⁽ⁱ⁾_j) ]
/// ```
///
/// with `S` the [`smooth_step`] of width `γ`. The gate is the softmax-weighted
/// sum of the selectors, `q(x) = Σ_i softmax(W_w x + b_w)_i · r⁽ⁱ⁾`, and the
/// mixture is `Σ_e q(x)_e · E_e(x)` as for a softmax [`Gate`](super::Gate).
/// Once `S` saturates at 0 or 1, each selector picks exactly one expert, so
/// at most `k` experts get a non-zero weight.
///
/// The training penalty is the batch mean of
/// `λ · Σ_i H(r⁽ⁱ⁾) + [E not a power of two] · Σ_i (1/Σ_e r⁽ⁱ⁾_e − 1)`:
/// the entropy `H(p) = −Σ_e p_e ln(p_e + 10⁻⁶)` of every selector pushes it
/// to a single expert sooner, and the second term keeps a selector from
/// settling on one of the `2^m − E` codes that name no expert (zero once all
/// its mass is on real experts). Both follow the reference implementation
/// (there summed over the batch; here averaged, so `λ` does not depend on the
/// batch size).
///
/// `W_z`, `b_z` start uniform in `±γ/100`, so that every `S(z)` starts near
/// 1/2 (every expert equally weighted, every selector in its cubic region
/// where it has a gradient); `W_w`, `b_w` start uniform in `±0.05`. The
/// parameters are `{name}.z_logits.*` `[k·m, in]` and `{name}.w_logits.*`
/// `[k, in]`.
#[derive(Clone, Debug)]
pub struct DSelectGate {
    z_logits: Linear,
    w_logits: Linear,
    experts: usize,
    bits: usize,
    settings: DSelectSettings,
}

impl DSelectGate {
    /// Registers a gate over `experts` experts reading `in_features` inputs.
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        in_features: usize,
        experts: usize,
        settings: DSelectSettings,
        rng: &mut R,
    ) -> Result<DSelectGate> {
        settings.validate(experts)?;
        let bits = usize::BITS as usize - (experts - 1).leading_zeros() as usize;
        let mut linear = |suffix: &str, outputs: usize, bound: f32| -> Result<Linear> {
            let full = format!("{name}.{suffix}");
            let init = Init::Uniform(bound);
            let weight = ps.add(
                &format!("{full}.weight"),
                &[outputs, in_features],
                group.clone(),
                init,
                rng,
            )?;
            let bias = ps.add(
                &format!("{full}.bias"),
                &[outputs],
                group.clone(),
                init,
                rng,
            )?;
            Ok(Linear {
                weight,
                bias: Some(bias),
                in_features,
                out_features: outputs,
            })
        };
        let z_logits = linear("z_logits", settings.k * bits, settings.gamma / 100.0)?;
        let w_logits = linear("w_logits", settings.k, 0.05)?;
        Ok(DSelectGate {
            z_logits,
            w_logits,
            experts,
            bits,
            settings,
        })
    }

    /// The number of experts the gate weighs.
    pub fn experts(&self) -> usize {
        self.experts
    }

    /// The selector outputs `r` `[B·k, experts]` (row `b·k + i` is selector
    /// `i` of example `b`) and the selector weights `softmax(W_w x + b_w)`
    /// `[B, k]` for the flattened batch `x`.
    fn selectors(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<(Var, Var)> {
        let (k, m, e) = (self.settings.k, self.bits, self.experts);
        let batch = g.shape(x)?[0];
        let z = self.z_logits.forward(g, ps, x)?;
        let s = smooth_step(g, z, self.settings.gamma)?;
        let s = g.reshape(s, &[batch * k, m])?;
        let mut product: Option<Var> = None;
        for j in 0..m {
            // Expert e takes S(z_j) where bit j of its code is 1, 1 − S(z_j)
            // where it is 0: S·(2c − 1) + (1 − c), one column per expert.
            let bit = |v: usize| ((v >> (m - 1 - j)) & 1) as f32;
            let sign = Tensor::from_vec((0..e).map(|v| 2.0 * bit(v) - 1.0).collect(), &[1, e])?;
            let offset = Tensor::from_vec((0..e).map(|v| 1.0 - bit(v)).collect(), &[e])?;
            let sign = g.input(sign);
            let offset = g.input(offset);
            let column = g.narrow(s, 1, j, 1)?;
            let spread = g.matmul(column, sign)?;
            let factor = g.add_row(spread, offset)?;
            product = Some(match product {
                Some(p) => g.mul(p, factor)?,
                None => factor,
            });
        }
        let r = product.ok_or_else(|| CoreError::InvalidArgument {
            what: "dselect-k gate".into(),
            reason: "needs at least one bit (two experts)".into(),
        })?;
        let w = self.w_logits.forward(g, ps, x)?;
        let w = g.softmax(w)?;
        Ok((r, w))
    }

    /// The expert weights and the training penalty for the batch `x`
    /// (flattened per example).
    pub fn weights(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<DSelectOutput> {
        let x = flatten(g, x)?;
        let (k, e) = (self.settings.k, self.experts);
        let batch = g.shape(x)?[0];
        let (r, w) = self.selectors(g, ps, x)?;
        let w_col = g.reshape(w, &[batch * k])?;
        let weighted = g.mul_col(r, w_col)?;
        let weighted = g.reshape(weighted, &[batch, k, e])?;
        let weights = g.sum_axis(weighted, 1)?;
        let penalty = if g.is_training() {
            self.penalty(g, r, batch)?
        } else {
            None
        };
        Ok(DSelectOutput { weights, penalty })
    }

    /// The batch mean of the entropy penalty and the unused-code penalty of
    /// the selector outputs `r` `[B·k, E]`.
    fn penalty(&self, g: &mut Graph, r: Var, batch: usize) -> Result<Option<Var>> {
        let per_example = 1.0 / batch.max(1) as f32;
        let mut terms = Vec::with_capacity(2);
        if self.settings.entropy > 0.0 {
            let shifted = g.add_scalar(r, EPSILON)?;
            let log = g.log(shifted)?;
            let plogp = g.mul(r, log)?;
            let total = g.sum(plogp)?;
            terms.push(g.mul_scalar(total, -self.settings.entropy * per_example)?);
        }
        if !self.experts.is_power_of_two() {
            let mass = g.sum_axis(r, 1)?;
            let mass = g.add_scalar(mass, EPSILON)?;
            let inverse = g.powf(mass, -1.0)?;
            let excess = g.add_scalar(inverse, -1.0)?;
            let total = g.sum(excess)?;
            terms.push(g.mul_scalar(total, per_example)?);
        }
        let mut total: Option<Var> = None;
        for t in terms {
            total = Some(match total {
                Some(sum) => g.add(sum, t)?,
                None => t,
            });
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn reference_smooth_step(t: f32, gamma: f32) -> f32 {
        if t <= -gamma / 2.0 {
            0.0
        } else if t >= gamma / 2.0 {
            1.0
        } else {
            -2.0 * t.powi(3) / gamma.powi(3) + 3.0 * t / (2.0 * gamma) + 0.5
        }
    }

    /// The composed smooth-step rounds differently from the formula by a few
    /// ulps of values in [0, 1].
    const STEP_TOL: f32 = 1e-6;

    #[test]
    fn smooth_step_matches_its_formula_and_saturates() {
        let gamma = 0.8;
        let ts: Vec<f32> = vec![-2.0, -0.4, -0.39, -0.2, 0.0, 0.1, 0.3999, 0.4, 5.0];
        let mut g = Graph::new(0);
        let t = g.input(Tensor::from_vec(ts.clone(), &[ts.len()]).unwrap());
        let s = smooth_step(&mut g, t, gamma).unwrap();
        let got = g.value(s).unwrap().data().to_vec();
        for (&t, &v) in ts.iter().zip(&got) {
            let want = reference_smooth_step(t, gamma);
            assert!((v - want).abs() <= STEP_TOL, "S({t}) = {v}, want {want}");
        }
        assert_eq!(got[0], 0.0);
        assert_eq!(got[8], 1.0);
        assert_eq!(got[4], 0.5);
    }

    fn gate(experts: usize, k: usize, entropy: f32) -> (DSelectGate, ParamStore) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut ps = ParamStore::new();
        let settings = DSelectSettings {
            k,
            gamma: 1.0,
            entropy,
        };
        let gate = DSelectGate::new(
            &mut ps,
            "gate",
            ParamGroup::Shared,
            3,
            experts,
            settings,
            &mut rng,
        )
        .unwrap();
        (gate, ps)
    }

    #[test]
    fn saturated_selectors_pick_the_expert_their_bits_name() {
        // 4 experts (2 bits), 2 selectors. Selector 0's logits (+5, −5) read
        // "10" = expert 2; selector 1's (−5, +5) read "01" = expert 1. The
        // selector weights are softmax(0, ln 3) = (1/4, 3/4).
        let (gate, mut ps) = gate(4, 2, 0.0);
        let z_weight = ps.find("gate.z_logits.weight").unwrap();
        ps.values_mut(z_weight).unwrap().fill(0.0);
        let z_bias = ps.find("gate.z_logits.bias").unwrap();
        ps.values_mut(z_bias)
            .unwrap()
            .copy_from_slice(&[5.0, -5.0, -5.0, 5.0]);
        let w_weight = ps.find("gate.w_logits.weight").unwrap();
        ps.values_mut(w_weight).unwrap().fill(0.0);
        let w_bias = ps.find("gate.w_logits.bias").unwrap();
        ps.values_mut(w_bias)
            .unwrap()
            .copy_from_slice(&[0.0, 3f32.ln()]);
        let mut g = Graph::new(0);
        let x = g.input(Tensor::from_vec(vec![0.3, -1.0, 2.0, 1.0, 1.0, 1.0], &[2, 3]).unwrap());
        let out = gate.weights(&mut g, &mut ps, x).unwrap();
        let w = g.value(out.weights).unwrap().data().to_vec();
        let want = [0.0, 0.75, 0.25, 0.0];
        for (got, want) in w.iter().zip(want.iter().chain(&want)) {
            assert!((got - want).abs() < STEP_TOL, "{w:?}");
        }
        // A power of two and λ = 0: nothing to penalise.
        assert!(out.penalty.is_none());
    }

    #[test]
    fn weights_start_near_uniform_and_sum_to_one() {
        let (gate, mut ps) = gate(8, 3, 0.1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let x = Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng).unwrap();
        let mut g = Graph::new(0);
        let x = g.input(x);
        let out = gate.weights(&mut g, &mut ps, x).unwrap();
        for row in g.value(out.weights).unwrap().data().chunks(8) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            // S(z) ≈ 1/2 at the start: every expert near 1/8.
            assert!(row.iter().all(|&v| (v - 0.125).abs() < 0.01), "{row:?}");
        }
        // The entropy of 3 near-uniform selectors over 8 experts ≈ 3 ln 8.
        let penalty = g.value(out.penalty.unwrap()).unwrap().item().unwrap();
        let want = 0.1 * 3.0 * 8f32.ln();
        assert!((penalty - want).abs() < 1e-3 * want, "{penalty} vs {want}");
        g.reset();
        g.set_training(false);
        let x = g.input(Tensor::zeros(&[2, 3]));
        assert!(gate.weights(&mut g, &mut ps, x).unwrap().penalty.is_none());
    }

    #[test]
    fn unused_codes_are_penalised_when_experts_are_not_a_power_of_two() {
        // 3 experts use codes 00, 01, 10; a selector on 11 (logits +5, +5)
        // gives them nothing, and its penalty is 1/(0 + ε) − 1.
        let (gate, mut ps) = gate(3, 1, 0.0);
        let z_weight = ps.find("gate.z_logits.weight").unwrap();
        ps.values_mut(z_weight).unwrap().fill(0.0);
        let z_bias = ps.find("gate.z_logits.bias").unwrap();
        ps.values_mut(z_bias).unwrap().copy_from_slice(&[5.0, 5.0]);
        let mut g = Graph::new(0);
        let x = g.input(Tensor::zeros(&[1, 3]));
        let out = gate.weights(&mut g, &mut ps, x).unwrap();
        assert_eq!(g.value(out.weights).unwrap().data(), &[0.0, 0.0, 0.0]);
        let penalty = g.value(out.penalty.unwrap()).unwrap().item().unwrap();
        assert!((penalty - (1.0 / EPSILON - 1.0)).abs() < 1.0, "{penalty}");
        // On a real expert ("01") the penalty is zero.
        ps.values_mut(z_bias).unwrap().copy_from_slice(&[-5.0, 5.0]);
        g.reset();
        let x = g.input(Tensor::zeros(&[1, 3]));
        let out = gate.weights(&mut g, &mut ps, x).unwrap();
        assert_eq!(g.value(out.weights).unwrap().data(), &[0.0, 1.0, 0.0]);
        let penalty = g.value(out.penalty.unwrap()).unwrap().item().unwrap();
        assert!(penalty.abs() < 1e-5, "{penalty}");
    }

    #[test]
    fn settings_are_checked() {
        let ok = DSelectSettings {
            k: 2,
            gamma: 1.0,
            entropy: 0.0,
        };
        assert!(ok.validate(4).is_ok());
        assert!(ok.validate(1).is_err());
        assert!(DSelectSettings { k: 5, ..ok }.validate(4).is_err());
        assert!(DSelectSettings { k: 0, ..ok }.validate(4).is_err());
        assert!(DSelectSettings { gamma: 0.0, ..ok }.validate(4).is_err());
        assert!(DSelectSettings {
            entropy: -1.0,
            ..ok
        }
        .validate(4)
        .is_err());
    }
}
