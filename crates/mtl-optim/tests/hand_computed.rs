//! The first three steps of every optimizer and variant on a 3-parameter
//! problem, against values computed by hand from the rule PyTorch documents.
//!
//! Problem: θ₀ = (1, −2, 0.5) and the fixed gradients
//! g₁ = (0.5, −1, 2), g₂ = (0.25, 0.5, −1), g₃ = (−0.5, 1.5, 0).
//! The expected values were evaluated in f64 from the formulas written above
//! each case; the optimizers compute in f32.

use mtl_optim::{
    AdagradConfig, AdamConfig, AdamWConfig, AdamaxConfig, Optimizer, RmsPropConfig, SgdConfig,
};

const THETA0: [f32; 3] = [1.0, -2.0, 0.5];
const GRADS: [[f32; 3]; 3] = [[0.5, -1.0, 2.0], [0.25, 0.5, -1.0], [-0.5, 1.5, 0.0]];

/// Relative tolerance against the f64 evaluation: three steps of about ten
/// f32 roundings each (≤ 6e-8 relative apiece) stay below 2e-6.
const F32_THREE_STEPS_TOL: f64 = 2e-6;

fn check(mut opt: impl Optimizer, expected: [[f64; 3]; 3]) {
    let mut theta = THETA0;
    for (t, (g, want)) in GRADS.iter().zip(expected).enumerate() {
        opt.step(&mut theta, g).unwrap();
        for (i, (&got, want)) in theta.iter().zip(want).enumerate() {
            let err = (f64::from(got) - want).abs();
            assert!(
                err <= F32_THREE_STEPS_TOL * want.abs().max(1.0),
                "{}: step {} θ[{i}] = {got}, expected {want}",
                opt.name(),
                t + 1
            );
        }
    }
}

#[test]
fn sgd_plain() {
    // θ ← θ − γ g, γ = 0.1: θ₁ = (1 − 0.05, −2 + 0.1, 0.5 − 0.2).
    let opt = SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [[0.95, -1.9, 0.3], [0.925, -1.95, 0.4], [0.975, -2.1, 0.4]],
    );
}

#[test]
fn sgd_momentum_dampening_weight_decay() {
    // g ← g + λθ; b₁ = g, b_t = μ b + (1 − τ) g; θ ← θ − γ b
    // γ = 0.1, μ = 0.9, τ = 0.1, λ = 0.1.
    // Step 1, θ[0]: g = 0.5 + 0.1·1 = 0.6, b = 0.6, θ = 1 − 0.06 = 0.94.
    // Step 2, θ[0]: g = 0.25 + 0.094 = 0.344, b = 0.54 + 0.9·0.344 = 0.8496,
    //               θ = 0.94 − 0.08496 = 0.85504.
    let opt = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.1,
        weight_decay: 0.1,
        ..SgdConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.94, -1.88, 0.295],
            [0.85504, -1.80008, 0.197845],
            [0.81588064, -1.84695128, 0.108624895],
        ],
    );
}

#[test]
fn sgd_nesterov_weight_decay() {
    // g ← g + λθ; b as above with τ = 0; θ ← θ − γ (g + μ b)
    // γ = 0.1, μ = 0.9, λ = 0.01.
    // Step 1, θ[0]: g = 0.51, b = 0.51, θ = 1 − 0.1·(0.51 + 0.459) = 0.9031.
    let opt = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
        ..SgdConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.9031, -1.8062, 0.11905],
            [0.81257411, -1.81514822, 0.146418805],
            [0.847869708191, -2.061378416382, 0.0808796787705],
        ],
    );
}

