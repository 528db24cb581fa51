//! Direct convolution (stride 1, no padding) with AVX-512 or AVX2: the
//! forward and backward passes of a convolution with few channels without
//! building the patch matrix.
//!
//! With few input channels the patch matrix of `im2col` has few rows
//! (`C·kh·kw`, 25 for a 5 × 5 kernel on one channel), so the matrix product
//! spends more time packing its operands than multiplying, and the patch
//! matrix itself is `kh·kw` times the image. The direct kernel instead keeps
//! a block of outputs (up to 6 output channels × 64 positions with 16-lane
//! vectors, × 16 positions with 8-lane ones) in registers and runs over the
//! kernel taps, each tap one broadcast weight times one run of the input
//! plane. The output channels are cut into the fewest blocks of at most 6,
//! of near-equal size (20 channels as 4 × 5), so that each run of the input,
//! loaded once per tap, feeds as many multiply-adds as the registers allow.
//!
//! Positions are taken on the input's grid: output `(y, x)` sits at `y·W + x`
//! and reads the input at `y·W + x + ky·W + kx`, so every tap is one
//! contiguous run of the input; the `kw − 1` positions per row past the
//! output's width are computed and dropped.
//!
//! Each output is summed from zero by fused multiply-adds in `(c, ky, kx)`
//! order, the order in which the matrix product sums the patch matrix's rows
//! (it sums the inner dimension in one run of fused multiply-adds up to 256
//! terms), so both paths, and both vector widths, give the same bits for
//! patches of at most 256 values; the bias is added last, as there.
//!
//! The kernels are written once over [`Simd`](super::simd::Simd) and
//! compiled for each width; the widest the CPU has runs.

use super::ConvGeometry;

/// Output channels per register block, at most.
const BLOCK_O: usize = 6;

/// The vector width a direct kernel runs with, and its register blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    /// 16 lanes (AVX-512F): blocks of 4 vectors (64 positions) forward,
    /// 5 channels × 5 taps for the weight gradient.
    Zmm,
    /// 8 lanes (AVX2 and FMA): blocks of 2 vectors (16 positions) forward;
    /// 2 channels × 5 taps for the weight gradient, in two passes over the
    /// halves of 16 lanes so that it sums as with AVX-512.
    Ymm,
}

impl Width {
    /// The widths this CPU runs, widest first.
    fn available() -> impl Iterator<Item = Width> {
        [(Width::Zmm, super::avx512()), (Width::Ymm, super::avx2())]
            .into_iter()
            .filter_map(|(width, present)| present.then_some(width))
    }
}

/// The width the direct kernels run with for `g`: the widest the CPU has,
/// where `g` has stride 1 and no padding.
fn direct_width(g: &ConvGeometry) -> Option<Width> {
    if g.stride == 1 && g.padding == 0 {
        Width::available().next()
    } else {
        None
    }
}

/// Whether [`conv2d_direct`] runs for geometry `g` on this CPU: stride 1, no
/// padding, and AVX-512F or AVX2 with FMA.
pub fn conv2d_direct_applies(g: &ConvGeometry) -> bool {
    direct_width(g).is_some()
}

/// The width the public kernels run with for `g`, after checking that they
/// apply.
fn width_for(g: &ConvGeometry) -> Width {
    direct_width(g).expect("direct convolution: unsupported")
}

/// Positions on the input grid that cover every output (`(OH−1)·W + OW`).
fn grid_len(g: &ConvGeometry) -> usize {
    (g.out_h() - 1) * g.width + g.out_w()
}

/// One image's convolution `out [O, OH, OW] = w [O, C·kh·kw] ⋆ img [C, H, W]
/// (+ bias [O])` by the direct kernel. Each output is stored from the
/// registers with its bias added (`sum + b`, as the matrix product's path
/// adds it after the sum); the grid's columns past `OW` are not stored.
///
/// # Panics
/// When [`conv2d_direct_applies`] is false for `g`, or a slice is shorter
/// than the geometry says: callers check first.
pub fn conv2d_direct(
    img: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    o: usize,
    out: &mut [f32],
) {
    forward(width_for(g), img, w, bias, g, o, out);
}

/// [`conv2d_direct`] with the vector width given.
fn forward(
    width: Width,
    img: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    o: usize,
    out: &mut [f32],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(img.len() >= g.channels * g.height * g.width);
    assert!(w.len() >= o * g.patch_len());
    assert!(out.len() >= o * oh * ow);
    assert!(bias.is_none_or(|b| b.len() >= o));
    let job = GridJob {
        img,
        w,
        g: *g,
        o,
        len: grid_len(g),
        keep: ow,
        live: None,
        bias,
        out,
    };
    // SAFETY: the CPU runs `width` (every caller takes it from `Width`); the
    // grid's `len` positions cover `OH` rows of `W` of which `OW` are kept,
    // `O` planes of `OH·OW` in `out`, and the asserts bound every index read
    // or written.
    unsafe { job.run(width) };
}

