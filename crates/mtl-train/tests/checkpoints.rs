//! The checkpoint layout: the state's tensors in `state.safetensors`, its
//! scalars in `state.json`, and checkpoints of format version 1 (everything
//! in `state.json`) still resuming exactly.

use std::fs;
use std::path::{Path, PathBuf};

use mtl_train::checkpoint::{self, FORMAT_VERSION, PARAMS_FILE, STATE_FILE, STATE_TENSORS_FILE};
use mtl_train::{run, RunConfig, RunOptions};
use safetensors::tensor::Dtype;

fn options(out: &Path, resume: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        resume,
        stop_after: None,
        memory: None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint-v1")
}

fn format_version(ckpt: &Path) -> Option<u64> {
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(ckpt.join(STATE_FILE)).unwrap()).unwrap();
    doc.get("format_version")
        .and_then(serde_json::Value::as_u64)
}

/// The fixture is the run directory of a two-epoch Auto MPG run (Adam,
/// FAMO) after its first epoch, written before the state's tensors moved to
/// `state.safetensors`. Resuming it must end exactly where an uninterrupted
/// run ends, and the next checkpoint is written in the current format.
#[test]
fn a_checkpoint_of_format_version_1_resumes_like_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let resumed = tmp.path().join("resumed");
    copy_dir(&fixture(), &resumed);
    let old = checkpoint::dir_for(&resumed, 1);
    assert_eq!(format_version(&old), None, "the fixture is of version 1");
    assert!(!old.join(STATE_TENSORS_FILE).exists());
    let config = run::run_config(&resumed).unwrap();
    run::fit_valid(config.clone(), &options(&resumed, true), &mut []).unwrap();
    let fresh = tmp.path().join("fresh");
    run::fit_valid(config, &options(&fresh, false), &mut []).unwrap();

    let new = checkpoint::dir_for(&resumed, 2);
    assert_eq!(format_version(&new), Some(u64::from(FORMAT_VERSION)));
    let last = checkpoint::dir_for(&fresh, 2);
    for file in [PARAMS_FILE, STATE_TENSORS_FILE] {
        assert!(
            fs::read(new.join(file)).unwrap() == fs::read(last.join(file)).unwrap(),
            "{file} differs between the resumed and the uninterrupted run"
        );
    }
    let (a, b) = (
        checkpoint::read_state(&new).unwrap(),
        checkpoint::read_state(&last).unwrap(),
    );
    assert_eq!(a.optimizer, b.optimizer);
    assert_eq!(a.balancer, b.balancer);
    assert_eq!(a.step, b.step);
}

/// An 80k-parameter model trained with Adam: the two moments are F32
/// tensors of the parameter count in `state.safetensors`, which is then
/// about twice the parameter file, and `state.json` holds no array of
/// floats long enough to be a tensor.
#[test]
fn optimizer_moments_are_tensors_and_the_json_stays_small() {
    let text = r#"
seed = 2
[data]
builtin = "autompg"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [256, 300]
[train]
epochs = 1
batch_size = 64
optimizer = { name = "adam", lr = 1e-3 }
balancer = { name = "dwa" }
"#;
    let config = RunConfig::parse(text, Path::new("big.toml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    run::fit(config, &options(tmp.path(), false), &mut []).unwrap();
    let ckpt = checkpoint::dir_for(tmp.path(), 1);
    let params = fs::read(ckpt.join(PARAMS_FILE)).unwrap();
    let tensors = fs::read(ckpt.join(STATE_TENSORS_FILE)).unwrap();
    let json = fs::read(ckpt.join(STATE_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&tensors).unwrap();
    let p = safetensors::SafeTensors::deserialize(&params)
        .unwrap()
        .tensors()
        .iter()
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum::<usize>();
    assert!(p > 80_000, "{p} parameters");
    for name in ["exp_avg", "exp_avg_sq"] {
        let t = st.tensor(&format!("/optimizer/buffers/{name}")).unwrap();
        assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &[p][..]));
    }
    println!(
        "{p} parameters: params.safetensors {} bytes, state.safetensors {} bytes, state.json {} bytes",
        params.len(),
        tensors.len(),
        json.len()
    );
    assert!(tensors.len() < params.len() * 2 + 4096);
    assert!(json.len() < 16 * 1024, "state.json is {} bytes", json.len());
}
