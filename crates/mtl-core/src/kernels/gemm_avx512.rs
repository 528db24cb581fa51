//! The matrix product's register tile on AVX-512: 14 × 32 (28 accumulators
//! of 16 lanes), B's panels prefetched into L1 a few terms ahead, and the
//! packing of transposed operands by 16 × 16 register transposes. The
//! product around it is `gemm_packed.rs`'s.

use std::arch::x86_64::*;

use super::gemm_packed::{copy_padded, Strides, Tile, KC};
use super::lanes;

/// Rows of the register tile.
const MR: usize = 14;
/// Columns of the register tile (two 16-lane vectors).
const NR: usize = 32;
/// Terms ahead of the tile's current one whose row of B's panel is
/// prefetched into L1.
const PREFETCH: usize = 16;

/// The AVX-512 tile (the CPU must have AVX-512F).
pub(super) struct Avx512;

// SAFETY: each method calls AVX-512F code, which `Tile`'s contract allows
// only where the CPU has it; the packing asserts its bounds.
unsafe impl Tile for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;
    /// 512 columns: `KC × NC` floats (512 KiB) stay in a 2 MiB L2.
    const NC: usize = 512;
    /// 1036 rows of stripes (about 1 MiB).
    const MC: usize = 74 * MR;

    /// Packs rows `i0..i0 + mr`, terms `p0..p0 + kc` of `op(A)` as `kc` groups of
    /// `MR` floats (term-major), so the tile reads one group per term.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_a(
        a: &[f32],
        s: Strides,
        i0: usize,
        mr: usize,
        p0: usize,
        kc: usize,
        pa: &mut [f32],
    ) {
        if s.row == 1 {
            // Transposed: the rows of a term are contiguous in a, one masked
            // vector each (a call to copy so few floats costs more than the copy).
            assert!(
                (p0 + kc - 1) * s.col + i0 + mr <= a.len() && kc * MR <= pa.len(),
                "pack_a within bounds"
            );
            let keep = lanes(mr);
            for p in 0..kc {
                // SAFETY: the mr floats of term p0 + p lie within `a` and its
                // group within `pa` (asserted above); masked-off lanes are
                // neither read nor written.
                let group = _mm512_maskz_loadu_ps(keep, a.as_ptr().add((p0 + p) * s.col + i0));
                _mm512_mask_storeu_ps(pa.as_mut_ptr().add(p * MR), keep, group);
            }
        } else {
            // Each row's terms are contiguous: transpose them into the groups.
            let last = (i0 + mr - 1) * s.row + p0 + kc;
            assert!(
                last <= a.len() && kc * MR <= pa.len(),
                "pack_a within bounds"
            );
            // SAFETY: rows i0..i0 + mr hold terms p0..p0 + kc within `a`, and
            // the kc groups of MR floats lie within `pa` (both asserted above).
            transpose_into(
                a.as_ptr().add(i0 * s.row + p0),
                s.row,
                mr,
                kc,
                pa.as_mut_ptr(),
                MR,
                lanes(mr),
            );
        }
    }

    /// Packs terms `p0..p0 + kc`, columns `j0..j0 + nc` of `op(B)` as panels of
    /// `KC × NR` floats, each `kc` rows of `NR` columns (zeros past `nc`).
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_b(
        b: &[f32],
        s: Strides,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        pb: &mut [f32],
    ) {
        for (q, panel) in pb
            .chunks_exact_mut(KC * NR)
            .take(nc.div_ceil(NR))
            .enumerate()
        {
            let jq = j0 + q * NR;
            let width = NR.min(j0 + nc - jq);
            if s.col == 1 {
                for (p, row) in panel.chunks_exact_mut(NR).take(kc).enumerate() {
                    let start = (p0 + p) * s.row + jq;
                    copy_padded::<NR>(row, &b[start..start + width]);
                }
            } else {
                // Transposed: each column of op(B) is contiguous in b; 16
                // columns at a time are transposed into the panel's rows.
                let last = (jq + width - 1) * s.col + p0 + kc;
                assert!(
                    last <= b.len() && kc * NR <= panel.len(),
                    "pack_b within bounds"
                );
                for half in 0..NR / 16 {
                    let rows = width.saturating_sub(half * 16).min(16);
                    // SAFETY: columns jq + 16 half.. + rows hold terms p0..p0 + kc
                    // within `b` (asserted above, and not read when rows = 0);
                    // the panel holds kc rows of NR floats.
                    transpose_into(
                        b.as_ptr()
                            .add((jq + half * 16).min(jq + width - 1) * s.col + p0),
                        s.col,
                        rows,
                        kc,
                        panel.as_mut_ptr().add(half * 16),
                        NR,
                        lanes(16),
                    );
                }
            }
        }
    }

    /// One register tile of `mr` rows (at most `MR`) and `width` columns (at
    /// most `NR`): dispatches to the tile with `mr` fixed at compile time.
    #[target_feature(enable = "avx512f")]
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
        rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);
    }
}