/// The weight gradient of `count` images for the direct kernel's
/// geometries: `dw [O, C·kh·kw] = Σ_n Σ_(y, x) gy_n[o, y, x] · img_n[c, y + ky, x + kx]`
/// (written, not added), for images `imgs` `[count, C, H, W]` and output
/// gradients `gys` `[count, O, OH, OW]`.
///
/// Each weight's sum runs over the images and positions in 16 interleaved
/// partial sums (the lanes of a 16-lane vector, or with AVX2 two passes of
/// 8 lanes over alternate runs of 8 positions) that are added by a fixed
/// tree at the end, so the result depends on `count` and the geometry
/// only: the same bits with AVX-512 and with AVX2.
///
/// # Panics
/// When [`conv2d_direct_applies`] is false for `g`, or a slice is shorter
/// than the geometry says.
pub fn conv2d_direct_weight_grad(
    imgs: &[f32],
    gys: &[f32],
    g: &ConvGeometry,
    o: usize,
    count: usize,
    dw: &mut [f32],
) {
    weight_grad(width_for(g), imgs, gys, g, o, count, dw);
}

/// [`conv2d_direct_weight_grad`] with the vector width given.
fn weight_grad(
    width: Width,
    imgs: &[f32],
    gys: &[f32],
    g: &ConvGeometry,
    o: usize,
    count: usize,
    dw: &mut [f32],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let len = grid_len(g);
    assert!(imgs.len() >= count * g.channels * g.height * g.width);
    assert!(gys.len() >= count * o * oh * ow);
    assert!(dw.len() >= o * g.patch_len());
    // The output gradients on the input grid, zero past each row's width,
    // each grid starting on a cache line (`lead` floats apart, a multiple of
    // 16) so that the kernel's loads of them do not straddle two lines.
    let lead = len.next_multiple_of(16);
    let mut space = vec![0.0f32; count * o * lead + 15];
    let skip = space.as_ptr().align_offset(64).min(15);
    let grids = &mut space[skip..skip + count * o * lead];
    for (grid, plane) in grids
        .chunks_exact_mut(lead)
        .zip(gys[..count * o * oh * ow].chunks_exact(oh * ow))
    {
        for (y, row) in plane.chunks_exact(ow).enumerate() {
            grid[y * g.width..y * g.width + ow].copy_from_slice(row);
        }
    }
    let plane = g.height * g.width;
    let taps: Vec<usize> = (0..g.channels)
        .flat_map(|c| {
            (0..g.kernel_h)
                .flat_map(move |ky| (0..g.kernel_w).map(move |kx| c * plane + ky * g.width + kx))
        })
        .collect();
    let job = GradJob {
        imgs,
        grids,
        taps: &taps,
        g: *g,
        o,
        count,
        len,
        lead,
        dw,
    };
    // SAFETY: the CPU runs `width`; `taps` and the asserts bound every index
    // the kernel reads or writes.
    unsafe { job.run(width) };
}

/// The input gradient of `count` images for the direct kernel's geometries:
/// `dx [count, C, H, W]` (written, not added) from the output gradients
/// `gys` `[count, O, OH, OW]` and the kernel `w` `[O, C·kh·kw]`.
///
/// It is the direct convolution of the output gradient, zero-padded by
/// `kh − 1` rows and `kw − 1` columns, with the kernel flipped and its two
/// channel axes swapped; each input gradient is one run of fused
/// multiply-adds over `(o, ky, kx)`. A block of positions skips the kernel
/// rows whose taps read only the padding rows above and below the output
/// gradient (for the default job's second convolution a quarter of the
/// terms); the other zero terms of the padding are included. Adding
/// `w · 0` leaves a sum as it is, so the result is that of the run over
/// every term.
///
/// The output gradient is laid on the input's width `W`, each row followed
/// by `W − OW = kw − 1` zeros, so that the zeros past one row serve as the
/// padding before the next: input position `(y, x)` is then position
/// `y·W + x` of the direct kernel's grid, and every position of the grid is
/// an input gradient (no column is computed and dropped).
///
/// # Panics
/// When [`conv2d_direct_applies`] is false for `g`, or a slice is shorter
/// than the geometry says.
pub fn conv2d_direct_input_grad(
    gys: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    o: usize,
    count: usize,
    dx: &mut [f32],
) {
    input_grad(width_for(g), gys, w, g, o, count, dx);
}

