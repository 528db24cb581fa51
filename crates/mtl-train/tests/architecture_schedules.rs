//! What two architectures add to the training loop, end to end: Learning to
//! Branch fixes its tree on schedule and a run resumed across the fixing
//! equals an uninterrupted one; DSelect-k trains with its selector penalties
//! added to the task losses.

use std::path::Path;

use mtl_train::{RunConfig, RunOptions};

/// Trains a run directory without hooks.
fn fit(config: RunConfig, opts: &RunOptions) -> mtl_train::Result<mtl_train::RunSummary> {
    mtl_train::run::fit(config, opts, &mut [])
}

/// Digit classification plus 10-group clustering on the bundled 8x8 digits,
/// with the `[model]` keys `model` and a two-stage MLP.
fn digits_config(model: &str, epochs: usize) -> RunConfig {
    let text = format!(
        r#"
seed = 5
[data]
builtin = "digits"
[model]
{model}
[model.encoder]
name = "mlp"
hidden = [64, 32]
[train]
epochs = {epochs}
batch_size = 32
optimizer = {{ name = "adam", lr = 3e-3 }}
"#
    );
    RunConfig::parse(&text, Path::new("digits.toml")).unwrap()
}

const LTB: &str = "arch = \"ltb\"\nblocks = [3]\nsearch_epochs = 2";

fn opts(dir: &Path, resume: bool, stop_after: Option<usize>) -> RunOptions {
    RunOptions {
        out: dir.to_path_buf(),
        resume,
        stop_after,
        memory: None,
    }
}

/// The non-trainable buffers a checkpoint holds: for LTB the chosen parent
/// of each task block (−1 while searching), then the temperature.
fn buffers(checkpoint: &Path) -> Vec<f64> {
    mtl_train::checkpoint::read_state(checkpoint)
        .unwrap()
        .buffers
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

fn metric(summary: &mtl_train::RunSummary, name: &str) -> f64 {
    summary
        .test
        .metrics
        .iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
}

#[test]
fn ltb_fixes_its_tree_on_schedule_and_resumes_bit_identically() {
    let epochs = 4;
    let whole = tempfile::tempdir().unwrap();
    let a = fit(digits_config(LTB, epochs), &opts(whole.path(), false, None)).unwrap();

    let parts = tempfile::tempdir().unwrap();
    fit(
        digits_config(LTB, epochs),
        &opts(parts.path(), false, Some(1)),
    )
    .unwrap();
    // After epoch 0 the tree is still searched, at the initial temperature 5.
    assert_eq!(
        buffers(&parts.path().join("ckpt-00001")),
        vec![-1.0, -1.0, 5.0]
    );
    fit(
        digits_config(LTB, epochs),
        &opts(parts.path(), true, Some(3)),
    )
    .unwrap();
    // Epoch 2 began with the tree fixed: each task block reads one of the 3
    // blocks below; the temperature stays at epoch 1's, 5 · (0.1/5)^(1/2).
    let fixed = buffers(&parts.path().join("ckpt-00003"));
    assert!(
        fixed[..2].iter().all(|&p| [0.0, 1.0, 2.0].contains(&p)),
        "{fixed:?}"
    );
    assert!((fixed[2] - 5.0 * (0.1f64 / 5.0).sqrt()).abs() < 1e-6);
    let b = fit(digits_config(LTB, epochs), &opts(parts.path(), true, None)).unwrap();

    let params = |d: &Path| std::fs::read(d.join("best/params.safetensors")).unwrap();
    assert_eq!(params(whole.path()), params(parts.path()));
    assert_eq!(a.test, b.test);
    let acc = metric(&a, "digit.accuracy");
    eprintln!("ltb: digit accuracy {acc:.4} after {epochs} epochs, tree {fixed:?}");
    assert!(acc >= 0.85, "ltb digit accuracy {acc}");
}

#[test]
fn dselect_k_trains_with_its_penalties() {
    // 3 experts: one unused code, so both penalties are active.
    let model = "arch = \"dselect-k\"\nexperts = 3\nk = 2\nentropy = 0.01";
    let dir = tempfile::tempdir().unwrap();
    let summary = fit(digits_config(model, 4), &opts(dir.path(), false, None)).unwrap();
    let acc = metric(&summary, "digit.accuracy");
    eprintln!("dselect-k: digit accuracy {acc:.4} after 4 epochs");
    assert!(acc >= 0.85, "dselect-k digit accuracy {acc}");
}
