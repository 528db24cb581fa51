//! IDX files (the format of the original MNIST distribution), plain or
//! gzipped.
//!
//! Layout: two zero bytes, a type byte, the number of dimensions, then each
//! dimension as a big-endian u32, then the elements big-endian in C order.
//! Type bytes: `0x08` u8, `0x09` i8, `0x0B` i16, `0x0C` i32, `0x0D` f32,
//! `0x0E` f64. Signed integers are widened to i64. A file starting with the
//! gzip magic `1f 8b` is decompressed first.

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::array::{Array, ArrayData};
use crate::error::{DataError, Result};

/// Reads an IDX file (such as `train-images-idx3-ubyte.gz`).
pub fn read(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path)
}

/// Parses the bytes of an IDX file, gunzipping them first if they are
/// gzipped; `path` names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Array> {
    let err = |reason: String| DataError::Array {
        path: path.to_path_buf(),
        format: "idx",
        reason,
    };
    let inflated;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("corrupt gzip stream: {e}")))?;
        inflated = out;
        &inflated[..]
    } else {
        bytes
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            "bad magic: an IDX file starts with two zero bytes".into()
        ));
    }
    let (dtype, ndim) = (bytes[2], usize::from(bytes[3]));
    let width = match dtype {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => return Err(err(format!("unknown element type 0x{other:02X}"))),
    };
    let dims_end = 4 + 4 * ndim;
    let dims = bytes
        .get(4..dims_end)
        .ok_or_else(|| err(format!("file ends inside the {ndim} dimension sizes")))?;
    let shape: Vec<usize> = dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("chunk of 4")) as usize)
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    let body = &bytes[dims_end..];
    let expected = count
        .checked_mul(width)
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    if body.len() != expected {
        return Err(err(format!(
            "data length {} bytes does not match shape {shape:?} of {width}-byte elements ({} bytes)",
            body.len(),
            expected
        )));
    }
    let data = match dtype {
        0x08 => ArrayData::U8(body.to_vec()),
        0x09 => ArrayData::I64(body.iter().map(|&b| i64::from(b as i8)).collect()),
        0x0B => ArrayData::I64(
            body.chunks_exact(2)
                .map(|c| i64::from(i16::from_be_bytes([c[0], c[1]])))
                .collect(),
        ),
        0x0C => ArrayData::I64(
            body.chunks_exact(4)
                .map(|c| i64::from(i32::from_be_bytes(c.try_into().expect("chunk of 4"))))
                .collect(),
        ),
        0x0D => ArrayData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_be_bytes(c.try_into().expect("chunk of 4")))
                .collect(),
        ),
        _ => ArrayData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_be_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        ),
    };
    Ok(Array { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    /// A 2x2x3 u8 image stack (MNIST layout, idx3-ubyte).
    fn images() -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend(0u8..12);
        b
    }

    #[test]
    fn reads_plain_and_gzipped_files() {
        let plain = parse(&images(), Path::new("imgs")).unwrap();
        assert_eq!(plain.shape, vec![2, 2, 3]);
        assert_eq!(plain.data, ArrayData::U8((0..12).collect()));
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&images()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(parse(&gz, Path::new("imgs.gz")).unwrap(), plain);
    }

    #[test]
    fn reads_signed_and_float_elements_big_endian() {
        let mut b = vec![0, 0, 0x0C, 1, 0, 0, 0, 2];
        b.extend((-5i32).to_be_bytes());
        b.extend(70_000i32.to_be_bytes());
        assert_eq!(
            parse(&b, Path::new("i")).unwrap().data,
            ArrayData::I64(vec![-5, 70_000])
        );
        let mut f = vec![0, 0, 0x0D, 1, 0, 0, 0, 1];
        f.extend(1.25f32.to_be_bytes());
        assert_eq!(
            parse(&f, Path::new("f")).unwrap().data,
            ArrayData::F32(vec![1.25])
        );
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let p = Path::new("t10k-labels");
        let msg = |b: &[u8]| parse(b, p).unwrap_err().to_string();
        assert!(msg(&[1, 0, 8, 1]).contains("bad magic"));
        assert!(msg(&[0, 0, 0x42, 1, 0, 0, 0, 0]).contains("unknown element type 0x42"));
        assert!(msg(&[0, 0, 8, 3, 0, 0]).contains("inside the 3 dimension sizes"));
        let mut short = images();
        short.pop();
        let m = msg(&short);
        assert!(
            m.starts_with("t10k-labels: idx: data length 11 bytes"),
            "{m}"
        );
        assert!(msg(&[0x1f, 0x8b, 0, 1]).contains("gzip"));
    }
}