/// [`conv2d_direct_input_grad`] with the vector width given.
fn input_grad(
    width: Width,
    gys: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    o: usize,
    count: usize,
    dx: &mut [f32],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let plane = g.height * g.width;
    let in_len = g.channels * plane;
    assert!(gys.len() >= count * o * oh * ow);
    assert!(w.len() >= o * g.patch_len());
    assert!(dx.len() >= count * in_len);
    // Each output-gradient plane on the input's width, after
    // `(kh − 1)·W + kw − 1` zeros (the reach of the flipped kernel) and
    // before `kh` rows of zeros (the reach past the last row).
    let padded = ConvGeometry {
        channels: o,
        height: oh + 2 * kh - 1,
        width: g.width,
        kernel_h: kh,
        kernel_w: kw,
        stride: 1,
        padding: 0,
    };
    let front = (kh - 1) * g.width + kw - 1;
    let padded_plane = padded.height * padded.width;
    // flipped[c, k, ky, kx] = w[k, c, kh − 1 − ky, kw − 1 − kx]
    let taps = kh * kw;
    let mut flipped = vec![0.0f32; g.channels * o * taps];
    for k in 0..o {
        for c in 0..g.channels {
            let src = &w[(k * g.channels + c) * taps..][..taps];
            let dst = &mut flipped[(c * o + k) * taps..][..taps];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    let mut gp = vec![0.0f32; o * padded_plane];
    for (gy, dxi) in gys
        .chunks_exact(o * oh * ow)
        .zip(dx.chunks_exact_mut(in_len))
        .take(count)
    {
        for (pp, src) in gp
            .chunks_exact_mut(padded_plane)
            .zip(gy.chunks_exact(oh * ow))
        {
            for (y, row) in src.chunks_exact(ow).enumerate() {
                let at = front + y * g.width;
                pp[at..at + ow].copy_from_slice(row);
            }
        }
        // The kernel reads plane k up to `k·padded_plane + front + H·W − 1`
        // (its last position plus the flipped kernel's reach), within the
        // plane since `front + H·W < (OH + 2·kh − 1)·W`, and writes the
        // `C·H·W` values of `dxi` (every column of each row kept). The
        // output gradient lies in rows `kh − 1 .. kh − 1 + OH` of each
        // padded plane: the job's `live` rows.
        let job = GridJob {
            img: &gp,
            w: &flipped,
            g: padded,
            o: g.channels,
            len: plane,
            keep: g.width,
            live: Some(kh - 1..kh - 1 + oh),
            bias: None,
            out: dxi,
        };
        // SAFETY: the CPU runs `width`; `gp` holds `o` planes of `padded`,
        // `flipped` holds `C` rows of `o·kh·kw` weights, and `dxi` holds `C`
        // planes of `H·W`, which bound every index read or written (see
        // above).
        unsafe { job.run(width) };
    }
}

/// One convolution on an input grid: positions `q < len` of `W` per row, of
/// which the first `keep` of each row are stored; output `k` at grid
/// position `q` goes to `out[k·P + (q / W)·keep + q % W]` (plus `bias[k]`),
/// with `P = ⌈len / W⌉·keep` the values of a plane.
///
/// Where `live` is given, the rows of the input outside it (in rows of `W`)
/// are zeros: a block of positions skips the taps whose rows reach none of
/// `live` from any of its positions (terms `w · 0`, which leave a sum
/// unchanged).
struct GridJob<'a> {
    img: &'a [f32],
    w: &'a [f32],
    g: ConvGeometry,
    o: usize,
    len: usize,
    keep: usize,
    live: Option<std::ops::Range<usize>>,
    bias: Option<&'a [f32]>,
    out: &'a mut [f32],
}

impl GridJob<'_> {
    /// Runs the job with `width`'s kernel.
    ///
    /// # Safety
    /// The CPU runs `width`, and the job's slices hold every index its
    /// geometry reaches.
    unsafe fn run(self, width: Width) {
        #[cfg(target_arch = "x86_64")]
        match width {
            Width::Zmm => x86::grid_zmm(self),
            Width::Ymm => x86::grid_ymm(self),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no direct kernel for {width:?} on this architecture");
    }
}

/// One weight gradient:
/// `dw[o, t] = Σ_n Σ_q grids[n, o, q] · imgs[n, taps[t] + q]` over `q < len`,
/// with the grids `lead` floats apart.
struct GradJob<'a> {
    imgs: &'a [f32],
    grids: &'a [f32],
    taps: &'a [usize],
    g: ConvGeometry,
    o: usize,
    count: usize,
    len: usize,
    lead: usize,
    dw: &'a mut [f32],
}

