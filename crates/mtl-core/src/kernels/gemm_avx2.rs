//! The matrix product's register tile on AVX2 with FMA (CPUs without
//! AVX-512): 6 × 16 (12 accumulators of 8 lanes, two vectors of B and one
//! broadcast of A: 15 of the 16 registers), B's panels prefetched into L1 a
//! few terms ahead, and the packing of row-major A and of transposed B by
//! 8 × 8 register transposes. The product around it is `gemm_packed.rs`'s.

use std::arch::x86_64::*;

use super::gemm_packed::{copy_padded, Strides, Tile, KC};

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile (two 8-lane vectors, one cache line).
const NR: usize = 16;
/// Terms ahead of the tile's current one whose row of B's panel is
/// prefetched into L1.
const PREFETCH: usize = 16;

/// The AVX2 tile (the CPU must have AVX2 and FMA).
pub(super) struct Avx2;

// SAFETY: each method calls AVX2 and FMA code, which `Tile`'s contract
// allows only where the CPU has them; the packing asserts its bounds.
unsafe impl Tile for Avx2 {
    const MR: usize = MR;
    const NR: usize = NR;
    /// 256 columns: `KC × NC` floats (256 KiB) stay in a 512 KiB L2 beside
    /// A's stripes.
    const NC: usize = 256;
    /// 1008 rows of stripes (about 1 MiB, from L2 and L3).
    const MC: usize = 168 * MR;

    /// Packs rows `i0..i0 + mr` (`mr ≤ MR`), terms `p0..p0 + kc` of `op(A)` as
    /// `kc` groups of `MR` floats (term-major, zeros past `mr`).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_a(
        a: &[f32],
        s: Strides,
        i0: usize,
        mr: usize,
        p0: usize,
        kc: usize,
        pa: &mut [f32],
    ) {
        assert!(mr <= MR && kc * MR <= pa.len(), "pack_a within bounds");
        let last = (i0 + mr - 1) * s.row + (p0 + kc - 1) * s.col;
        assert!(last < a.len(), "pack_a within bounds");
        if s.row == 1 {
            // Transposed: the rows of a term are contiguous in a.
            for (p, group) in pa.chunks_exact_mut(MR).take(kc).enumerate() {
                let start = (p0 + p) * s.col + i0;
                copy_padded::<MR>(group, &a[start..start + mr]);
            }
            return;
        }
        // Each row's terms are contiguous: eight terms of every row at a time
        // are transposed in registers into eight groups.
        let src = a.as_ptr().add(i0 * s.row + p0);
        let dst = pa.as_mut_ptr();
        let mut q = 0;
        while q + 8 <= kc {
            // SAFETY: rows i0..i0 + mr hold terms p0 + q..p0 + q + 8 (asserted
            // above).
            let groups = load_transposed(src.add(q), s.row, mr);
            for (t, group) in groups.iter().enumerate() {
                // The group's first four rows, then its last two.
                let at = dst.add((q + t) * MR);
                _mm_storeu_ps(at, _mm256_castps256_ps128(*group));
                let high = _mm256_extractf128_ps::<1>(*group);
                _mm_storel_epi64(at.add(4) as *mut __m128i, _mm_castps_si128(high));
            }
            q += 8;
        }
        for p in q..kc {
            for r in 0..MR {
                *dst.add(p * MR + r) = if r < mr { *src.add(r * s.row + p) } else { 0.0 };
            }
        }
    }

    /// Packs terms `p0..p0 + kc`, columns `j0..j0 + nc` of `op(B)` as panels of
    /// `KC × NR` floats, each `kc` rows of `NR` columns (zeros past `nc`).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_b(
        b: &[f32],
        s: Strides,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        pb: &mut [f32],
    ) {
        assert!(
            (p0 + kc - 1) * s.row + (j0 + nc - 1) * s.col < b.len(),
            "pack_b within bounds"
        );
        for (q, panel) in pb
            .chunks_exact_mut(KC * NR)
            .take(nc.div_ceil(NR))
            .enumerate()
        {
            let jq = j0 + q * NR;
            let width = NR.min(j0 + nc - jq);
            assert!(kc * NR <= panel.len(), "pack_b within bounds");
            if s.col == 1 {
                for (p, row) in panel.chunks_exact_mut(NR).take(kc).enumerate() {
                    let start = (p0 + p) * s.row + jq;
                    copy_padded::<NR>(row, &b[start..start + width]);
                }
                continue;
            }
            // Transposed: each column of op(B) is contiguous in b; eight terms
            // of eight columns at a time are transposed into the panel's rows.
            let dst = panel.as_mut_ptr();
            for half in 0..NR / 8 {
                let cols = width.saturating_sub(half * 8).min(8);
                let src = b.as_ptr().wrapping_add((jq + half * 8) * s.col + p0);
                let mut p = 0;
                while p + 8 <= kc {
                    // SAFETY: columns jq + 8 half.. + cols hold terms p0 + p..+ 8
                    // (asserted above).
                    let rows = load_transposed(src.wrapping_add(p), s.col, cols);
                    for (t, row) in rows.iter().enumerate() {
                        _mm256_storeu_ps(dst.add((p + t) * NR + half * 8), *row);
                    }
                    p += 8;
                }
                for p in p..kc {
                    for i in 0..8 {
                        *dst.add(p * NR + half * 8 + i) = if i < cols {
                            *src.add(i * s.col + p)
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }

    /// One register tile of `mr` rows (at most `MR`) and `width` columns (at
    /// most `NR`): dispatches to the tile with `mr` fixed at compile time.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(
        mr: usize,
        kc: usize,
        pa: &[f32],
        pb: &[f32],
        c: *mut f32,
        ldc: usize,
        width: usize,
        store: bool,
    ) {
        macro_rules! rows {
            ($($r:literal)*) => {
                match mr {
                    $($r => tile_rows::<$r>(kc, pa.as_ptr(), pb.as_ptr(), c, ldc, width, store),)*
                    _ => unreachable!("tile of {mr} rows"),
                }
            };
        }
        rows!(1 2 3 4 5 6);
    }
}

/// Eight floats from each of `runs` (at most 8) runs `ld` floats apart from
/// `src`, zeros in place of the runs past `runs`, transposed: output `t`
/// holds float `t` of every run.
///
/// # Safety
/// AVX2 is present and the `runs` runs of eight floats lie within one
/// allocation (the others are not read).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_transposed(src: *const f32, ld: usize, runs: usize) -> [__m256; 8] {
    transpose8(std::array::from_fn(|i| {
        if i < runs {
            _mm256_loadu_ps(src.wrapping_add(i * ld))
        } else {
            _mm256_setzero_ps()
        }
    }))
}

/// The transpose of an 8 × 8 block held as 8 row vectors: element `q` of
/// output `r` is element `r` of input `q`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // Pairs of rows interleaved within each 128-bit half.
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(x, y)
        } else {
            _mm256_unpackhi_ps(x, y)
        }
    });
    // Four rows of one column per 128-bit half.
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xee>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xee>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xee>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xee>(t[5], t[7]),
    ];
    // Then the halves: rows 0-3 and 4-7 of each column side by side.
    std::array::from_fn(|c| {
        let (lo, hi) = (u[c % 4], u[4 + c % 4]);
        if c < 4 {
            _mm256_permute2f128_ps::<0x20>(lo, hi)
        } else {
            _mm256_permute2f128_ps::<0x31>(lo, hi)
        }
    })
}

