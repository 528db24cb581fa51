//! NPY files (numpy's `np.save` format), read and written.
//!
//! Supported element types: `float32`, `float64`, `uint8` and `int64`, little
//! endian, C order; format versions 1.0 to 3.0 are read and 1.0 is written
//! (header padded so that the data starts at a multiple of 64 bytes, as numpy
//! does). Fortran-ordered and big-endian files are refused with an error.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::array::{Array, ArrayData};
use crate::error::{DataError, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Reads an NPY file.
///
/// ```
/// use mtl_data::{npy, Array, ArrayData};
///
/// let dir = std::env::temp_dir().join(format!("mtl-npy-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("a.npy");
/// let a = Array::new(vec![2, 2], ArrayData::I64(vec![1, -2, 3, 4])).unwrap();
/// npy::write(&path, &a).unwrap();
/// assert_eq!(npy::read(&path).unwrap(), a);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn read(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path)
}

/// Parses the bytes of an NPY file; `path` names it in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Array> {
    let err = |reason: String| DataError::Array {
        path: path.to_path_buf(),
        format: "npy",
        reason,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err(
            "bad magic: not an NPY file (expected \\x93NUMPY)".into()
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(err(format!("unsupported format version {major}.{minor}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| {
        err(format!(
            "header of {header_len} bytes runs past the end of the file"
        ))
    })?;
    let header = std::str::from_utf8(header).map_err(|_| err("header is not text".into()))?;
    let descr = header_value(header, "descr").ok_or_else(|| err("header has no 'descr'".into()))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = header_value(header, "fortran_order")
        .ok_or_else(|| err("header has no 'fortran_order'".into()))?;
    if fortran != "False" {
        return Err(err(
            "Fortran-ordered arrays are not supported; save with C order".into(),
        ));
    }
    let shape_text =
        header_value(header, "shape").ok_or_else(|| err("header has no 'shape'".into()))?;
    let shape = parse_shape(shape_text).ok_or_else(|| err(format!("bad shape {shape_text}")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    let body = &bytes[start + header_len..];
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        "|u1" | "<u1" | "u1" => 1,
        "<i8" => 8,
        other => {
            return Err(err(format!(
                "unsupported dtype {other:?}; supported: <f4, <f8, |u1, <i8 (little endian)"
            )))
        }
    };
    let expected = count
        .checked_mul(width)
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    if body.len() != expected {
        return Err(err(format!(
            "data length {} bytes does not match shape {shape:?} of dtype {descr} ({} bytes)",
            body.len(),
            expected
        )));
    }
    let data = match descr {
        "<f4" => ArrayData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")))
                .collect(),
        ),
        "<f8" => ArrayData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        ),
        "<i8" => ArrayData::I64(
            body.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        ),
        _ => ArrayData::U8(body.to_vec()),
    };
    Ok(Array { shape, data })
}

/// The text of the value of `key` in a numpy header dict, up to the next
/// top-level comma or closing brace.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// Writes `array` as an NPY 1.0 file (creating or replacing it).
pub fn write(path: impl AsRef<Path>, array: &Array) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode(array)?;
    let mut file = fs::File::create(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    file.write_all(&bytes).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of an NPY 1.0 file holding `array`.
pub fn encode(array: &Array) -> Result<Vec<u8>> {
    let count: usize = array.shape.iter().product();
    if count != array.data.len() {
        return Err(DataError::invalid(
            "npy array",
            format!(
                "{} elements cannot fill shape {:?}",
                array.data.len(),
                array.shape
            ),
        ));
    }
    let descr = match array.data {
        ArrayData::F32(_) => "<f4",
        ArrayData::F64(_) => "<f8",
        ArrayData::U8(_) => "|u1",
        ArrayData::I64(_) => "<i8",
    };
    let shape = match array.shape.as_slice() {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.extend(std::iter::repeat(' ').take(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        DataError::invalid(
            "npy array",
            format!("shape {:?} gives a header too long", array.shape),
        )
    })?;
    let mut out = Vec::with_capacity(10 + header.len() + count * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &array.data {
        ArrayData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayData::U8(v) => out.extend_from_slice(v),
        ArrayData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(a: &Array) -> Array {
        let bytes = encode(a).unwrap();
        assert_eq!((bytes[8] as usize + 10) % 64, 0, "data aligned to 64 bytes");
        parse(&bytes, Path::new("mem.npy")).unwrap()
    }

    #[test]
    fn every_dtype_round_trips() {
        let cases = [
            Array::new(
                vec![2, 3],
                ArrayData::F32(vec![1.5, -0.0, f32::MAX, f32::MIN_POSITIVE, 3.25, -7.0]),
            )
            .unwrap(),
            Array::new(
                vec![3],
                ArrayData::F64(vec![1e-300, -2.5, std::f64::consts::PI]),
            )
            .unwrap(),
            Array::new(vec![2, 1, 2], ArrayData::U8(vec![0, 255, 7, 128])).unwrap(),
            Array::new(vec![2], ArrayData::I64(vec![i64::MIN, i64::MAX])).unwrap(),
            Array::new(vec![], ArrayData::F32(vec![42.0])).unwrap(),
            Array::new(vec![0, 4], ArrayData::F32(vec![])).unwrap(),
        ];
        for a in &cases {
            assert_eq!(&round_trip(a), a);
        }
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let good = encode(&Array::new(vec![2], ArrayData::F32(vec![1.0, 2.0])).unwrap()).unwrap();
        let p = Path::new("x.npy");
        let msg = |b: &[u8]| parse(b, p).unwrap_err().to_string();
        assert!(msg(b"PK\x03\x04 not numpy").contains("magic"));
        assert!(msg(&good[..good.len() - 1]).contains("data length 7 bytes"));
        let swapped = replace(&good, b"<f4", b">f4");
        assert!(
            msg(&swapped).contains("unsupported dtype \">f4\""),
            "{}",
            msg(&swapped)
        );
        assert!(msg(&replace(&good, b"False", b"True ")).contains("Fortran"));
        assert!(msg(&replace(&good, b"(2,)", b"(3,)")).contains("shape [3]"));
    }

    fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    }

    proptest! {
        #[test]
        fn f32_matrices_round_trip(rows in 0usize..6, cols in 1usize..6, seed in proptest::collection::vec(-1e6f32..1e6, 36)) {
            let data = seed[..rows * cols].to_vec();
            let a = Array::new(vec![rows, cols], ArrayData::F32(data)).unwrap();
            prop_assert_eq!(round_trip(&a), a);
        }
    }
}
