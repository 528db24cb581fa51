//! Auto-Lambda, task weights learned by a one-step look-ahead on validation
//! losses (Liu, James, Davison & Johns 2022, "Auto-Lambda: Disentangling
//! Dynamic Task Relationships", TMLR; official code `lorenmt/auto-lambda`).
//!
//! The weights `λ` are meta-parameters. Each step the shared parameters take
//! a virtual SGD step with the current weights, and `λ` descends the
//! validation loss of the primary tasks `P` after that step:
//!
//! ```text
//! θ' = θ − η Σ_t λ_t g_t,           g_t = ∇_θ L_t^train(θ),
//! ∂/∂λ_t Σ_{s∈P} L_s^val(θ') = −η g_tᵀ v,   v = Σ_{s∈P} ∇_θ L_s^val(θ'),
//! λ ← Adam(λ, −η g_tᵀ v).
//! ```
//!
//! The derivative is exact for the one-step look-ahead: `θ'` is linear in
//! `λ` because the training gradients `g_t` are taken at `θ`. The official
//! code obtains the same quantity by a finite difference of the training
//! losses along `v` (its Hessian-vector product is `∂_λ ∇_θ Σλ_t L_t · v =
//! g_tᵀv`). The network then trains on `Σ_t λ_t L_t` with the updated `λ`.
//!
//! * **Look-ahead.** The virtual step moves the shared parameters only (the
//!   task heads stay at `θ`), with the trainer's learning rate `η`.
//! * **Scale.** `λ` starts at `1/T` each (mean scale; the official code
//!   starts at 0.1, configurable with `init`) and is not constrained.
//! * **Defaults.** Adam with learning rate `10⁻⁴` on `λ` (the official
//!   code's `autol_lr` for dense prediction); every task primary.

/// The meta-gradient `−η g_tᵀ v` of every task, from the training rows
/// `g_t` and the summed validation gradient `v` at the look-ahead point.
pub fn meta_gradient<'a>(
    train_rows: impl Iterator<Item = &'a [f32]>,
    v: &[f64],
    lr: f64,
) -> Vec<f64> {
    train_rows
        .map(|g| {
            -lr * g
                .iter()
                .zip(v)
                .map(|(&a, &b)| f64::from(a) * b)
                .sum::<f64>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth() {
        // g_1 = (1, 0), g_2 = (0, 2), v = (3, −1), η = 0.1:
        // −0.1·3 = −0.3 and −0.1·(−2) = 0.2.
        let rows: [&[f32]; 2] = [&[1.0, 0.0], &[0.0, 2.0]];
        let h = meta_gradient(rows.iter().copied(), &[3.0, -1.0], 0.1);
        assert!(
            (h[0] + 0.3).abs() < 1e-15 && (h[1] - 0.2).abs() < 1e-15,
            "{h:?}"
        );
    }

    #[test]
    fn matches_a_finite_difference_of_a_quadratic_validation_loss() {
        // L^val(θ) = ½‖θ − c‖², θ' = θ − η Σ λ_t g_t; d/dλ_t L^val(θ') = −η g_tᵀ(θ' − c).
        let theta = [0.5f64, -1.0, 2.0];
        let c = [1.0f64, 1.0, 0.0];
        let rows = [[0.3f32, -0.2, 1.0], [-1.0f32, 0.4, 0.1]];
        let (eta, lambda) = (0.05, [0.6f64, 0.4]);
        let val = |l: &[f64; 2]| {
            (0..3)
                .map(|k| {
                    let step: f64 = (0..2).map(|t| l[t] * f64::from(rows[t][k])).sum();
                    let x = theta[k] - eta * step - c[k];
                    0.5 * x * x
                })
                .sum::<f64>()
        };
        let prime: Vec<f64> = (0..3)
            .map(|k| {
                let step: f64 = (0..2).map(|t| lambda[t] * f64::from(rows[t][k])).sum();
                theta[k] - eta * step - c[k]
            })
            .collect();
        let h = meta_gradient(rows.iter().map(|r| &r[..]), &prime, eta);
        for t in 0..2 {
            let (mut up, mut down) = (lambda, lambda);
            up[t] += 1e-6;
            down[t] -= 1e-6;
            let fd = (val(&up) - val(&down)) / 2e-6;
            assert!((fd - h[t]).abs() < 1e-9, "task {t}: {fd} vs {}", h[t]);
        }
    }
}
