//! The `mtl` binary: exit status 2 and a message naming the culprit on bad input.

use std::process::Command;

fn mtl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mtl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_configuration_exits_with_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[data]\nbuiltin = \"digits\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [8]\n[train]\nepochz = 3\n").unwrap();
    let (code, _, err) = mtl(&["train", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("epochz") && err.contains("bad.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unknown_balancer_lists_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, "[data]\nbuiltin = \"digits\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [8]\n[train]\nbalancer = { name = \"gradnorn\" }\n").unwrap();
    let (code, _, err) = mtl(&["train", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("gradnorn") && err.contains("gradnorm"),
        "{err}"
    );
}

#[test]
fn listings_work() {
    let (code, out, _) = mtl(&["datasets", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("multimnist") && out.contains("digits"));
    let (code, out, _) = mtl(&["balancers"]);
    assert_eq!(code, 0);
    assert!(out.contains("pcgrad") && out.contains("nash-mtl"));
    let (code, _, err) = mtl(&["datasets", "describe", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn resume_of_a_missing_run_is_a_clear_error() {
    let (code, _, err) = mtl(&["train", "--resume", "/nonexistent/run"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/run"), "{err}");
}

#[test]
fn divergence_during_training_exits_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge_lr.toml");
    std::fs::write(
        &path,
        "[data]\nbuiltin = \"digits\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [16]\n[train]\nepochs = 2\noptimizer = { name = \"sgd\", lr = 1e30 }\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let (code, _, err) = mtl(&[
        "train",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("step") && err.contains("diverged"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
