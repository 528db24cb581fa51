//! Row-wise softmax and log-softmax, stable for large logits.
//!
//! Both subtract the row maximum before exponentiating, so no `exp` overflows:
//! `softmax(x)_i = exp(x_i - m) / Σ_j exp(x_j - m)` with `m = max_j x_j`.

/// Replaces each row of `cols` values by its softmax.
pub fn softmax_rows(data: &mut [f32], cols: usize) {
    for row in data.chunks_mut(cols) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f32;
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            s += *x;
        }
        let inv = 1.0 / s;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Replaces each row of `cols` values by its log-softmax,
/// `(x_i - m) - log Σ_j exp(x_j - m)`; subtracting `m` first keeps the
/// result exact to f32 precision even when the logits are large.
pub fn log_softmax_rows(data: &mut [f32], cols: usize) {
    for row in data.chunks_mut(cols) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = row.iter().map(|&x| (x - m).exp()).sum();
        let log_s = s.ln();
        row.iter_mut().for_each(|x| *x = (*x - m) - log_s);
    }
}
