//! Row-wise softmax and log-softmax, stable for large logits.
//!
//! Both subtract the row maximum before exponentiating, so no `exp` overflows:
//! `softmax(x)_i = exp(x_i - m) / Σ_j exp(x_j - m)` with `m = max_j x_j`.

use rayon::prelude::*;

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

/// Logits from which [`log_softmax_and_probs`] splits its rows over rayon's
/// threads: each logit costs two calls to `exp` (some nanoseconds each), so
/// a few thousand already outweigh a fork and join. (The element-wise passes
/// of `Tensor`, one cheap operation per element, split from many more.)
const PARALLEL_LOGITS: usize = 2048;

/// What a cross-entropy needs of its logits: `logp` = [`log_softmax_rows`]
/// of `logits` and `probs = exp(logp)`, both row-major with `cols` columns
/// (`logp` and `probs` as long as `logits`). Large inputs are split into
/// blocks of whole rows over rayon's threads; every row is computed as on
/// one thread, so the bits do not depend on the split.
///
/// ```
/// use mtl_core::kernels::log_softmax_and_probs;
/// let (mut logp, mut probs) = (vec![0.0; 4], vec![0.0; 4]);
/// log_softmax_and_probs(&[0.0, 0.0, 1.0, 1.0], 2, &mut logp, &mut probs);
/// assert_eq!(probs, vec![0.5; 4]);
/// assert!((logp[0] - 0.5f32.ln()).abs() < 1e-7);
/// ```
///
/// # Panics
/// When `logp` or `probs` is not as long as `logits`.
pub fn log_softmax_and_probs(logits: &[f32], cols: usize, logp: &mut [f32], probs: &mut [f32]) {
    assert!(
        logp.len() == logits.len() && probs.len() == logits.len(),
        "log_softmax_and_probs: outputs of {} and {} for {} logits",
        logp.len(),
        probs.len(),
        logits.len()
    );
    let cols = cols.max(1);
    let block = |((l, p), x): ((&mut [f32], &mut [f32]), &[f32])| {
        l.copy_from_slice(x);
        log_softmax_rows(l, cols);
        p.iter_mut().zip(l.iter()).for_each(|(p, &l)| *p = l.exp());
    };
    let threads = rayon::current_num_threads();
    if logits.len() < PARALLEL_LOGITS || threads < 2 {
        block(((logp, probs), logits));
        return;
    }
    let rows = logits.len().div_ceil(cols);
    let chunk = rows.div_ceil(threads) * cols;
    logp.par_chunks_mut(chunk)
        .zip(probs.par_chunks_mut(chunk))
        .zip(logits.par_chunks(chunk))
        .for_each(block);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rows_give_the_bits_of_one_pass() {
        // Rows of 10 classes with large and small logits; 257 rows is over
        // the parallel threshold and does not divide evenly.
        let (rows, cols) = (257, 10);
        let logits: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.7)
            .collect();
        let mut want = logits.clone();
        log_softmax_rows(&mut want, cols);
        let want_probs: Vec<u32> = want.iter().map(|l| l.exp().to_bits()).collect();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (mut logp, mut probs) = (vec![0.0; logits.len()], vec![0.0; logits.len()]);
            pool.install(|| log_softmax_and_probs(&logits, cols, &mut logp, &mut probs));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&logp), bits(&want), "{threads} threads");
            assert_eq!(bits(&probs), want_probs, "{threads} threads");
        }
        let sum: f32 = want[..cols].iter().map(|l| l.exp()).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
}
