//! Features that stay on disk: NPY files read row by row, so a data set
//! larger than memory trains with resident memory bounded by the model, a
//! few batches and the page cache (which the kernel may drop).
//!
//! Each file is memory-mapped (`memmap2`, read only): a row is then copied
//! straight from the page cache, with no system call. Where the map cannot
//! be made, because an address-space limit (`ulimit -v`, `prlimit --as`)
//! is smaller than the file or the platform cannot map it, rows are read
//! with positioned reads (`pread`) instead, which go through the same page
//! cache and hold nothing between batches. Both give the same bytes; the
//! map is about 1.5x faster on rows of 1 KiB (no copy through the kernel per
//! row). A batch reads each of its rows once; runs of consecutive rows are
//! read in one call. An epoch therefore reads each selected row once, in the
//! loader's seeded order.
//!
//! As with any memory-mapped loader (`numpy.memmap`), a feature file must
//! not be truncated by another program while training reads it: reading a
//! page past the new end of a mapped file stops the process with `SIGBUS`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use mtl_core::Tensor;

use crate::error::{DataError, Result};
use crate::npy::{self, Dtype, Header};

/// The most bytes an NPY header may take (numpy writes a few hundred).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// How the rows of a file are reached.
#[derive(Clone, Debug)]
enum Rows {
    /// The whole file, mapped read-only.
    Mapped(Arc<Mmap>),
    /// The open file, read with positioned reads.
    Read(Arc<File>),
}

/// One NPY file whose rows are read on demand.
#[derive(Clone, Debug)]
pub struct DiskArray {
    path: PathBuf,
    rows_from: Rows,
    header: Header,
    rows: usize,
    row_bytes: usize,
}

impl PartialEq for DiskArray {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.header == other.header
    }
}

impl DiskArray {
    /// Opens an NPY file and checks that its length matches its header; reads
    /// the header only. The file is memory-mapped where the address space
    /// allows, else read row by row ([`DiskArray::is_mapped`]).
    pub fn open(path: impl AsRef<Path>) -> Result<DiskArray> {
        Self::open_with(path.as_ref(), true)
    }

    /// Whether the file is memory-mapped (else read with positioned reads).
    pub fn is_mapped(&self) -> bool {
        matches!(self.rows_from, Rows::Mapped(_))
    }

