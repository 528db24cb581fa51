//! Runs every example of the crate (built by `cargo test` beside the test
//! binaries) and checks that it reaches the quality its header states: each
//! example exits non-zero when it does not.

use std::path::PathBuf;
use std::process::Command;

/// The path of example `name` built for this test run.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in <target>/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn custom_model_reaches_its_stated_quality() {
    let path = example("custom_model");
    assert!(path.exists(), "{} was not built", path.display());
    let out = Command::new(&path).output().expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "custom_model failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test mpg MAE"), "{stdout}");
}
