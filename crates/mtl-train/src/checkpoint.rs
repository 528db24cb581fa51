//! Checkpoints: the parameters as safetensors (loadable by PyTorch's
//! `safetensors.torch.load_file`), the state's tensors as safetensors too,
//! and its scalars and metadata as JSON.
//!
//! A checkpoint is a directory `ckpt-<epoch>` holding `params.safetensors`,
//! `state.safetensors` (optimizer moments, balancer tracks, buffers: see
//! [`state_tensors`]) and `state.json`. It is written under a temporary name,
//! every file synced, then renamed into place, so a crash leaves either the
//! old checkpoint or the new one, never half of one. `state.json` carries
//! [`FORMAT_VERSION`], the CRC-32 of both safetensors files and of its own
//! content, so a damaged checkpoint is refused and the previous good one is
//! used instead.
//!
//! Checkpoints of format version 1 (everything but the parameters in
//! `state.json`, no version field) still load; the next checkpoint of the
//! run is written in the current format. A newer format is refused with a
//! message naming both versions.

mod state_tensors;

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
/// File name of the state's scalars and metadata inside a checkpoint.
pub const STATE_FILE: &str = "state.json";
/// File name of the state's tensors inside a checkpoint.
pub const STATE_TENSORS_FILE: &str = "state.safetensors";
/// The checkpoint format this build writes. Version 1 kept the whole state
/// in `state.json`; version 2 moves its tensors to `state.safetensors`.
pub const FORMAT_VERSION: u32 = 2;
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

/// `state.json` of format version 1: the whole state inline, as written.
#[derive(Deserialize)]
struct SealedV1<'a> {
    #[serde(borrow)]
    state: &'a serde_json::value::RawValue,
    /// CRC-32 of `state` serialised as compact JSON.
    crc32: u32,
}

/// `json` without the whitespace outside its strings: the compact form
/// serde_json writes, of a document it wrote pretty-printed.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// `state.json` of the current format: the state with its tensors replaced
/// by references into `state.safetensors`.
#[derive(Serialize, Deserialize)]
struct Sealed {
    format_version: u32,
    state: serde_json::Value,
    /// CRC-32 of `state.safetensors`.
    tensors_crc32: u32,
    /// CRC-32 of the three fields above serialised as JSON.
    crc32: u32,
}

impl Sealed {
    fn checksum(&self) -> Result<u32> {
        let body = serde_json::to_vec(&(self.format_version, &self.state, self.tensors_crc32))
            .map_err(|e| TrainError::Checkpoint {
                path: STATE_FILE.into(),
                message: e.to_string(),
            })?;
        Ok(crc32fast::hash(&body))
    }
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
    write_state(&tmp, &state)?;
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
    let state = read_state(dir)?;
    let params_path = dir.join(PARAMS_FILE);
    let params = fs::read(&params_path).map_err(io(&params_path))?;
    restore_into(state, &params, ps, dir)
}

/// [`load`] from the bytes of `state.json`, `state.safetensors` (`None`
/// when the checkpoint has none, as in format version 1) and
/// `params.safetensors`; `dir` names the checkpoint in errors.
pub fn load_bytes(
    state: &[u8],
    state_tensors: Option<&[u8]>,
    params: &[u8],
    ps: &mut ParamStore,
    dir: &Path,
) -> Result<TrainingState> {
    let state = decode_state(state, || Ok(state_tensors.map(<[u8]>::to_vec)), dir)?;
    restore_into(state, params, ps, dir)
}

/// Reads and verifies the state of the checkpoint `dir` (`state.json` and,
/// from format version 2, `state.safetensors`) without its parameters.
///
/// # Errors
/// [`TrainError::Checkpoint`] naming the damaged, missing or newer file.
pub fn read_state(dir: &Path) -> Result<TrainingState> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read(&state_path).map_err(io(&state_path))?;
    let tensors_path = dir.join(STATE_TENSORS_FILE);
    decode_state(
        &text,
        || match fs::read(&tensors_path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&tensors_path)(e)),
        },
        dir,
    )
}

