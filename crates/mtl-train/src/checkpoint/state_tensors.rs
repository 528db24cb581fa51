//! The numeric arrays of a training state moved out of its JSON into
//! safetensors, and put back.
//!
//! The state is first serialised to a JSON value. In the parts that hold
//! tensors ([`TENSOR_FIELDS`]: the optimizer's moments, the balancer's
//! tracks, the model's buffers, the relation measurements), every array of at
//! least [`MIN_TENSOR_LEN`] numbers that are all floats becomes a tensor named
//! by its JSON pointer (`/optimizer/buffers/exp_avg`), and the array is
//! replaced by `{"$tensor": "/optimizer/buffers/exp_avg"}`. A tensor is F32
//! when every value is exactly an `f32` (optimizer and model buffers are),
//! F64 otherwise, so the round trip reproduces every bit. Integer arrays,
//! short vectors (a weight per task) and everything else stay in the JSON.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Number, Value};

/// The top-level fields of the state whose arrays may become tensors.
pub(super) const TENSOR_FIELDS: [&str; 4] = ["optimizer", "balancer", "buffers", "relations"];

/// Arrays shorter than this stay in the JSON.
pub(super) const MIN_TENSOR_LEN: usize = 16;

/// The key of the object that stands for a tensor in the JSON.
const TENSOR_REF: &str = "$tensor";

/// One array moved out of the JSON: its name, element type and bytes.
struct Moved {
    name: String,
    dtype: Dtype,
    len: usize,
    bytes: Vec<u8>,
}

