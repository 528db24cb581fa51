//! Coordinate-wise trimmed mean, a Byzantine-robust aggregation (Yin, Chen,
//! Ramchandran & Bartlett 2018, "Byzantine-Robust Distributed Learning:
//! Towards Optimal Statistical Rates", ICML; torchjd `TrimmedMean`).
//!
//! In every column the `k` = `trim_number` largest and `k` smallest of the
//! `T` values are dropped and the remaining `T − 2k` averaged:
//!
//! ```text
//! d_j = (1/(T − 2k)) Σ_{i ∈ kept(j)} g_ij.
//! ```
//!
//! The direction is not a fixed combination of the rows. The reported
//! weight of task `i` is the share of the kept entries that are its own,
//! `w_i = |{j : i ∈ kept(j)}| / (P (T − 2k))`, which sums to 1 and is `1/T`
//! for `k = 0` (the mean). Ties between equal values are broken toward the
//! lower task index.
//!
//! **Few tasks.** torchjd requires `T ≥ 2k + 1`; here `k` is lowered to
//! `⌊(T' − 1)/2⌋` when only `T'` tasks are present, so that at least one
//! value per column remains (for `T' ≤ 2` this is the mean).

/// The trimmed mean of the `rows` (`rows.len()` rows of `cols` values each,
/// row-major) and the implied weights (see the module docs). `trim` is the
/// requested `k`, lowered to `⌊(T − 1)/2⌋` for few rows.
pub fn trimmed_mean(rows: &[&[f32]], cols: usize, trim: usize) -> (Vec<f32>, Vec<f64>) {
    let t = rows.len();
    if t == 0 {
        return (vec![0.0; cols], Vec::new());
    }
    let k = trim.min((t - 1) / 2);
    let kept = t - 2 * k;
    let mut direction = vec![0.0f32; cols];
    let mut counts = vec![0u64; t];
    let mut column: Vec<(f32, usize)> = Vec::with_capacity(t);
    for (j, out) in direction.iter_mut().enumerate() {
        column.clear();
        column.extend(rows.iter().enumerate().map(|(i, r)| (r[j], i)));
        column.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut sum = 0.0f64;
        for &(v, i) in &column[k..k + kept] {
            sum += f64::from(v);
            counts[i] += 1;
        }
        *out = (sum / kept as f64) as f32;
    }
    let total = (cols * kept) as f64;
    let weights = if cols == 0 {
        vec![1.0 / t as f64; t]
    } else {
        counts.iter().map(|&c| c as f64 / total).collect()
    };
    (direction, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truths() {
        // Columns (1, 5, 100), (−3, 0, 2): k = 1 keeps the middle values.
        let rows: [&[f32]; 3] = [&[1.0, -3.0], &[5.0, 0.0], &[100.0, 2.0]];
        let (d, w) = trimmed_mean(&rows, 2, 1);
        assert_eq!(d, vec![5.0, 0.0]);
        // Row 1 is kept in both columns.
        assert_eq!(w, vec![0.0, 1.0, 0.0]);
        // k = 0 is the mean, weights 1/T.
        let (d, w) = trimmed_mean(&rows, 2, 0);
        assert!((d[0] - 106.0 / 3.0).abs() < 1e-5 && (d[1] + 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(w, vec![1.0 / 3.0; 3]);
    }

    #[test]
    fn five_rows_trim_two_and_few_rows_lower_k() {
        let rows: [&[f32]; 5] = [&[9.0], &[-7.0], &[1.0], &[2.0], &[3.0]];
        assert_eq!(trimmed_mean(&rows, 1, 2).0, vec![2.0]);
        assert_eq!(trimmed_mean(&rows, 1, 1).0, vec![2.0]);
        // Two rows with k = 1: lowered to k = 0, the mean.
        let rows: [&[f32]; 2] = [&[1.0], &[3.0]];
        assert_eq!(trimmed_mean(&rows, 1, 1), (vec![2.0], vec![0.5, 0.5]));
    }
}
