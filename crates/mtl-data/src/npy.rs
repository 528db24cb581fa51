//! NPY files (numpy's `np.save` format), read and written.
//!
//! Supported element types, little endian, C order: `float32`, `float64`,
//! `uint8`, `int64` and `bool` read and written as they are; `int8`, `int16`,
//! `int32`, `uint16` and `uint32` read widened to `int64`. Format versions
//! 1.0 to 3.0 are read and 1.0 is written
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

/// An element type of an NPY file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
    /// `|u1`.
    U8,
    /// `<u2`, read widened to i64.
    U16,
    /// `<u4`, read widened to i64.
    U32,
    /// `|i1`, read widened to i64.
    I8,
    /// `<i2`, read widened to i64.
    I16,
    /// `<i4`, read widened to i64.
    I32,
    /// `<i8`.
    I64,
    /// `|b1` (numpy's bool).
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 | Dtype::Bool => 1,
            Dtype::U16 | Dtype::I16 => 2,
            Dtype::F32 | Dtype::U32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
        }
    }

    /// Whether the elements are integers (bool excluded).
    pub fn is_integer(self) -> bool {
        !matches!(self, Dtype::F32 | Dtype::F64 | Dtype::Bool)
    }

    /// The descriptor written in headers (`<f4`, `|b1`, ...).
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::Bool => "|b1",
        }
    }

    fn from_descr(descr: &str) -> Option<Dtype> {
        Some(match descr {
            "<f4" => Dtype::F32,
            "<f8" => Dtype::F64,
            "|u1" | "<u1" | "u1" => Dtype::U8,
            "<u2" => Dtype::U16,
            "<u4" => Dtype::U32,
            "|i1" | "<i1" | "i1" => Dtype::I8,
            "<i2" => Dtype::I16,
            "<i4" => Dtype::I32,
            "<i8" => Dtype::I64,
            "|b1" | "<b1" | "b1" => Dtype::Bool,
            _ => return None,
        })
    }

    /// The elements of `bytes` (a whole number of elements, little endian)
    /// appended to `out` as f32, bytes divided by `u8_divisor`.
    pub(crate) fn extend_f32(self, bytes: &[u8], u8_divisor: f32, out: &mut Vec<f32>) {
        match self {
            Dtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4"))),
            ),
            Dtype::F64 => out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32),
            ),
            Dtype::U8 => out.extend(bytes.iter().map(|&b| f32::from(b) / u8_divisor)),
            Dtype::Bool => out.extend(bytes.iter().map(|&b| f32::from(u8::from(b != 0)))),
            _ => {
                let mut ints = Vec::new();
                self.extend_i64(bytes, &mut ints);
                out.extend(ints.into_iter().map(|v| v as f32));
            }
        }
    }

    /// Integer elements of `bytes` widened to i64 and appended to `out`.
    fn extend_i64(self, bytes: &[u8], out: &mut Vec<i64>) {
        match self {
            Dtype::U8 => out.extend(bytes.iter().map(|&b| i64::from(b))),
            Dtype::I8 => out.extend(bytes.iter().map(|&b| i64::from(b as i8))),
            Dtype::U16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]]))),
            ),
            Dtype::I16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]]))),
            ),
            Dtype::U32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| i64::from(u32::from_le_bytes(c.try_into().expect("chunk of 4")))),
            ),
            Dtype::I32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("chunk of 4")))),
            ),
            Dtype::I64 => out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8"))),
            ),
            Dtype::F32 | Dtype::F64 | Dtype::Bool => {}
        }
    }

    /// The elements of `bytes` as an [`ArrayData`]: floats and bytes as they
    /// are, other integers widened to i64, bools as bools.
    fn decode(self, bytes: &[u8]) -> ArrayData {
        match self {
            Dtype::F32 => {
                let mut v = Vec::with_capacity(bytes.len() / 4);
                self.extend_f32(bytes, 1.0, &mut v);
                ArrayData::F32(v)
            }
            Dtype::F64 => ArrayData::F64(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")))
                    .collect(),
            ),
            Dtype::U8 => ArrayData::U8(bytes.to_vec()),
            Dtype::Bool => ArrayData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            _ => {
                let mut v = Vec::with_capacity(bytes.len() / self.size());
                self.extend_i64(bytes, &mut v);
                ArrayData::I64(v)
            }
        }
    }
}