#[test]
fn adam() {
    // m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
    // θ ← θ − γ/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε), γ = 0.1, defaults otherwise.
    // Step 1: m = 0.1 g, v = 0.001 g², so θ ← θ − 0.1 · g/(|g| + 1e-8):
    // θ[0] = 1 − 0.1 · 0.5/0.50000001 = 0.900000002.
    let opt = AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.900000002, -1.900000001, 0.4000000005],
            [0.8067820404774624, -1.873366297370903, 0.37336629670243154],
            [0.7957037336010943, -1.9123052759895929, 0.35277836650344163],
        ],
    );
}

#[test]
fn adam_l2_amsgrad() {
    // As Adam with g ← g + λθ (λ = 0.1) and v̂_max ← max(v̂_max, v) in the
    // denominator. Step 1, θ[0]: g = 0.6, θ = 1 − 0.1 · 0.6/(0.6 + 1e-8).
    // Step 3, θ[2]: g₃ = 0 + 0.1 θ, v shrinks, v̂_max keeps step 2's value.
    let opt = AdamConfig {
        lr: 0.1,
        weight_decay: 0.1,
        amsgrad: true,
        ..AdamConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.9000000016666666, -1.9000000008333333, 0.4000000004878049],
            [0.8050097658613199, -1.8537472646427609, 0.37089514609880114],
            [0.775511505150508, -1.8757361448065795, 0.34736114552689396],
        ],
    );
}

#[test]
fn adamw() {
    // θ ← θ(1 − γλ), then the Adam step on the undecayed gradient,
    // γ = 0.1, λ = 0.1. Step 1, θ[0]: 1 · 0.99 − 0.1 · 0.5/0.50000001 = 0.890000002.
    let opt = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.890000002, -1.880000001, 0.3950000005],
            [0.7878820404574624, -1.8345662973609032, 0.36441629669743153],
            [0.7689249131765196, -1.855159613005984, 0.3401842035314673],
        ],
    );
}

#[test]
fn adamw_amsgrad() {
    // As AdamW; only θ[2] at step 3 differs (g₃ = 0 lowers v below its max).
    let opt = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.1,
        amsgrad: true,
        ..AdamWConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.890000002, -1.880000001, 0.3950000005],
            [0.7878820404574624, -1.8345662973609032, 0.36441629669743153],
            [0.7689249131765196, -1.855159613005984, 0.34019450007126584],
        ],
    );
}

#[test]
fn rmsprop() {
    // v ← αv + (1 − α)g²; θ ← θ − γ g/(√v + ε), γ = 0.01, α = 0.99.
    // Step 1: v = 0.01 g², θ ← θ − 0.01 g/(0.1|g| + 1e-8):
    // θ[0] = 1 − 0.005/0.05000001 = 0.90000002.
    let opt = RmsPropConfig {
        lr: 0.01,
        ..RmsPropConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.900000019999996, -1.900000009999999, 0.40000000499999977],
            [0.855098702557817, -1.944901331474435, 0.4449013284905645],
            [0.9220997106627046, -2.025337508672089, 0.4449013284905645],
        ],
    );
}

#[test]
fn rmsprop_centered() {
    // a ← αa + (1 − α)g; θ ← θ − γ g/(√(v − a²) + ε).
    // Step 1: v − a² = 0.01 g² − 0.0001 g² = 0.0099 g²,
    // θ[0] = 1 − 0.005/(√0.0099 · 0.5 + 1e-8) = 0.899496238676.
    let opt = RmsPropConfig {
        lr: 0.01,
        centered: true,
        ..RmsPropConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.899496238676095, -1.8994962285750878, 0.39949622352458364],
            [0.8541874846842108, -1.9444410842741218, 0.44444108124365767],
            [0.9212224642588963, -2.024996647729208, 0.44444108124365767],
        ],
    );
}

#[test]
fn rmsprop_momentum() {
    // b ← μb + g/(√v + ε); θ ← θ − γ b, μ = 0.5.
    // Step 2, θ[0]: b = 0.5 · 10 + 0.25/(√(0.99·0.0025 + 0.01·0.0625) + 1e-8).
    let opt = RmsPropConfig {
        lr: 0.01,
        momentum: 0.5,
        ..RmsPropConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.900000019999996, -1.900000009999999, 0.40000000499999977],
            [0.8050987125578151, -1.8949013364744345, 0.3949013309905644],
            [0.8246490669416122, -1.9727881769093063, 0.39235199398584675],
        ],
    );
}