/// Writes `dst[q * ld_dst + r] = src[r * ld_src + q]` for `q < len` and the
/// lanes `r` of `keep` (at most 16), with zeros for the lanes `r >= rows`:
/// a transpose of `rows` contiguous source runs of `len` floats, 16 terms at
/// a time in registers (compilers otherwise vectorise this loop as scatter
/// stores, which are slow).
///
/// # Safety
///
/// AVX-512F is present; `src` holds `rows` runs of `len` floats at stride
/// `ld_src`; `dst` holds `len` runs at stride `ld_dst` of the lanes in `keep`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_into(
    src: *const f32,
    ld_src: usize,
    rows: usize,
    len: usize,
    dst: *mut f32,
    ld_dst: usize,
    keep: __mmask16,
) {
    let mut q0 = 0;
    while q0 < len {
        let n = 16.min(len - q0);
        let load = lanes(n);
        // All 16 rows and columns, masked off past `rows` and `n`, so that
        // the loops unroll and the block stays in registers. A lane masked
        // off is neither read nor written, so the addresses past the
        // operands (formed with `wrapping_add`) are never touched.
        let r: [__m512; 16] = std::array::from_fn(|i| {
            let mask = if i < rows { load } else { 0 };
            _mm512_maskz_loadu_ps(mask, src.wrapping_add(i * ld_src + q0))
        });
        let cols = transpose16(r);
        for (q, col) in cols.iter().enumerate() {
            let mask = if q < n { keep } else { 0 };
            _mm512_mask_storeu_ps(dst.wrapping_add((q0 + q) * ld_dst), mask, *col);
        }
        q0 += n;
    }
}

/// The transpose of a 16 × 16 block held as 16 row vectors: element `q` of
/// output `r` is element `r` of input `q`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // Pairs of rows interleaved: per 128-bit lane L, t[2i] = (r2i[4L], r2i+1[4L], r2i[4L+1], r2i+1[4L+1]).
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + c]: rows 4g..4g + 4 of column 4L + c, in lane L.
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = ps(_mm512_unpacklo_pd(pd(t0), pd(t2)));
        u[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(t0), pd(t2)));
        u[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(t1), pd(t3)));
        u[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(t1), pd(t3)));
    }
    // Then whole 128-bit lanes: gather the four row groups of each column.
    let mut v = [_mm512_setzero_ps(); 16];
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        v[c] = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        v[4 + c] = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
        v[8 + c] = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        v[12 + c] = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
    }
    for c in 0..4 {
        out[c] = _mm512_shuffle_f32x4::<0x88>(v[c], v[8 + c]);
        out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(v[c], v[8 + c]);
        out[4 + c] = _mm512_shuffle_f32x4::<0x88>(v[4 + c], v[12 + c]);
        out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(v[4 + c], v[12 + c]);
    }
    out
}

/// `R` rows × `width` columns of C: sums `kc` terms from zero in registers,
/// then stores them (`store`) or adds them to C.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile_rows<const R: usize>(
    kc: usize,
    pa: *const f32,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
    width: usize,
    store: bool,
) {
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(pb.add(p * NR));
        let b1 = _mm512_loadu_ps(pb.add(p * NR + 16));
        // The panel streams from L2 while A's stripe stays in L1; past the
        // panel's end this reaches into the next panel, or past the packing
        // space, where a prefetch reads nothing and cannot fault.
        let ahead = pb.wrapping_add((p + PREFETCH) * NR);
        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16) as *const i8);
        let ap = pa.add(p * MR);
        for r in 0..R {
            let av = _mm512_set1_ps(*ap.add(r));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    let (m0, m1) = (lanes(width), lanes(width.saturating_sub(16)));
    for r in 0..R {
        let row = c.add(r * ldc);
        let row_hi = row.wrapping_add(16);
        if store {
            _mm512_mask_storeu_ps(row, m0, lo[r]);
            _mm512_mask_storeu_ps(row_hi, m1, hi[r]);
        } else {
            let c0 = _mm512_maskz_loadu_ps(m0, row);
            let c1 = _mm512_maskz_loadu_ps(m1, row_hi);
            _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(c0, lo[r]));
            _mm512_mask_storeu_ps(row_hi, m1, _mm512_add_ps(c1, hi[r]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_into;
    use crate::kernels::lanes;

    #[test]
    fn a_transposed_block_writes_its_lanes_and_nothing_else() {
        if !crate::kernels::avx512() {
            eprintln!("no AVX-512 on this CPU: the register transpose is not used");
            return;
        }
        // (source rows, run length, lanes kept): partial and whole blocks of
        // 16, runs spanning several blocks, more lanes kept than rows.
        for (rows, len, kept) in [
            (3, 5, 3),
            (16, 16, 16),
            (14, 37, 14),
            (1, 17, 16),
            (9, 40, 12),
        ] {
            let ld_src = len + 3;
            let src: Vec<f32> = (0..rows * ld_src).map(|i| i as f32 + 0.5).collect();
            let ld_dst = 19;
            let mut dst = vec![-1.0f32; len * ld_dst];
            // SAFETY: avx512f is present; `src` holds `rows` runs of `len`
            // floats at stride `ld_src`, `dst` `len` runs of `ld_dst` ≥ 16.
            unsafe {
                transpose_into(
                    src.as_ptr(),
                    ld_src,
                    rows,
                    len,
                    dst.as_mut_ptr(),
                    ld_dst,
                    lanes(kept),
                );
            }
            for q in 0..len {
                for r in 0..ld_dst {
                    let want = match (r < kept, r < rows) {
                        (true, true) => src[r * ld_src + q],
                        (true, false) => 0.0,
                        (false, _) => -1.0,
                    };
                    assert_eq!(
                        dst[q * ld_dst + r],
                        want,
                        "rows {rows}, len {len}, ({q}, {r})"
                    );
                }
            }
        }
    }
}
