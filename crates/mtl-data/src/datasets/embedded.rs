//! The bundled data files (`data/` at the workspace root, see `data/NOTICE`),
//! embedded in the binary so that every built-in data set works offline.

use std::io::Read;

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

/// 5,000 MNIST digits: 784 pixels 0..255 then the label, no header.
pub(crate) const MNIST_5K: &[u8] = include_bytes!("../../../../data/mnist_5k.csv.gz");
/// UCI optical digits: 64 pixels 0..16 then the label, no header.
pub(crate) const DIGITS: &[u8] = include_bytes!("../../../../data/digits.csv.gz");
/// UCI Auto MPG: 392 rows, no header.
pub(crate) const AUTOMPG: &[u8] = include_bytes!("../../../../data/autompg.csv.gz");
/// Linnerud exercise columns, space-separated with a header.
pub(crate) const LINNERUD_EXERCISE: &[u8] =
    include_bytes!("../../../../data/linnerud_exercise.csv");
/// Linnerud physiological columns, space-separated with a header.
pub(crate) const LINNERUD_PHYSIOLOGICAL: &[u8] =
    include_bytes!("../../../../data/linnerud_physiological.csv");
/// Three blobs: x, y, cluster id 1..3, no header.
pub(crate) const THREE_BLOBS: &[u8] = include_bytes!("../../../../data/three_blobs.csv.gz");

/// The decompressed bytes of an embedded gzip file named `name`.
pub(crate) fn gunzip(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Table {
            source_name: name.to_string(),
            line: None,
            reason: format!("corrupt embedded gzip stream: {e}"),
        })?;
    Ok(out)
}
