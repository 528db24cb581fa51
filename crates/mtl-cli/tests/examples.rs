//! Every configuration in the workspace's `examples/` folder parses and
//! validates, and the short ones train.

use std::path::Path;

use mtl_cli::{fit, RunConfig, RunOptions};

fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_configuration_is_valid() {
    let all = examples();
    assert!(all.len() >= 4, "found {all:?}");
    for path in all {
        RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_tabular_examples_train_for_an_epoch() {
    for name in ["autompg.toml", "digits.toml", "gradnorm_toy.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        let mut config = RunConfig::load(&path).unwrap();
        config.train.epochs = 1;
        let dir = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            out: dir.path().to_path_buf(),
            resume: false,
            quiet: true,
            stop_after: None,
        };
        let summary = fit(config, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.epochs, 1);
        assert!(
            summary.test.losses.iter().all(|l| l.is_finite()),
            "{name}: {:?}",
            summary.test.losses
        );
    }
}
