//! Statistics over seeds: mean ± sample standard deviation, the paired
//! comparison of two balancers trained under the same seeds, and numbers
//! printed with a fixed count of significant digits.

/// Mean and sample standard deviation of values measured once per seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The arithmetic mean.
    pub mean: f64,
    /// The sample standard deviation, `sqrt(Σ (x − mean)² / (n − 1))`;
    /// `None` for a single value, which has no spread.
    pub std: Option<f64>,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (squares / (n - 1) as f64).sqrt()
        });
        Some(Spread { mean, std, n })
    }
}

/// Two-sided 5 % critical values of Student's t for 1 to 30 degrees of
/// freedom (the standard table, three decimals).
const T_CRITICAL_95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The two-sided 5 % critical value of Student's t with `df` degrees of
/// freedom (`df ≥ 1`). Beyond 30 it takes the value of the next smaller
/// tabulated `df` (40, 60, 120), which errs towards "within the spread".
pub fn t_critical_95(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T_CRITICAL_95[df - 1],
        31..=39 => 2.042,
        40..=59 => 2.021,
        60..=119 => 2.000,
        _ => 1.980,
    }
}

/// What a paired comparison concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fewer than two shared seeds: there is no spread to compare with.
    NoSpread,
    /// `|t|` at most the critical value: the difference is within the
    /// seed-to-seed spread.
    Within,
    /// Better by more than the spread.
    Better,
    /// Worse by more than the spread.
    Worse,
}

impl Verdict {
    /// The verdict in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NoSpread => "one seed: no spread to compare with",
            Verdict::Within => "within the spread",
            Verdict::Better => "better, larger than the spread",
            Verdict::Worse => "worse, larger than the spread",
        }
    }
}

/// A paired comparison over seeds: the per-seed differences
/// `d_s = x_s − y_s` of two methods trained under the same seeds, and the
/// paired t statistic `t = mean(d) / (sd(d) / √n)` with `n − 1` degrees of
/// freedom (Student, 1908). The difference is called larger than the spread
/// when `|t|` exceeds the two-sided 5 % critical value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// Mean and standard deviation of the differences.
    pub difference: Spread,
    /// The paired t statistic; `None` with fewer than two seeds; infinite
    /// when every seed differs by the same nonzero amount.
    pub t: Option<f64>,
    /// The critical value `|t|` must exceed (two-sided, 5 %).
    pub critical: Option<f64>,
    /// Seeds where `x` was the larger (the sign test's count).
    pub wins: usize,
    /// What the comparison concludes.
    pub verdict: Verdict,
}

impl Paired {
    /// The comparison of `x` with `y`, one pair per seed; `None` when there
    /// are no pairs.
    pub fn of(pairs: &[(f64, f64)]) -> Option<Paired> {
        let d: Vec<f64> = pairs.iter().map(|(x, y)| x - y).collect();
        let difference = Spread::of(&d)?;
        let wins = d.iter().filter(|&&v| v > 0.0).count();
        let Some(sd) = difference.std else {
            return Some(Paired {
                difference,
                t: None,
                critical: None,
                wins,
                verdict: Verdict::NoSpread,
            });
        };
        let t = if sd > 0.0 {
            difference.mean / (sd / (difference.n as f64).sqrt())
        } else if difference.mean == 0.0 {
            0.0
        } else {
            difference.mean.signum() * f64::INFINITY
        };
        let critical = t_critical_95(difference.n - 1);
        let verdict = if t.abs() <= critical {
            Verdict::Within
        } else if t > 0.0 {
            Verdict::Better
        } else {
            Verdict::Worse
        };
        Some(Paired {
            difference,
            t: Some(t),
            critical: Some(critical),
            wins,
            verdict,
        })
    }
}

/// How many decimals show `digits` significant digits of `x` (at least 0,
/// at most 12); zero and non-finite values get `digits − 1`.
pub fn decimals(x: f64, digits: usize) -> usize {
    if x == 0.0 || !x.is_finite() {
        return digits.saturating_sub(1);
    }
    let magnitude = x.abs().log10().floor() as i64;
    (digits as i64 - 1 - magnitude).clamp(0, 12) as usize
}

/// `x` with `digits` significant digits: `0.001234` → `"0.00123"` for 3,
/// `1234.4` → `"1234"`.
pub fn significant(x: f64, digits: usize) -> String {
    format!("{x:.*}", decimals(x, digits))
}

