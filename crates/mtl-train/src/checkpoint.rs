//! Checkpoints: the parameters as safetensors (loadable by PyTorch's
//! `safetensors.torch.load_file`), and everything else as JSON.
//!
//! A checkpoint is a directory `ckpt-<epoch>` holding `params.safetensors`
//! and `state.json`. It is written under a temporary name, every file synced,
//! then renamed into place, so a crash leaves either the old checkpoint or
//! the new one, never half of one. `state.json` carries the CRC-32 of the
//! parameter file and of its own content, so a damaged checkpoint is refused
//! and the previous good one is used instead.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use mtl_core::ParamStore;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{io, Result, TrainError};
use crate::history::EpochRecord;
use crate::relations::RelationTracker;

/// File name of the parameters inside a checkpoint.
pub const PARAMS_FILE: &str = "params.safetensors";
/// File name of the state inside a checkpoint.
pub const STATE_FILE: &str = "state.json";
/// Checkpoints kept besides `best` (older ones are removed).
pub const KEEP: usize = 2;

/// Everything besides the parameters that a resumed run needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimisation steps taken.
    pub step: u64,
    /// The run configuration, for runs described by one (a resumed run
    /// must match it); `None` for a trainer built in code.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// The optimizer's state.
    pub optimizer: mtl_optim::OptimizerState,
    /// The learning-rate schedule.
    pub scheduler: mtl_optim::LrScheduler,
    /// The balancer's state.
    pub balancer: serde_json::Value,
    /// Best validation score so far and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs since the best score.
    pub stale_epochs: usize,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
    /// Non-trainable buffers (batch-normalisation statistics).
    pub buffers: Vec<f32>,
    /// The task-relation measurements so far.
    #[serde(default)]
    pub relations: Option<RelationTracker>,
    /// CRC-32 of `params.safetensors`.
    pub params_crc32: u32,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    state: TrainingState,
    /// CRC-32 of `state` serialised as JSON.
    crc32: u32,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// The parameters as safetensors bytes, named as in the store.