/// The mask of the first `n` (at most 8) lanes of an 8-lane vector.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lanes8(n: usize) -> __m256i {
    let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), index)
}

/// `R` rows × `width` columns of C: sums `kc` terms from zero in registers,
/// then stores them (`store`) or adds them to C.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_rows<const R: usize>(
    kc: usize,
    pa: *const f32,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
    width: usize,
    store: bool,
) {
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for p in 0..kc {
        let b0 = _mm256_loadu_ps(pb.add(p * NR));
        let b1 = _mm256_loadu_ps(pb.add(p * NR + 8));
        // Past the panel's end this reaches into the next panel, or past
        // the packing space, where a prefetch reads nothing and cannot fault.
        let ahead = pb.wrapping_add((p + PREFETCH) * NR);
        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
        let ap = pa.add(p * MR);
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*ap.add(r));
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
    if width == NR {
        for r in 0..R {
            let row = c.add(r * ldc);
            if store {
                _mm256_storeu_ps(row, lo[r]);
                _mm256_storeu_ps(row.add(8), hi[r]);
            } else {
                _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), lo[r]));
                let row_hi = row.add(8);
                _mm256_storeu_ps(row_hi, _mm256_add_ps(_mm256_loadu_ps(row_hi), hi[r]));
            }
        }
        return;
    }
    // A lane masked off is neither read nor written, so the addresses past
    // C's row (formed with `wrapping_add`) are never touched.
    let (m0, m1) = (lanes8(width), lanes8(width.saturating_sub(8)));
    for r in 0..R {
        let row = c.add(r * ldc);
        let row_hi = row.wrapping_add(8);
        if store {
            _mm256_maskstore_ps(row, m0, lo[r]);
            _mm256_maskstore_ps(row_hi, m1, hi[r]);
        } else {
            let c0 = _mm256_maskload_ps(row, m0);
            let c1 = _mm256_maskload_ps(row_hi, m1);
            _mm256_maskstore_ps(row, m0, _mm256_add_ps(c0, lo[r]));
            _mm256_maskstore_ps(row_hi, m1, _mm256_add_ps(c1, hi[r]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose8;
    use std::arch::x86_64::*;

    #[test]
    fn the_register_transpose_swaps_rows_and_columns() {
        if !crate::kernels::avx2() {
            eprintln!("no AVX2 with FMA on this CPU: the register transpose is not used");
            return;
        }
        let src: Vec<f32> = (0..64).map(|i| i as f32 + 0.25).collect();
        let mut out = [0.0f32; 64];
        // SAFETY: AVX2 is present; `src` and `out` hold 8 rows of 8 floats.
        unsafe {
            let rows: [__m256; 8] =
                std::array::from_fn(|i| _mm256_loadu_ps(src.as_ptr().add(8 * i)));
            for (i, row) in transpose8(rows).iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *row);
            }
        }
        for r in 0..8 {
            for q in 0..8 {
                assert_eq!(out[r * 8 + q], src[q * 8 + r], "({r}, {q})");
            }
        }
    }
}