    fn open_with(path: &Path, map: bool) -> Result<DiskArray> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut prefix = Vec::new();
        (&file)
            .take(len.min(MAX_HEADER_BYTES))
            .read_to_end(&mut prefix)
            .map_err(io)?;
        let header = npy::parse_header(&prefix, path)?;
        let err = |reason: String| DataError::Array {
            path: path.to_path_buf(),
            format: "npy",
            reason,
        };
        let expected = u64::try_from(header.data_offset)
            .ok()
            .zip(u64::try_from(header.data_len).ok())
            .and_then(|(a, b)| a.checked_add(b))
            .ok_or_else(|| err("header sizes overflow".into()))?;
        if expected != len {
            return Err(err(format!(
                "file length {len} bytes does not match shape {:?} of dtype {:?} ({expected} bytes)",
                header.shape, header.dtype
            )));
        }
        let rows = *header
            .shape
            .first()
            .ok_or_else(|| err("a scalar has no rows".into()))?;
        let row_bytes = header.data_len.checked_div(rows).unwrap_or(0);
        // SAFETY: the map is read-only and lives as long as the `DiskArray`s
        // sharing it. Its contents change only if another program writes the
        // file meanwhile: values then change (as they would for `pread`), or
        // the process stops with SIGBUS if the file is truncated, as the
        // module documentation says. A map that fails (address-space limit,
        // empty file) falls back to positioned reads.
        let mapped = if map && len > 0 {
            unsafe { Mmap::map(&file) }.ok()
        } else {
            None
        };
        let rows_from = match mapped {
            Some(m) if m.len() as u64 == len => Rows::Mapped(Arc::new(m)),
            _ => Rows::Read(Arc::new(file)),
        };
        Ok(DiskArray {
            path: path.to_path_buf(),
            rows_from,
            header,
            rows,
            row_bytes,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shape, first axis the rows.
    pub fn shape(&self) -> &[usize] {
        &self.header.shape
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends rows `start..start + count` to `out` as f32 (bytes divided
    /// by `u8_divisor`), reading them in one call into `buffer`.
    fn read_run(
        &self,
        start: usize,
        count: usize,
        u8_divisor: f32,
        buffer: &mut Vec<u8>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let err = |reason: String| DataError::Array {
            path: self.path.clone(),
            format: "npy",
            reason,
        };
        let end = start
            .checked_add(count)
            .filter(|&e| e <= self.rows)
            .ok_or_else(|| err(format!("rows {start}..+{count} past {} rows", self.rows)))?;
        let bytes = count
            .checked_mul(self.row_bytes)
            .ok_or_else(|| err("read size overflows".into()))?;
        let offset = start
            .checked_mul(self.row_bytes)
            .and_then(|o| o.checked_add(self.header.data_offset))
            .and_then(|o| u64::try_from(o).ok())
            .ok_or_else(|| err(format!("offset of row {start} overflows")))?;
        debug_assert!(end <= self.rows);
        match &self.rows_from {
            Rows::Mapped(map) => {
                let at = usize::try_from(offset)
                    .map_err(|_| err(format!("offset of row {start} overflows")))?;
                let slice = at
                    .checked_add(bytes)
                    .and_then(|stop| map.get(at..stop))
                    .ok_or_else(|| {
                        err(format!("rows {start}..+{count} past the end of the map"))
                    })?;
                self.header.dtype.extend_f32(slice, u8_divisor, out);
            }
            Rows::Read(file) => {
                buffer.clear();
                buffer.resize(bytes, 0);
                read_exact_at(file, buffer, offset).map_err(|source| DataError::Io {
                    path: self.path.clone(),
                    source,
                })?;
                self.header.dtype.extend_f32(buffer, u8_divisor, out);
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// The features of a data set kept on disk: one or more NPY files of equal
/// row shape, concatenated along the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskFeatures {
    parts: Vec<DiskArray>,
    /// The first row of each part; ends with the total.
    starts: Vec<usize>,
    /// `[rows, ...]` of the concatenation.
    shape: Vec<usize>,
    u8_divisor: f32,
}

impl DiskFeatures {
    /// The concatenation of `parts` along the rows; bytes (`uint8` files)
    /// are divided by `u8_divisor` (255 scales them to `[0, 1]`, 1 keeps
    /// them). Fails when the row shapes differ or the row count overflows.
    pub fn new(parts: Vec<DiskArray>, u8_divisor: f32) -> Result<DiskFeatures> {
        let first = parts
            .first()
            .ok_or_else(|| DataError::invalid("features", "no file"))?;
        let row_shape = first.shape()[1..].to_vec();
        let mut starts = vec![0usize];
        for part in &parts {
            if part.shape()[1..] != row_shape[..] {
                return Err(DataError::invalid(
                    format!("features {}", part.path().display()),
                    format!(
                        "rows of shape {:?} differ from {:?} in {}",
                        &part.shape()[1..],
                        row_shape,
                        first.path().display()
                    ),
                ));
            }
            let total = starts
                .last()
                .expect("starts is never empty")
                .checked_add(part.rows())
                .ok_or_else(|| DataError::invalid("features", "row count overflows"))?;
            starts.push(total);
        }
        let mut shape = vec![*starts.last().expect("starts is never empty")];
        shape.extend(row_shape);
        shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                DataError::invalid("features", format!("shape {shape:?} is too large"))
            })?;
        Ok(DiskFeatures {
            parts,
            starts,
            shape,
            u8_divisor,
        })
    }

    /// `[rows, ...]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The files, in row order.
    pub fn parts(&self) -> &[DiskArray] {
        &self.parts
    }

    /// Rows `indices` (global, in that order) as an f32 tensor
    /// `[indices.len(), ...]`. Consecutive rows of one file are read in one
    /// call.
    pub fn gather_rows(&self, indices: &[usize]) -> Result<Tensor> {
        let total = self.shape[0];
        let per_row = self.shape[1..].iter().product::<usize>();
        let mut out = Vec::with_capacity(indices.len().saturating_mul(per_row));
        let mut buffer = Vec::new();
        let mut i = 0;
        while i < indices.len() {
            let row = indices[i];
            if row >= total {
                return Err(mtl_core::CoreError::Index {
                    op: "DiskFeatures::gather_rows",
                    index: row,
                    len: total,
                }
                .into());
            }
            let part = self.starts.partition_point(|&s| s <= row) - 1;
            let end = self.starts[part + 1];
            let mut run = 1;
            while i + run < indices.len() && indices[i + run] == row + run && row + run < end {
                run += 1;
            }
            self.parts[part].read_run(
                row - self.starts[part],
                run,
                self.u8_divisor,
                &mut buffer,
                &mut out,
            )?;
            i += run;
        }
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(&self.shape[1..]);
        Ok(Tensor::from_vec(out, &shape)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::{Array, ArrayData};

    #[test]
    fn rows_come_back_from_several_files_in_any_order() {
        let dir = std::env::temp_dir().join(format!("mtl-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.npy");
        let b = dir.join("b.npy");
        let first: Vec<u8> = (0..12).collect();
        npy::write(
            &a,
            &Array::new(vec![3, 2, 2], ArrayData::U8(first)).unwrap(),
        )
        .unwrap();
        let second: Vec<f32> = (12..20).map(|v| v as f32).collect();
        npy::write(
            &b,
            &Array::new(vec![2, 2, 2], ArrayData::F32(second)).unwrap(),
        )
        .unwrap();
        let want: Vec<f32> = [
            16, 17, 18, 19, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3,
        ]
        .iter()
        .map(|&v| v as f32)
        .collect();
        for map in [true, false] {
            let parts = vec![
                DiskArray::open_with(&a, map).unwrap(),
                DiskArray::open_with(&b, map).unwrap(),
            ];
            assert!(parts.iter().all(|p| p.is_mapped() == map));
            let f = DiskFeatures::new(parts, 1.0).unwrap();
            assert_eq!(f.shape(), &[5, 2, 2]);
            let t = f.gather_rows(&[4, 1, 2, 3, 0]).unwrap();
            assert_eq!(t.shape(), &[5, 2, 2]);
            assert_eq!(t.data(), &want[..]);
            assert!(f.gather_rows(&[5]).is_err());
        }
        // A file cut short is refused when opened.
        let bytes = std::fs::read(&b).unwrap();
        std::fs::write(&b, &bytes[..bytes.len() - 1]).unwrap();
        let e = DiskArray::open(&b).unwrap_err().to_string();
        assert!(e.contains("does not match shape"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        /// Mapped and read rows are the same bytes, for any rows in any
        /// order, of every element type.
        #[test]
        fn mapped_and_read_rows_agree(
            rows in proptest::collection::vec(0usize..40, 0..60),
            dtype in 0u8..3,
        ) {
            let dir = std::env::temp_dir()
                .join(format!("mtl-disk-map-{}-{dtype}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("x.npy");
            let data = match dtype {
                0 => ArrayData::F32((0..120).map(|v| v as f32 * 0.37 - 9.0).collect()),
                1 => ArrayData::F64((0..120).map(|v| v as f64 / 7.0).collect()),
                _ => ArrayData::U8((0..120).map(|v| v as u8).collect()),
            };
            npy::write(&path, &Array::new(vec![40, 3], data).unwrap()).unwrap();
            let gather = |map: bool| {
                let part = DiskArray::open_with(&path, map).unwrap();
                DiskFeatures::new(vec![part], 255.0).unwrap().gather_rows(&rows).unwrap()
            };
            let (mapped, read) = (gather(true), gather(false));
            proptest::prop_assert_eq!(mapped.shape(), read.shape());
            proptest::prop_assert!(mapped.data().iter().zip(read.data()).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