pub fn params_to_safetensors(ps: &ParamStore) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = ps
        .views()
        .iter()
        .map(|v| {
            ps.flat()[v.range()]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = ps
        .views()
        .iter()
        .zip(&bytes)
        .map(|(v, b)| {
            let view = TensorView::new(Dtype::F32, v.shape.clone(), b).map_err(|e| {
                TrainError::Checkpoint {
                    path: PARAMS_FILE.into(),
                    message: format!("{}: {e}", v.name),
                }
            })?;
            Ok((v.name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let meta: Option<HashMap<String, String>> =
        Some(HashMap::from([("format".to_string(), "mtl".to_string())]));
    safetensors::serialize(views, &meta).map_err(|e| TrainError::Checkpoint {
        path: PARAMS_FILE.into(),
        message: e.to_string(),
    })
}

/// Loads safetensors bytes into `ps`: every parameter must be present with
/// its shape; extra tensors are refused. Everything is checked before any
/// value is copied, so `ps` is left unchanged on error.
pub fn load_params(bytes: &[u8], ps: &mut ParamStore, path: &Path) -> Result<()> {
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    if st.len() != ps.views().len() {
        return Err(bad(format!(
            "holds {} tensors, the model has {}",
            st.len(),
            ps.views().len()
        )));
    }
    let views = ps.views().to_vec();
    let mut found = Vec::with_capacity(views.len());
    for v in &views {
        let t = st
            .tensor(&v.name)
            .map_err(|_| bad(format!("tensor {:?} is missing", v.name)))?;
        if t.dtype() != Dtype::F32
            || t.shape() != v.shape.as_slice()
            || t.data().len() != v.len() * 4
        {
            return Err(bad(format!(
                "tensor {:?} is {:?} {:?}, the model expects F32 {:?}",
                v.name,
                t.dtype(),
                t.shape(),
                v.shape
            )));
        }
        found.push(t);
    }
    for (v, t) in views.iter().zip(found) {
        let dst = &mut ps.flat_mut()[v.range()];
        for (d, c) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
            *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    Ok(())
}

/// Writes a checkpoint directory `dir` atomically (temporary name, sync, rename).
pub fn save(dir: &Path, ps: &ParamStore, mut state: TrainingState) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("ckpt");
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let params = params_to_safetensors(ps)?;
    state.params_crc32 = crc32fast::hash(&params);
    state.buffers = ps.buffers_flat().to_vec();
    write_synced(&tmp.join(PARAMS_FILE), &params)?;
    let body = serde_json::to_vec(&state).map_err(|e| TrainError::Checkpoint {
        path: tmp.join(STATE_FILE),
        message: e.to_string(),
    })?;
    let sealed = Sealed {
        crc32: crc32fast::hash(&body),
        state,
    };
    let json = serde_json::to_vec_pretty(&sealed).map_err(|e| TrainError::Checkpoint {
        path: tmp.join(STATE_FILE),
        message: e.to_string(),
    })?;
    write_synced(&tmp.join(STATE_FILE), &json)?;
    fs::File::open(&tmp)
        .and_then(|d| d.sync_all())
        .map_err(io(&tmp))?;
    if dir.exists() {
        let old = parent.join(format!(".{name}.old"));
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        fs::rename(dir, &old).map_err(io(dir))?;
        fs::rename(&tmp, dir).map_err(io(dir))?;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        fs::rename(&tmp, dir).map_err(io(dir))?;
    }
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))
}

/// Reads and verifies a checkpoint directory, loading its parameters and
/// buffers into `ps`. A damaged or mismatched checkpoint is refused with an
/// error naming the file, and `ps` is left unchanged.
pub fn load(dir: &Path, ps: &mut ParamStore) -> Result<TrainingState> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read(&state_path).map_err(io(&state_path))?;
    let state = unseal(&text, &state_path)?;
    let params_path = dir.join(PARAMS_FILE);
    let params = fs::read(&params_path).map_err(io(&params_path))?;
    restore_into(state, &params, ps, dir)
}

/// [`load`] from the bytes of `state.json` and `params.safetensors`; `dir`
/// names the checkpoint in errors.
pub fn load_bytes(
    state: &[u8],
    params: &[u8],
    ps: &mut ParamStore,
    dir: &Path,
) -> Result<TrainingState> {
    let state = unseal(state, &dir.join(STATE_FILE))?;
    restore_into(state, params, ps, dir)
}

/// Parses `state.json` and verifies its checksum.
fn unseal(text: &[u8], state_path: &Path) -> Result<TrainingState> {
    let bad = |message: String| TrainError::Checkpoint {
        path: state_path.to_path_buf(),
        message,
    };
    let sealed: Sealed = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
    let body = serde_json::to_vec(&sealed.state).map_err(|e| bad(e.to_string()))?;
    if crc32fast::hash(&body) != sealed.crc32 {
        return Err(bad("checksum mismatch: the state is damaged".into()));
    }
    Ok(sealed.state)
}

/// Verifies the parameters against the state and loads both into `ps`.
fn restore_into(
    state: TrainingState,
    params: &[u8],
    ps: &mut ParamStore,
    dir: &Path,
) -> Result<TrainingState> {
    let params_path = dir.join(PARAMS_FILE);
    if crc32fast::hash(params) != state.params_crc32 {
        return Err(TrainError::Checkpoint {
            path: params_path,
            message: "checksum mismatch: the parameters are damaged".into(),
        });
    }
    if state.buffers.len() != ps.buffers_flat().len() {
        return Err(TrainError::Checkpoint {
            path: dir.join(STATE_FILE),
            message: format!(
                "holds {} buffer values, the model has {}",
                state.buffers.len(),
                ps.buffers_flat().len()
            ),
        });
    }
    load_params(params, ps, &params_path)?;
    ps.buffers_flat_mut().copy_from_slice(&state.buffers);
    Ok(state)
}

/// The checkpoint directories of a run, newest first.
pub fn list(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(run_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix("ckpt-").and_then(|s| s.parse().ok()) {
                found.push((n, e.path()));
            }
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The directory of the checkpoint after `epoch` epochs.
pub fn dir_for(run_dir: &Path, epoch: usize) -> PathBuf {
    run_dir.join(format!("ckpt-{epoch:05}"))
}

/// Removes all but the newest `keep` checkpoints ([`KEEP`] in a run directory). Each is first renamed
/// out of the listing (to `.ckpt-<epoch>.del`) and then deleted, so a crash
/// in the middle never leaves a half-deleted checkpoint among the listed
/// ones; leftovers of such a crash are deleted on the next call.
pub fn prune(run_dir: &Path, keep: usize) -> Result<()> {
    for old in list(run_dir)?.into_iter().skip(keep) {
        let name = old
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let doomed = run_dir.join(format!(".{name}.del"));
        if doomed.exists() {
            fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
        }
        fs::rename(&old, &doomed).map_err(io(&old))?;
    }
    if let Ok(entries) = fs::read_dir(run_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".ckpt-") && name.ends_with(".del") {
                let path = e.path();
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}