impl GradJob<'_> {
    /// Runs the job with `width`'s kernel.
    ///
    /// # Safety
    /// The CPU runs `width`, and the job's slices hold every index its
    /// geometry reaches.
    unsafe fn run(self, width: Width) {
        #[cfg(target_arch = "x86_64")]
        match width {
            Width::Zmm => x86::weight_grad_zmm(self),
            Width::Ymm => x86::weight_grad_ymm(self),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no direct kernel for {width:?} on this architecture");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{GradJob, GridJob, BLOCK_O};
    use crate::kernels::share;
    use crate::kernels::simd::{Simd, Ymm, Zmm};

    /// [`grid`] with 16 lanes, 4 vectors a block.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn grid_zmm(job: GridJob<'_>) {
        grid::<Zmm, 4>(job)
    }

    /// [`grid`] with 8 lanes, 2 vectors a block.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grid_ymm(job: GridJob<'_>) {
        grid::<Ymm, 2>(job)
    }

    /// [`weight_grad`] with 16 lanes, blocks of 5 channels × 5 taps.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_grad_zmm(job: GradJob<'_>) {
        weight_grad::<Zmm, 5, 5, 1>(job)
    }

    /// [`weight_grad`] with 8 lanes in two passes (the two halves of 16
    /// interleaved partial sums), blocks of 2 channels × 5 taps (the fastest
    /// of the shapes that fit the 16 registers, measured on the default
    /// job's two convolutions).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_grad_ymm(job: GradJob<'_>) {
        weight_grad::<Ymm, 2, 5, 2>(job)
    }

    /// The convolution of a [`GridJob`], in register blocks of at most
    /// `BLOCK_O` channels × `V` vectors of positions.
    #[inline(always)]
    unsafe fn grid<S: Simd, const V: usize>(job: GridJob<'_>) {
        let GridJob {
            img,
            w,
            g,
            o,
            len,
            keep,
            live,
            bias,
            out,
        } = job;
        let to = Stores {
            out: out.as_mut_ptr(),
            plane: len.div_ceil(g.width) * keep,
            width: g.width,
            keep,
            len,
            bias,
        };
        let step = S::LANES * V;
        let blocks = o.div_ceil(BLOCK_O);
        for part in 0..blocks {
            let outs = share(o, blocks, part);
            let at = Block {
                img,
                w,
                g: &g,
                live: live.as_ref(),
                ob: outs.start,
                to: &to,
            };
            macro_rules! each {
                ($ob:literal) => {{
                    let mut q = 0;
                    // Whole blocks load without masks.
                    while q + step <= len {
                        block::<S, $ob, V, true>(&at, q);
                        q += step;
                    }
                    if q < len {
                        block::<S, $ob, V, false>(&at, q);
                    }
                }};
            }
            match outs.len() {
                6 => each!(6),
                5 => each!(5),
                4 => each!(4),
                3 => each!(3),
                2 => each!(2),
                _ => each!(1),
            }
        }
    }

    /// Where [`grid`]'s blocks store their sums.
    struct Stores<'a> {
        out: *mut f32,
        plane: usize,
        width: usize,
        keep: usize,
        len: usize,
        bias: Option<&'a [f32]>,
    }

    /// What a block of [`grid`] reads, and the first of its channels.
    struct Block<'a> {
        img: &'a [f32],
        w: &'a [f32],
        g: &'a super::ConvGeometry,
        live: Option<&'a std::ops::Range<usize>>,
        ob: usize,
        to: &'a Stores<'a>,
    }

    /// The runs of a vector of grid positions that are stored, one per row
    /// the vector touches that keeps any of them: the offset in the plane of
    /// the vector's lane 0 (which may lie before the plane: only the run's
    /// lanes are written), the run's first lane and its number of lanes.
    struct Runs {
        row: usize,
        col: usize,
        lane: usize,
        count: usize,
        width: usize,
        keep: usize,
    }

    impl Runs {
        /// The runs of positions `q0..q0 + lanes`, up to the grid's length.
        #[inline(always)]
        fn new(to: &Stores<'_>, q0: usize, lanes: usize) -> Runs {
            Runs {
                row: q0 / to.width,
                col: q0 % to.width,
                lane: 0,
                count: to.len.saturating_sub(q0).min(lanes),
                width: to.width,
                keep: to.keep,
            }
        }
    }

    impl Iterator for Runs {
        type Item = (isize, usize, usize);

        #[inline(always)]
        fn next(&mut self) -> Option<(isize, usize, usize)> {
            while self.lane < self.count {
                let (lane, col) = (self.lane, self.col);
                let here = (self.width - col).min(self.count - lane);
                let kept = self.keep.saturating_sub(col).min(here);
                let at = (self.row * self.keep + col) as isize - lane as isize;
                self.lane += here;
                self.row += 1;
                self.col = 0;
                if kept > 0 {
                    return Some((at, lane, kept));
                }
            }
            None
        }
    }

    /// Output channels `ob..ob + OB` at positions `q..q + V·LANES` (masked
    /// at the grid's length unless `FULL`), stored as [`GridJob`] says.
    #[inline(always)]
    unsafe fn block<S: Simd, const OB: usize, const V: usize, const FULL: bool>(
        at: &Block<'_>,
        q: usize,
    ) {
        let Block {
            img,
            w,
            g,
            live,
            ob,
            to,
        } = *at;
        let plen = g.patch_len();
        let plane = g.height * g.width;
        let mut mask = [S::first(0); V];
        if !FULL {
            for (v, m) in mask.iter_mut().enumerate() {
                *m = S::first(to.len.saturating_sub(q + S::LANES * v));
            }
        }
        // The kernel rows whose taps reach a live row from one of the
        // block's rows `y0..=y1`.
        let rows = match live {
            None => 0..g.kernel_h,
            Some(live) => {
                let y0 = q / g.width;
                let y1 = ((q + S::LANES * V).min(to.len) - 1) / g.width;
                live.start.saturating_sub(y1)..live.end.saturating_sub(y0).min(g.kernel_h)
            }
        };
        let mut acc = [[S::zero(); V]; OB];
        let wp = w.as_ptr().add(ob * plen);
        let mut tap = 0;
        for c in 0..g.channels {
            for ky in 0..g.kernel_h {
                if !rows.contains(&ky) {
                    tap += g.kernel_w;
                    continue;
                }
                let row = img.as_ptr().add(c * plane + ky * g.width + q);
                for kx in 0..g.kernel_w {
                    let src = row.add(kx);
                    let mut x = [S::zero(); V];
                    for (v, x) in x.iter_mut().enumerate() {
                        // Masked lanes are not read, so a run may end at the
                        // image's last element.
                        *x = S::load_part(FULL, mask[v], src.wrapping_add(S::LANES * v));
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let wv = S::splat(*wp.add(i * plen + tap));
                        for v in 0..V {
                            acc[v] = S::fmadd(wv, x[v], acc[v]);
                        }
                    }
                    tap += 1;
                }
            }
        }
        if let Some(b) = to.bias {
            for (i, acc) in acc.iter_mut().enumerate() {
                let bv = S::splat(b[ob + i]);
                acc.iter_mut().for_each(|a| *a = S::add(*a, bv));
            }
        }
        for v in 0..V {
            for (at, lane, kept) in Runs::new(to, q + S::LANES * v, S::LANES) {
                for (i, acc) in acc.iter().enumerate() {
                    let dst = to.out.add((ob + i) * to.plane).wrapping_offset(at);
                    if lane == 0 && kept == S::LANES {
                        S::store(dst, acc[v]);
                    } else {
                        S::store_masked(dst, S::span(lane, kept), acc[v]);
                    }
                }
            }
        }
    }

    /// The weight gradient of a [`GradJob`], in register blocks of at most
    /// `GO` channels × `GT` taps (each at most 5).
    #[inline(always)]
    unsafe fn weight_grad<S: Simd, const GO: usize, const GT: usize, const SPLIT: usize>(
        job: GradJob<'_>,
    ) {
        let dw = job.dw.as_mut_ptr();
        let (o, ntaps) = (job.o, job.taps.len());
        let (o_blocks, t_blocks) = (o.div_ceil(GO), ntaps.div_ceil(GT));
        for op in 0..o_blocks {
            let outs = share(o, o_blocks, op);
            for tp in 0..t_blocks {
                let ts = share(ntaps, t_blocks, tp);
                macro_rules! grad {
                    ($a:literal, $b:literal) => {
                        grad_block::<S, $a, $b, SPLIT>(&job, outs.start, ts.start, dw)
                    };
                }
                macro_rules! by_taps {
                    ($a:literal) => {
                        match ts.len() {
                            1 => grad!($a, 1),
                            2 => grad!($a, 2),
                            3 => grad!($a, 3),
                            4 => grad!($a, 4),
                            _ => grad!($a, 5),
                        }
                    };
                }
                match outs.len() {
                    1 => by_taps!(1),
                    2 => by_taps!(2),
                    3 => by_taps!(3),
                    4 => by_taps!(4),
                    _ => by_taps!(5),
                }
            }
        }
    }

    /// Adds to `acc[i][j]` the products of the output gradient
    /// `grid[i·lead + q..]` and the input `img[taps[j] + q..]`, one vector of
    /// positions: whole (`WHOLE`) or the lanes of `m`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn accumulate<S: Simd, const OB: usize, const NT: usize, const WHOLE: bool>(
        acc: &mut [[S::V; NT]; OB],
        img: *const f32,
        grid: *const f32,
        taps: &[usize],
        lead: usize,
        q: usize,
        m: S::Mask,
    ) {
        // A masked vector may start past the image or the grid: its masked
        // lanes are not read.
        let mut x = [S::zero(); NT];
        for (j, x) in x.iter_mut().enumerate() {
            *x = S::load_part(WHOLE, m, img.wrapping_add(taps[j] + q));
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            let gv = S::load_part(WHOLE, m, grid.wrapping_add(i * lead + q));
            for j in 0..NT {
                acc[j] = S::fmadd(gv, x[j], acc[j]);
            }
        }
    }

    /// Weights `(ob..ob + OB, t..t + NT)` of [`weight_grad`], in `SPLIT`
    /// passes: pass `h` sums the vectors of positions `q0 + h·LANES..` for
    /// `q0` a multiple of `SPLIT·LANES` (whole vectors, then the last
    /// masked; a vector past the grid adds `0·0`), and each weight's
    /// partial sums are the passes' lanes side by side, added by the tree.
    #[inline(always)]
    unsafe fn grad_block<S: Simd, const OB: usize, const NT: usize, const SPLIT: usize>(
        job: &GradJob<'_>,
        ob: usize,
        t: usize,
        dw: *mut f32,
    ) {
        let g = &job.g;
        let in_len = g.channels * g.height * g.width;
        let (len, lead, taps) = (job.len, job.lead, &job.taps[t..]);
        let step = S::LANES * SPLIT;
        let mut passes = [[[S::zero(); NT]; OB]; SPLIT];
        for (h, acc) in passes.iter_mut().enumerate() {
            for n in 0..job.count {
                let img = job.imgs.as_ptr().add(n * in_len);
                let grid = job.grids.as_ptr().add((n * job.o + ob) * lead);
                let mut q0 = 0;
                while q0 + step <= len {
                    let q = q0 + h * S::LANES;
                    accumulate::<S, OB, NT, true>(acc, img, grid, taps, lead, q, S::first(0));
                    q0 += step;
                }
                if q0 < len {
                    let q = q0 + h * S::LANES;
                    let m = S::first(len.saturating_sub(q));
                    accumulate::<S, OB, NT, false>(acc, img, grid, taps, lead, q, m);
                }
            }
        }
        let plen = job.taps.len();
        for i in 0..OB {
            for j in 0..NT {
                let mut lanes = passes[0][i][j];
                for pass in &passes[1..] {
                    lanes = S::add(lanes, pass[i][j]);
                }
                *dw.add((ob + i) * plen + t + j) = S::sum(lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{gemm, im2col};
    use rand::{Rng, SeedableRng};

    /// `n` values drawn uniformly from `[-1, 1)`.
    fn uniform(rng: &mut impl Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// The bit patterns of `v`, to compare results exactly.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn direct_convolution_matches_im2col_and_gemm_bit_for_bit() {
        for width in Width::available() {
            forward_matches_im2col(width);
        }
    }

    /// The forward pass with `width` against the patch matrix's product, on
    /// 60 random geometries.
    fn forward_matches_im2col(width: Width) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut cases = 0;
        for _ in 0..60 {
            let g = ConvGeometry {
                channels: rng.gen_range(1..6),
                height: rng.gen_range(1..40),
                width: rng.gen_range(1..40),
                kernel_h: rng.gen_range(1..6),
                kernel_w: rng.gen_range(1..6),
                stride: 1,
                padding: 0,
            };
            if g.kernel_h > g.height || g.kernel_w > g.width {
                continue;
            }
            cases += 1;
            let o = rng.gen_range(1..11);
            let img = uniform(&mut rng, g.channels * g.height * g.width);
            let w = uniform(&mut rng, o * g.patch_len());
            let b = uniform(&mut rng, o);
            let n = g.out_h() * g.out_w();
            let mut cols = vec![0.0; g.patch_len() * n];
            im2col(&img, &g, &mut cols);
            let mut want = vec![0.0; o * n];
            gemm(
                o,
                g.patch_len(),
                n,
                &w,
                false,
                &cols,
                false,
                &mut want,
                false,
            );
            for (plane, bias) in want.chunks_mut(n).zip(&b) {
                plane.iter_mut().for_each(|v| *v += bias);
            }
            let mut got = vec![f32::NAN; o * n];
            forward(width, &img, &w, Some(&b), &g, o, &mut got);
            assert_eq!(bits(&got), bits(&want), "{width:?}, {g:?}, {o} outputs");
        }
        assert!(cases > 20, "only {cases} geometries tested");
    }

    #[test]
    fn weight_gradient_is_sixteen_interleaved_sums_added_by_the_tree() {
        // Lane l sums positions l, l + 16, ... of each image in turn, the
        // lanes past the grid adding 0·0, then the lanes are added by the
        // fixed tree: the same bits at every width, on every CPU.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        for (channels, height, width, kernel, o, count) in [
            (1, 20, 21, 5, 10, 3),
            (3, 9, 7, 3, 4, 2),
            (2, 6, 5, 2, 7, 1),
        ] {
            let g = ConvGeometry {
                channels,
                height,
                width,
                kernel_h: kernel,
                kernel_w: kernel,
                stride: 1,
                padding: 0,
            };
            let (oh, ow) = (g.out_h(), g.out_w());
            let (len, plane) = (grid_len(&g), height * width);
            let in_len = channels * plane;
            let imgs = uniform(&mut rng, count * in_len);
            let gys = uniform(&mut rng, count * o * oh * ow);
            let mut want = Vec::new();
            for k in 0..o {
                for c in 0..channels {
                    for tap in 0..kernel * kernel {
                        let at = c * plane + tap / kernel * width + tap % kernel;
                        let mut lanes = [0.0f32; 16];
                        for n in 0..count {
                            for q in 0..len.next_multiple_of(16) {
                                let (y, x) = (q / width, q % width);
                                let (gv, xv) = if q >= len {
                                    (0.0, 0.0)
                                } else if x >= ow {
                                    (0.0, imgs[n * in_len + at + q])
                                } else {
                                    let gv = gys[((n * o + k) * oh + y) * ow + x];
                                    (gv, imgs[n * in_len + at + q])
                                };
                                lanes[q % 16] = gv.mul_add(xv, lanes[q % 16]);
                            }
                        }
                        want.push(crate::kernels::simd::tree(&lanes));
                    }
                }
            }
            for lanes in Width::available() {
                let mut dw = vec![f32::NAN; o * g.patch_len()];
                weight_grad(lanes, &imgs, &gys, &g, o, count, &mut dw);
                assert_eq!(bits(&dw), bits(&want), "{lanes:?}, {g:?}");
            }
        }
    }

    #[test]
    fn weight_gradient_bits_do_not_depend_on_the_blocks_of_channels() {
        for width in Width::available() {
            weight_gradient_blocks(width);
        }
    }

    /// All output channels of a weight gradient with `width` at once against
    /// each channel alone.
    fn weight_gradient_blocks(width: Width) {
        // All output channels at once (blocks of up to 5, of near-equal
        // size) against each channel alone (blocks of 1), bit for bit.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        for (channels, size, kernel, o, count) in [
            (1, 20, 5, 10, 3),
            (3, 12, 3, 7, 2),
            (2, 9, 4, 13, 4),
            (4, 8, 1, 6, 1),
        ] {
            let g = ConvGeometry {
                channels,
                height: size,
                width: size + 1,
                kernel_h: kernel,
                kernel_w: kernel,
                stride: 1,
                padding: 0,
            };
            let n = g.out_h() * g.out_w();
            let in_len = channels * g.height * g.width;
            let imgs = uniform(&mut rng, count * in_len);
            let gys = uniform(&mut rng, count * o * n);
            let mut all = vec![f32::NAN; o * g.patch_len()];
            weight_grad(width, &imgs, &gys, &g, o, count, &mut all);
            for k in 0..o {
                let one: Vec<f32> = gys
                    .chunks(o * n)
                    .flat_map(|image| image[k * n..(k + 1) * n].iter().copied())
                    .collect();
                let mut dw = vec![f32::NAN; g.patch_len()];
                weight_grad(width, &imgs, &one, &g, 1, count, &mut dw);
                let got = &all[k * g.patch_len()..(k + 1) * g.patch_len()];
                assert_eq!(bits(got), bits(&dw), "{width:?}, {g:?}, channel {k} of {o}");
            }
        }
    }

    #[test]
    fn input_gradient_is_one_run_of_fused_multiply_adds_per_value() {
        for width in Width::available() {
            input_gradient_order(width);
        }
    }

    /// The input gradient with the vector width `lanes` against scalar fused
    /// multiply-adds in the kernel's order.
    fn input_gradient_order(lanes: Width) {
        // dx[c, y, x] summed from zero over (o, ky, kx) of the flipped
        // kernel, one `mul_add` per term, every zero term of the padding
        // included: the kernel's order, bit for bit (the rows it skips add
        // only zero terms). The first geometry is the default job's second
        // convolution, whose blocks skip rows.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        for (channels, height, width, kh, kw, o, count) in [
            (10, 16, 16, 5, 5, 20, 2),
            (1, 36, 36, 5, 5, 10, 1),
            (3, 7, 11, 3, 2, 4, 3),
            (2, 5, 4, 1, 4, 9, 2),
            (4, 6, 6, 6, 6, 3, 1),
        ] {
            let g = ConvGeometry {
                channels,
                height,
                width,
                kernel_h: kh,
                kernel_w: kw,
                stride: 1,
                padding: 0,
            };
            let (oh, ow) = (g.out_h(), g.out_w());
            let gys = uniform(&mut rng, count * o * oh * ow);
            let w = uniform(&mut rng, o * g.patch_len());
            let mut dx = vec![f32::NAN; count * channels * height * width];
            input_grad(lanes, &gys, &w, &g, o, count, &mut dx);
            let gy_at = |n: usize, k: usize, y: isize, x: isize| -> f32 {
                if (0..oh as isize).contains(&y) && (0..ow as isize).contains(&x) {
                    gys[((n * o + k) * oh + y as usize) * ow + x as usize]
                } else {
                    0.0
                }
            };
            for n in 0..count {
                for c in 0..channels {
                    for y in 0..height {
                        for x in 0..width {
                            let mut want = 0.0f32;
                            for k in 0..o {
                                for fy in 0..kh {
                                    for fx in 0..kw {
                                        let (ky, kx) = (kh - 1 - fy, kw - 1 - fx);
                                        let wv = w[((k * channels + c) * kh + ky) * kw + kx];
                                        let (sy, sx) =
                                            (y as isize - ky as isize, x as isize - kx as isize);
                                        let gv = gy_at(n, k, sy, sx);
                                        want = wv.mul_add(gv, want);
                                    }
                                }
                            }
                            let got = dx[((n * channels + c) * height + y) * width + x];
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{lanes:?}, {g:?} at {n} {c} {y} {x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn direct_gradients_match_im2col_and_col2im() {
        for width in Width::available() {
            gradients_match_im2col(width);
        }
    }

    /// Both gradients with `width` against the patch matrix's products, on 40
    /// random geometries.
    fn gradients_match_im2col(width: Width) {
        use crate::kernels::col2im;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut cases = 0;
        for _ in 0..40 {
            let g = ConvGeometry {
                channels: rng.gen_range(1..5),
                height: rng.gen_range(1..24),
                width: rng.gen_range(1..24),
                kernel_h: rng.gen_range(1..6),
                kernel_w: rng.gen_range(1..6),
                stride: 1,
                padding: 0,
            };
            if g.kernel_h > g.height || g.kernel_w > g.width {
                continue;
            }
            cases += 1;
            let (o, count) = (rng.gen_range(1..8), rng.gen_range(1..4));
            let in_len = g.channels * g.height * g.width;
            let n = g.out_h() * g.out_w();
            let imgs = uniform(&mut rng, count * in_len);
            let gys = uniform(&mut rng, count * o * n);
            let w = uniform(&mut rng, o * g.patch_len());
            let mut want_dw = vec![0.0; o * g.patch_len()];
            let mut want_dx = vec![0.0; count * in_len];
            let mut cols = vec![0.0; g.patch_len() * n];
            for i in 0..count {
                let gy = &gys[i * o * n..(i + 1) * o * n];
                im2col(&imgs[i * in_len..], &g, &mut cols);
                gemm(
                    o,
                    n,
                    g.patch_len(),
                    gy,
                    false,
                    &cols,
                    true,
                    &mut want_dw,
                    true,
                );
                gemm(g.patch_len(), o, n, &w, true, gy, false, &mut cols, false);
                col2im(&cols, &g, &mut want_dx[i * in_len..(i + 1) * in_len]);
            }
            let mut dw = vec![f32::NAN; o * g.patch_len()];
            weight_grad(width, &imgs, &gys, &g, o, count, &mut dw);
            let mut dx = vec![f32::NAN; count * in_len];
            input_grad(width, &gys, &w, &g, o, count, &mut dx);
            for (got, want) in [(&dw, &want_dw), (&dx, &want_dx)] {
                for (a, b) in got.iter().zip(want.iter()) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}, {g:?}");
                }
            }
        }
        assert!(cases > 10, "only {cases} geometries tested");
    }
}