/// What the header of an NPY file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The element type.
    pub dtype: Dtype,
    /// The shape.
    pub shape: Vec<usize>,
    /// The byte offset of the first element.
    pub data_offset: usize,
    /// The byte length of the data, `product(shape) · size(dtype)` (checked).
    pub data_len: usize,
}

/// Parses the header at the start of `bytes` (the file's first bytes: the
/// header needs at most its declared length); `path` names the file in
/// errors. Every size is checked for overflow.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
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
    let (header_len, start): (usize, usize) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            usize::try_from(u32::from_le_bytes([
                bytes[8], bytes[9], bytes[10], bytes[11],
            ]))
            .map_err(|_| err("header length does not fit in memory".into()))?,
            12,
        ),
        _ => return Err(err(format!("unsupported format version {major}.{minor}"))),
    };
    let data_offset = start
        .checked_add(header_len)
        .ok_or_else(|| err("header length overflows".into()))?;
    let header = bytes.get(start..data_offset).ok_or_else(|| {
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
    let dtype = Dtype::from_descr(descr).ok_or_else(|| {
        err(format!(
            "unsupported dtype {descr:?}; supported (little endian): <f4, <f8, |u1, <u2, <u4, \
             |i1, <i2, <i4, <i8, |b1"
        ))
    })?;
    let data_len = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    Ok(Header {
        dtype,
        shape,
        data_offset,
        data_len,
    })
}

/// Parses the bytes of an NPY file; `path` names it in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Array> {
    let header = parse_header(bytes, path)?;
    let body = &bytes[header.data_offset..];
    if body.len() != header.data_len {
        return Err(DataError::Array {
            path: path.to_path_buf(),
            format: "npy",
            reason: format!(
                "data length {} bytes does not match shape {:?} of dtype {:?} ({} bytes)",
                body.len(),
                header.shape,
                header.dtype,
                header.data_len
            ),
        });
    }
    Ok(Array {
        data: header.dtype.decode(body),
        shape: header.shape,
    })
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

/// The header of an NPY 1.0 file of `dtype` and `shape`: magic, version,
/// length and the dict, padded so that the data starts at a multiple of 64
/// bytes, as numpy does.
pub fn encode_header(dtype: Dtype, shape: &[usize]) -> Result<Vec<u8>> {
    let shape_text = match shape {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        dtype.descr()
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        DataError::invalid(
            "npy array",
            format!("shape {shape:?} gives a header too long"),
        )
    })?;
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// The bytes of an NPY 1.0 file holding `array`.
pub fn encode(array: &Array) -> Result<Vec<u8>> {
    let count = array
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(array.data.len()) {
        return Err(DataError::invalid(
            "npy array",
            format!(
                "{} elements cannot fill shape {:?}",
                array.data.len(),
                array.shape
            ),
        ));
    }
    let dtype = match array.data {
        ArrayData::F32(_) => Dtype::F32,
        ArrayData::F64(_) => Dtype::F64,
        ArrayData::U8(_) => Dtype::U8,
        ArrayData::I64(_) => Dtype::I64,
        ArrayData::Bool(_) => Dtype::Bool,
    };
    let header = encode_header(dtype, &array.shape)?;
    let mut out = Vec::with_capacity(header.len() + array.data.len() * 8);
    out.extend_from_slice(&header);
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
        ArrayData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
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
            Array::new(vec![2, 2], ArrayData::Bool(vec![true, false, false, true])).unwrap(),
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
        let huge = replace(&good, b"(2,)", b"(99999999999,99999999999,)");
        assert!(msg(&huge).contains("too large"), "{}", msg(&huge));
    }

    #[test]
    fn narrow_integers_are_widened() {
        let good = encode(&Array::new(vec![2], ArrayData::F32(vec![1.0, 2.0])).unwrap()).unwrap();
        let mut i4 = replace(&good, b"<f4", b"<i4");
        let at = i4.len() - 8;
        i4[at..].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0]);
        let a = parse(&i4, Path::new("i.npy")).unwrap();
        assert_eq!(a.data, ArrayData::I64(vec![-1, 7]));
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