#[test]
fn rmsprop_centered_momentum_weight_decay() {
    // All options: g ← g + λθ (λ = 0.1), centered, μ = 0.9.
    let opt = RmsPropConfig {
        lr: 0.01,
        weight_decay: 0.1,
        momentum: 0.9,
        centered: true,
        ..RmsPropConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.8994962353090928, -1.8994962268915865, 0.39949622340140056],
            [0.7590957780598732, -1.8342408241678982, 0.3516770685720919],
            [0.685557437442592, -1.8486779563020532, 0.3070703146588828],
        ],
    );
}

#[test]
fn adagrad() {
    // s ← s + g²; θ ← θ − γ g/(√s + ε), γ = 0.1, ε = 1e-10.
    // Step 1: θ ← θ − 0.1 g/(|g| + 1e-10); θ[0] = 1 − 0.05/0.5000000001.
    // Step 2, θ[0]: s = 0.3125, θ = 0.9 − 0.025/√0.3125 = 0.85527864.
    let opt = AdagradConfig {
        lr: 0.1,
        ..AdagradConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.90000000002, -1.90000000001, 0.400000000005],
            [0.8552786404780043, -1.9447213595559958, 0.4447213595529958],
            [0.921945307135782, -2.0248997321254376, 0.4447213595529958],
        ],
    );
}

#[test]
fn adagrad_lr_decay_weight_decay_accumulator() {
    // γ̃ = γ/(1 + (t − 1)η), η = 0.1; g ← g + λθ, λ = 0.1; s₀ = 0.1.
    // Step 1, θ[0]: g = 0.6, s = 0.46, θ = 1 − 0.1 · 0.6/√0.46 = 0.91153483.
    let opt = AdagradConfig {
        lr: 0.1,
        lr_decay: 0.1,
        weight_decay: 0.1,
        initial_accumulator_value: 0.1,
        ..AdagradConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.9115348263201052, -1.9033012443247466, 0.4011689472423762],
            [0.8706840301148185, -1.9253116731834223, 0.43934836055876203],
            [0.9105008125934811, -1.98488172916332, 0.437746771368528],
        ],
    );
}

#[test]
fn adamax() {
    // m ← β₁m + (1 − β₁)g; u ← max(β₂u, |g| + ε); θ ← θ − γ/(1 − β₁ᵗ) · m/u.
    // Step 1: θ ← θ − 0.1 · g/(|g| + 1e-8); θ[0] = 0.900000002.
    // Step 2, θ[0]: m = 0.07, u = max(0.4995, 0.25) = 0.4995,
    //               θ = 0.900000002 − 0.1/0.19 · 0.07/0.4995 = 0.82624203.
    let opt = AdamaxConfig {
        lr: 0.1,
        ..AdamaxConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.900000002, -1.900000001, 0.4000000005],
            [0.8262420349803488, -1.8789262959265054, 0.3789262953211369],
            [0.8166479392312712, -1.9069705761823479, 0.365615554375078],
        ],
    );
}

#[test]
fn adamax_weight_decay() {
    // As Adamax with g ← g + λθ, λ = 0.1.
    let opt = AdamaxConfig {
        lr: 0.1,
        weight_decay: 0.1,
        ..AdamaxConfig::default()
    };
    check(
        opt.build(vec![]).unwrap(),
        [
            [0.9000000016666666, -1.9000000008333333, 0.4000000004878049],
            [0.8227297502310205, -1.8661942655512676, 0.37725581867488267],
            [0.7996656272795468, -1.8836243024869628, 0.36220953058172284],
        ],
    );
}