/// Writes `state` into the checkpoint directory `dir` in the current
/// format: `state.safetensors`, then `state.json` sealing it, each synced.
/// [`save`] writes a whole checkpoint atomically; this rewrites the state
/// of an existing one in place.
///
/// # Errors
/// [`TrainError::Io`] naming the file that could not be written.
pub fn write_state(dir: &Path, state: &TrainingState) -> Result<()> {
    let (json, tensors) = encode_state(state)?;
    write_synced(&dir.join(STATE_TENSORS_FILE), &tensors)?;
    write_synced(&dir.join(STATE_FILE), &json)
}

/// `state` in the current format: the bytes of `state.json` and of
/// `state.safetensors`.
///
/// # Errors
/// [`TrainError::Checkpoint`] when the state cannot be serialised.
pub fn encode_state(state: &TrainingState) -> Result<(Vec<u8>, Vec<u8>)> {
    let bad = |path: &str, message: String| TrainError::Checkpoint {
        path: path.into(),
        message,
    };
    let mut value = serde_json::to_value(state).map_err(|e| bad(STATE_FILE, e.to_string()))?;
    let tensors =
        state_tensors::split(&mut value).map_err(|message| bad(STATE_TENSORS_FILE, message))?;
    let mut sealed = Sealed {
        format_version: FORMAT_VERSION,
        state: value,
        tensors_crc32: crc32fast::hash(&tensors),
        crc32: 0,
    };
    sealed.crc32 = sealed.checksum()?;
    let json = serde_json::to_vec_pretty(&sealed).map_err(|e| bad(STATE_FILE, e.to_string()))?;
    Ok((json, tensors))
}

/// Parses and verifies `state.json` (`text`) of the checkpoint `dir`;
/// `tensors` reads `state.safetensors` when the format has one.
fn decode_state(
    text: &[u8],
    tensors: impl FnOnce() -> Result<Option<Vec<u8>>>,
    dir: &Path,
) -> Result<TrainingState> {
    let state_path = dir.join(STATE_FILE);
    let bad = |path: &Path, message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let doc: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| bad(&state_path, e.to_string()))?;
    let version = match doc.get("format_version") {
        None => 1,
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(
                &state_path,
                format!("format_version is {v}, expected a whole number"),
            )
        })?,
    };
    match version {
        1 => {
            // The checksum covers the state as it was written, whatever
            // fields the types have gained since.
            let sealed: SealedV1<'_> =
                serde_json::from_slice(text).map_err(|e| bad(&state_path, e.to_string()))?;
            if crc32fast::hash(compact(sealed.state.get()).as_bytes()) != sealed.crc32 {
                return Err(bad(
                    &state_path,
                    "checksum mismatch: the state is damaged".into(),
                ));
            }
            serde_json::from_str(sealed.state.get()).map_err(|e| bad(&state_path, e.to_string()))
        }
        2 => {
            let sealed: Sealed =
                serde_json::from_value(doc).map_err(|e| bad(&state_path, e.to_string()))?;
            if sealed.checksum()? != sealed.crc32 {
                return Err(bad(
                    &state_path,
                    "checksum mismatch: the state is damaged".into(),
                ));
            }
            let tensors_path = dir.join(STATE_TENSORS_FILE);
            let bytes = tensors()?.ok_or_else(|| {
                bad(
                    &tensors_path,
                    "is missing (format version 2 keeps the state's tensors there)".into(),
                )
            })?;
            if crc32fast::hash(&bytes) != sealed.tensors_crc32 {
                return Err(bad(
                    &tensors_path,
                    "checksum mismatch: the state's tensors are damaged".into(),
                ));
            }
            let mut value = sealed.state;
            state_tensors::join(&mut value, &bytes).map_err(|m| bad(&tensors_path, m))?;
            serde_json::from_value(value).map_err(|e| bad(&state_path, e.to_string()))
        }
        newer => Err(bad(
            &state_path,
            format!(
                "has checkpoint format version {newer}; this build of mtl reads versions 1 to \
                 {FORMAT_VERSION}: resume or evaluate it with the newer mtl that wrote it"
            ),
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::compact;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e30f64..1e30).prop_map(serde_json::Value::from),
            "[ a\"\\\\\n\t{}:,é]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[ a\"\\\\:,]{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The compact form of a pretty-printed document is what serde_json
        /// writes compactly, strings with spaces, quotes and escapes included.
        #[test]
        fn compact_undoes_pretty_printing(v in json()) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(compact(&pretty), serde_json::to_string(&v).unwrap());
        }
    }
}