/// `mean ± std`, both with `places` decimals; the mean alone when there is
/// no spread.
pub fn mean_pm(spread: &Spread, places: usize) -> String {
    match spread.std {
        Some(sd) => format!("{:.*} ± {:.*}", places, spread.mean, places, sd),
        None => format!("{:.*}", places, spread.mean),
    }
}

/// A Δm% as `+mean ± std` with two decimals (the mean alone without a
/// spread).
pub fn signed_pm(spread: &Spread) -> String {
    match spread.std {
        Some(sd) => format!("{:+.2} ± {sd:.2}", spread.mean),
        None => format!("{:+.2}", spread.mean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of a few numbers of this size are exact to about 1e-15.
    const EXACT: f64 = 1e-12;

    #[test]
    fn spread_is_the_mean_and_the_sample_standard_deviation() {
        let s = Spread::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!((s.mean - 5.0).abs() < EXACT);
        // Σ (x − 5)² = 32, over n − 1 = 7.
        assert!((s.std.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < EXACT);
        assert_eq!(s.n, 8);
        assert_eq!(Spread::of(&[3.5]).unwrap().std, None);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn the_paired_t_statistic_matches_a_hand_computation() {
        // Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / √3) = 2√3 ≈ 3.464,
        // below 4.303 (2 degrees of freedom).
        let p = Paired::of(&[(2.0, 1.0), (5.0, 3.0), (3.0, 0.0)]).unwrap();
        assert!((p.t.unwrap() - 2.0 * 3f64.sqrt()).abs() < EXACT);
        assert_eq!(p.critical, Some(4.303));
        assert_eq!(p.wins, 3);
        assert_eq!(p.verdict, Verdict::Within);
        // Differences 1.0, 1.1, 0.9, 1.0: t = 1 / (0.0816 / 2) ≈ 24.5 > 3.182.
        let p = Paired::of(&[(1.0, 0.0), (1.1, 0.0), (0.9, 0.0), (1.0, 0.0)]).unwrap();
        assert_eq!(p.verdict, Verdict::Better);
        let p = Paired::of(&[(0.0, 1.0), (0.0, 1.1), (0.0, 0.9), (0.0, 1.0)]).unwrap();
        assert_eq!(p.verdict, Verdict::Worse);
        assert_eq!(p.wins, 0);
    }

    #[test]
    fn constant_differences_and_single_seeds_are_decided_without_dividing_by_zero() {
        let same = Paired::of(&[(1.0, 1.0), (2.0, 2.0)]).unwrap();
        assert_eq!(same.t, Some(0.0));
        assert_eq!(same.verdict, Verdict::Within);
        let shifted = Paired::of(&[(2.0, 1.0), (3.0, 2.0)]).unwrap();
        assert_eq!(shifted.t, Some(f64::INFINITY));
        assert_eq!(shifted.verdict, Verdict::Better);
        let one = Paired::of(&[(2.0, 1.0)]).unwrap();
        assert_eq!((one.t, one.verdict), (None, Verdict::NoSpread));
    }

    #[test]
    fn critical_values_fall_with_the_degrees_of_freedom() {
        assert_eq!(t_critical_95(1), 12.706);
        assert_eq!(t_critical_95(30), 2.042);
        assert_eq!(t_critical_95(1000), 1.980);
        for df in 1..200 {
            assert!(t_critical_95(df + 1) <= t_critical_95(df), "{df}");
        }
    }

    #[test]
    fn numbers_keep_their_significant_digits() {
        assert_eq!(significant(0.001234, 3), "0.00123");
        assert_eq!(significant(0.0009, 3), "0.000900");
        assert_eq!(significant(1.5, 3), "1.50");
        assert_eq!(significant(1234.4, 3), "1234");
        assert_eq!(significant(0.0, 3), "0.00");
        let s = Spread::of(&[2.9, 3.1]).unwrap();
        assert_eq!(mean_pm(&s, decimals(s.mean, 4)), "3.000 ± 0.141");
        assert_eq!(mean_pm(&Spread::of(&[0.25]).unwrap(), 2), "0.25");
        assert_eq!(signed_pm(&Spread::of(&[1.0, 2.0]).unwrap()), "+1.50 ± 0.71");
        assert_eq!(signed_pm(&Spread::of(&[-0.5]).unwrap()), "-0.50");
    }
}