/// Moves the arrays of `state` (a serialised training state) out into
/// safetensors bytes; `state` keeps references to them.
pub(super) fn split(state: &mut Value) -> Result<Vec<u8>, String> {
    let mut moved = Vec::new();
    if let Value::Object(fields) = state {
        for field in TENSOR_FIELDS {
            if let Some(v) = fields.get_mut(field) {
                move_arrays(v, &mut format!("/{field}"), &mut moved);
            }
        }
    }
    let views = moved
        .iter()
        .map(|m| {
            TensorView::new(m.dtype, vec![m.len], &m.bytes)
                .map(|v| (m.name.clone(), v))
                .map_err(|e| format!("{}: {e}", m.name))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let meta = HashMap::from([("format".to_string(), "mtl-state".to_string())]);
    safetensors::serialize(views, &Some(meta)).map_err(|e| e.to_string())
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn move_arrays(v: &mut Value, at: &mut String, out: &mut Vec<Moved>) {
    let len = at.len();
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                at.push('/');
                at.push_str(&pointer_token(k));
                move_arrays(x, at, out);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            if let Some(floats) = all_floats(items) {
                let name = at.clone();
                out.push(pack(&name, &floats));
                *v = Value::Object(
                    [(TENSOR_REF.to_string(), Value::String(name))]
                        .into_iter()
                        .collect(),
                );
                return;
            }
            for (i, x) in items.iter_mut().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                move_arrays(x, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// The values of an array long enough to move whose elements are all
/// floating-point numbers.
fn all_floats(items: &[Value]) -> Option<Vec<f64>> {
    if items.len() < MIN_TENSOR_LEN {
        return None;
    }
    items
        .iter()
        .map(|x| match x {
            Value::Number(n) if n.is_f64() => n.as_f64(),
            _ => None,
        })
        .collect()
}

fn pack(name: &str, values: &[f64]) -> Moved {
    let exact_f32 = values.iter().all(|&x| f64::from(x as f32) == x);
    let bytes = if exact_f32 {
        values
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect()
    } else {
        values.iter().flat_map(|&x| x.to_le_bytes()).collect()
    };
    Moved {
        name: name.to_string(),
        dtype: if exact_f32 { Dtype::F32 } else { Dtype::F64 },
        len: values.len(),
        bytes,
    }
}

/// Puts the tensors of `bytes` back where `state` refers to them. Every
/// tensor must be referred to exactly once.
pub(super) fn join(state: &mut Value, bytes: &[u8]) -> Result<(), String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut used = 0;
    if let Value::Object(fields) = state {
        for field in TENSOR_FIELDS {
            if let Some(v) = fields.get_mut(field) {
                put_back(v, &tensors, &mut used)?;
            }
        }
    }
    if used != tensors.len() {
        return Err(format!(
            "holds {} tensors, the state refers to {used}",
            tensors.len()
        ));
    }
    Ok(())
}

fn put_back(
    v: &mut Value,
    tensors: &safetensors::SafeTensors<'_>,
    used: &mut usize,
) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get(TENSOR_REF) {
                let t = tensors
                    .tensor(name)
                    .map_err(|_| format!("tensor {name:?} is missing"))?;
                *v = Value::Array(unpack(name, &t)?);
                *used += 1;
                return Ok(());
            }
            map.values_mut()
                .try_for_each(|x| put_back(x, tensors, used))
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|x| put_back(x, tensors, used)),
        _ => Ok(()),
    }
}

fn unpack(name: &str, t: &safetensors::tensor::TensorView<'_>) -> Result<Vec<Value>, String> {
    let number = |x: f64| {
        Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| format!("tensor {name:?} holds a value that is not finite"))
    };
    match (t.dtype(), t.shape()) {
        (Dtype::F32, [n]) if t.data().len() == n * 4 => t
            .data()
            .chunks_exact(4)
            .map(|c| number(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
        (Dtype::F64, [n]) if t.data().len() == n * 8 => t
            .data()
            .chunks_exact(8)
            .map(|c| number(f64::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        (dtype, shape) => Err(format!(
            "tensor {name:?} is {dtype:?} {shape:?}, expected a vector of F32 or F64"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(state: &Value) -> Value {
        let mut json = state.clone();
        let bytes = split(&mut json).unwrap();
        join(&mut json, &bytes).unwrap();
        json
    }

    #[test]
    fn long_float_arrays_move_and_everything_else_stays() {
        let moments: Vec<f32> = (0..40).map(|i| i as f32 * 0.1 - 1.3).collect();
        let exact: Vec<f64> = (0..20).map(|i| 1.0 / (3.0 + i as f64)).collect();
        let state = serde_json::json!({
            "epoch": 3,
            "optimizer": {"buffers": {"exp_avg": moments, "a/b~c": exact}},
            "balancer": {"weights": [0.5, 0.25], "counts": (0..20).collect::<Vec<u64>>()},
            "history": [moments],
        });
        let mut json = state.clone();
        let bytes = split(&mut json).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(tensors.len(), 2);
        let moved = tensors.tensor("/optimizer/buffers/exp_avg").unwrap();
        assert_eq!((moved.dtype(), moved.shape()), (Dtype::F32, &[40][..]));
        let wide = tensors.tensor("/optimizer/buffers/a~1b~0c").unwrap();
        assert_eq!(wide.dtype(), Dtype::F64);
        assert_eq!(json["balancer"], state["balancer"]);
        assert_eq!(json["history"], state["history"]);
        join(&mut json, &bytes).unwrap();
        assert_eq!(json, state);
    }

    #[test]
    fn a_tensor_missing_or_unreferenced_is_refused() {
        let state = serde_json::json!({"buffers": vec![0.5f32; 16]});
        let mut json = state.clone();
        let bytes = split(&mut json).unwrap();
        let mut renamed = json.clone();
        renamed["buffers"]["$tensor"] = Value::String("/other".into());
        let err = join(&mut renamed, &bytes).unwrap_err();
        assert!(err.contains("\"/other\" is missing"), "{err}");
        let mut inline = state.clone();
        let err = join(&mut inline, &bytes).unwrap_err();
        assert!(
            err.contains("holds 1 tensors, the state refers to 0"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn every_bit_comes_back(
            f32s in proptest::collection::vec(-1e30f32..1e30, 0..40),
            f64s in proptest::collection::vec(-1e300f64..1e300, 0..40),
        ) {
            let state = serde_json::json!({
                "optimizer": {"buffers": {"m": f32s.clone()}},
                "relations": [{"gram": f64s.clone()}],
            });
            let back = round_trip(&state);
            let m: Vec<f32> = serde_json::from_value(back["optimizer"]["buffers"]["m"].clone()).unwrap();
            let g: Vec<f64> = serde_json::from_value(back["relations"][0]["gram"].clone()).unwrap();
            prop_assert_eq!(m.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                f32s.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            prop_assert_eq!(g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                f64s.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }
}
