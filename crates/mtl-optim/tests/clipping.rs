//! Gradient clipping by global norm and by value.

use mtl_optim::{clip_grad_norm, clip_grad_value, global_norm, ClipConfig, OptimError};

#[test]
fn norm_clipping_scales_and_returns_the_pre_clip_norm() {
    // ‖(3, 4, 0)‖ = 5; scale = 2/(5 + 1e-6).
    let mut g = [3.0f32, 4.0, 0.0];
    assert_eq!(clip_grad_norm(&mut g, 2.0), Ok(5.0));
    let scale = (2.0 / (5.0 + 1e-6)) as f32;
    assert_eq!(g, [3.0 * scale, 4.0 * scale, 0.0]);
    // Already inside the ball: unchanged, norm still reported.
    let mut g = [0.6f32, 0.8];
    let norm = clip_grad_norm(&mut g, 2.0).unwrap();
    assert!((norm - 1.0).abs() <= f32::EPSILON);
    assert_eq!(g, [0.6, 0.8]);
}

#[test]
fn value_clipping_clamps_and_returns_the_pre_clip_norm() {
    // ‖(−3, 0.5, 2)‖ = √13.25.
    let mut g = [-3.0f32, 0.5, 2.0];
    let norm = clip_grad_value(&mut g, 1.0).unwrap();
    assert_eq!(norm, 13.25f64.sqrt() as f32);
    assert_eq!(g, [-1.0, 0.5, 1.0]);
}

#[test]
fn long_norm_matches_the_closed_form() {
    // 200 000 entries of 0.5 (parallel path): ‖g‖ = 0.5 · √200000, exact in f64
    // up to the final sqrt; the f32 result is within one rounding.
    let g = vec![0.5f32; 200_000];
    let want = (0.25f64 * 200_000.0).sqrt() as f32;
    assert_eq!(global_norm(&g), Ok(want));
}

#[test]
fn bad_inputs_are_refused_and_gradients_kept() {
    let mut g = [1.0f32, f32::NEG_INFINITY, f32::NAN];
    assert_eq!(
        clip_grad_norm(&mut g, 1.0),
        Err(OptimError::NonFiniteGradient {
            index: 1,
            value: f32::NEG_INFINITY
        })
    );
    assert_eq!(g[0], 1.0);
    assert!(matches!(
        clip_grad_value(&mut [1.0], 0.0),
        Err(OptimError::InvalidConfig {
            key: "clip_value",
            ..
        })
    ));
    assert!(matches!(
        clip_grad_norm(&mut [1.0], f32::NAN),
        Err(OptimError::InvalidConfig {
            key: "max_norm",
            ..
        })
    ));
}

#[test]
fn clip_config_parses_and_applies() {
    #[derive(Debug, serde::Deserialize)]
    struct Run {
        clip: ClipConfig,
    }
    let run: Run = toml::from_str(r#"clip = { name = "value", clip_value = 0.5 }"#).unwrap();
    run.clip.validate().unwrap();
    let mut g = [2.0f32, -0.25];
    let norm = run.clip.apply(&mut g).unwrap();
    assert_eq!(norm, 4.0625f32.sqrt());
    assert_eq!(g, [0.5, -0.25]);
    let err = toml::from_str::<Run>(r#"clip = { name = "norm", max = 1.0 }"#).unwrap_err();
    assert!(err.to_string().contains("max"), "{err}");
}

proptest::proptest! {
    #[test]
    fn clipped_norm_is_at_most_the_limit_and_direction_is_kept(
        g in proptest::collection::vec(-1e3f32..1e3, 1..300),
        max_norm in 1e-3f32..100.0,
    ) {
        // After clipping ‖g'‖ = min(‖g‖, max_norm·‖g‖/(‖g‖ + 1e-6)) up to f32
        // rounding of the scale and of each product: 1e-6 relative covers it.
        const SCALE_ROUNDING: f32 = 1e-6;
        let mut clipped = g.clone();
        let before = clip_grad_norm(&mut clipped, max_norm).unwrap();
        let after = global_norm(&clipped).unwrap();
        proptest::prop_assert!(after <= max_norm.max(before) * (1.0 + SCALE_ROUNDING));
        // The documented scale max_norm/(‖g‖ + 1e-6), applied when below 1.
        let scale = f64::from(max_norm) / (f64::from(before) + 1e-6);
        if scale >= 1.0 {
            proptest::prop_assert_eq!(&clipped, &g);
        } else {
            // Same direction: every entry times the one scale, rounded once
            // to f32.
            let scale = scale as f32;
            for (c, x) in clipped.iter().zip(&g) {
                proptest::prop_assert_eq!(*c, *x * scale);
            }
        }
    }
}
