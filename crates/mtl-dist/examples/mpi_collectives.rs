//! Checks every collective of the MPI backend against the in-process thread
//! group, bit for bit, then times all-reduces.
//!
//! ```text
//! cargo build --release -p mtl-dist --features mpi --example mpi_collectives
//! mpirun --allow-run-as-root --oversubscribe -np 3 target/release/examples/mpi_collectives
//! ```
//!
//! Every rank runs one scripted series of collectives on the MPI world, then
//! the same script on a thread group of the same size (inside the process),
//! and compares its own results with those of the thread of its rank. Exit
//! status 0 when every result has the same bits, 1 otherwise (every rank
//! agrees on the status). Add `--timing` to time all-reduces of 1 MiB and
//! 16 MiB with this crate's rank-order algorithm and with `MPI_Allreduce`.

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::CommunicatorCollectives;
use mtl_dist::{
    check_identical_parameters, check_same_config, config_hash, shard_range, Communicator,
    DistError, Failure, Mpi, ShardedRows, ThreadGroup,
};

/// One named result of the script, as raw bits (floats) or text (errors,
/// bytes).
#[derive(Debug, PartialEq)]
enum Observation {
    Bits(&'static str, Vec<u64>),
    Text(&'static str, String),
}

/// A value for rank `r`, element `i`, with mixed signs and magnitudes so
/// that a different summation order would show in the low bits.
fn value(r: usize, i: usize) -> f32 {
    let x = ((r * 7919 + i * 104_729) % 1009) as f32 / 7.0 - 70.0;
    x * 10f32.powi((i % 7) as i32 - 3)
}

fn bits32(v: &[f32]) -> Vec<u64> {
    v.iter().map(|x| u64::from(x.to_bits())).collect()
}

fn bits64(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn text<T: std::fmt::Debug>(name: &'static str, r: T) -> Observation {
    Observation::Text(name, format!("{r:?}"))
}

/// The scripted series of collectives; the same calls on every rank.
fn script(comm: &dyn Communicator) -> Result<Vec<Observation>, DistError> {
    let (rank, size) = (comm.rank(), comm.size());
    let mut out = Vec::new();
    for n in [0usize, 1, 2, 7, 1000, 100_003] {
        let mut v: Vec<f32> = (0..n).map(|i| value(rank, i)).collect();
        comm.all_reduce_sum_f32(&mut v)?;
        out.push(Observation::Bits("all_reduce_sum_f32", bits32(&v)));
    }
    for n in [3usize, 5000] {
        let mut v: Vec<f64> = (0..n).map(|i| f64::from(value(rank, i)) / 3.0).collect();
        comm.all_reduce_sum_f64(&mut v)?;
        out.push(Observation::Bits("all_reduce_sum_f64", bits64(&v)));
    }
    for root in 0..size {
        let mut bytes: Vec<u8> = (0..(rank * 5 + 3)).map(|i| (i * 7 + rank) as u8).collect();
        comm.broadcast_bytes(root, &mut bytes)?;
        out.push(Observation::Text("broadcast_bytes", format!("{bytes:?}")));
    }
    comm.barrier()?;
    // Uneven counts, one rank with none when there are at least 2 ranks.
    let counts: Vec<usize> = (0..size)
        .map(|r| if r == 1 { 0 } else { 3 + 2 * r })
        .collect();
    let total: usize = counts.iter().sum();
    let send: Vec<f32> = (0..total).map(|i| value(rank, i)).collect();
    let mut mine = vec![0.0f32; counts[rank]];
    comm.reduce_scatter_sum_f32(&send, &counts, &mut mine)?;
    out.push(Observation::Bits("reduce_scatter_sum_f32", bits32(&mine)));
    let mut all = vec![0.0f32; total];
    comm.all_gather_f32(&mine, &counts, &mut all)?;
    out.push(Observation::Bits("all_gather_f32", bits32(&all)));
    out.push(text("agree(none)", comm.agree(None)?));
    let local = (rank + 1 == size || rank == 1)
        .then(|| Failure::new(2 + rank as i32, format!("bad input on rank {rank}")));
    out.push(text("agree(failures)", comm.agree(local)?));
    // Shared-parameter exchange: 3 tasks, 1001 coordinates.
    let (tasks, cols) = (3, 1001);
    let rows: Vec<f32> = (0..tasks * cols).map(|i| value(rank, i)).collect();
    let mut sharded = ShardedRows::new(comm, tasks, cols)?;
    sharded.reduce_scatter(comm, &rows)?;
    out.push(Observation::Bits(
        "ShardedRows::owned",
        bits32(sharded.owned()),
    ));
    let gram = sharded.gram(comm)?;
    out.push(Observation::Bits(
        "ShardedRows::gram",
        bits64(gram.as_slice()),
    ));
    let mut slice = vec![0.0f32; sharded.columns().len()];
    sharded.combine(&[0.5, -0.25, 1.0 / 3.0], &mut slice);
    let mut direction = vec![0.0f32; cols];
    sharded.all_gather(comm, &slice, &mut direction)?;
    out.push(Observation::Bits(
        "ShardedRows::all_gather",
        bits32(&direction),
    ));
    out.push(text(
        "check_same_config(equal)",
        check_same_config(comm, config_hash(b"cfg")),
    ));
    let differing: &[u8] = if rank + 1 == size && size > 1 {
        b"cfg2"
    } else {
        b"cfg"
    };
    out.push(text(
        "check_same_config(differing)",
        check_same_config(comm, config_hash(differing)),
    ));
    out.push(text(
        "check_identical_parameters",
        check_identical_parameters(comm, &direction),
    ));
    out.push(text("shard_range", shard_range(10, rank, size)));
    Ok(out)
}

/// Median and maximum over ranks of the per-call time of `call`, in seconds.
fn time_calls(world: &SimpleCommunicator, mut call: impl FnMut()) -> (f64, f64) {
    const WARMUP: usize = 3;
    const REPEATS: usize = 21;
    for _ in 0..WARMUP {
        call();
    }
    let mut times = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        world.barrier();
        let start = mpi::time();
        call();
        let mut slowest = 0.0f64;
        world.all_reduce_into(&(mpi::time() - start), &mut slowest, SystemOperation::max());
        times.push(slowest);
    }
    times.sort_by(f64::total_cmp);
    (times[REPEATS / 2], times[REPEATS - 1])
}

fn timing(comm: &Mpi) -> Result<(), DistError> {
    let world = SimpleCommunicator::world();
    for mib in [1usize, 16] {
        let n = mib * (1 << 20) / 4;
        let mut v: Vec<f32> = (0..n).map(|i| value(comm.rank(), i)).collect();
        let mut failed = None;
        let ours = time_calls(&world, || {
            if let Err(e) = comm.all_reduce_sum_f32(&mut v) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let send = v.clone();
        let native = time_calls(&world, || {
            world.all_reduce_into(&send[..], &mut v[..], SystemOperation::sum());
        });
        if comm.rank() == 0 {
            let size = comm.size() as f64;
            // Bus bandwidth: the bytes a ring all-reduce moves per rank.
            let bus = |t: f64| 2.0 * (size - 1.0) / size * (n * 4) as f64 / t / 1e9;
            println!(
                "all-reduce {mib:>2} MiB f32, {} ranks: rank-order {:8.1} us (max {:8.1}, bus {:5.2} GB/s) | MPI_Allreduce {:8.1} us (max {:8.1}, bus {:5.2} GB/s)",
                comm.size(),
                ours.0 * 1e6,
                ours.1 * 1e6,
                bus(ours.0),
                native.0 * 1e6,
                native.1 * 1e6,
                bus(native.0),
            );
        }
    }
    Ok(())
}

fn main() {
    let comm = match Mpi::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let status = run(&comm);
    drop(comm);
    std::process::exit(status);
}

fn run(comm: &Mpi) -> i32 {
    let (rank, size) = (comm.rank(), comm.size());
    let local = match compare(comm) {
        Ok(0) => None,
        Ok(n) => Some(Failure::new(
            1,
            format!("{n} results differ from the thread group"),
        )),
        Err(e) => Some(Failure::new(1, e.to_string())),
    };
    let verdict = match comm.agree(local) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rank {rank}: error agreement failed: {e}");
            comm.abort(1)
        }
    };
    if let Some(failure) = verdict {
        if rank == 0 {
            eprintln!("error: {failure}");
        }
        return failure.failure.exit_code;
    }
    if rank == 0 {
        println!("mpi_collectives: {size} ranks, every collective bit-identical to a thread group of {size}");
    }
    if std::env::args().any(|a| a == "--timing") {
        if let Err(e) = timing(comm) {
            eprintln!("rank {rank}: {e}");
            return 1;
        }
    }
    0
}

/// Runs the script on MPI and on a thread group; returns how many results
/// of this rank differ.
fn compare(comm: &Mpi) -> Result<usize, DistError> {
    let (rank, size) = (comm.rank(), comm.size());
    let ours = script(comm)?;
    let mut threads = ThreadGroup::new(size)?.run(|c| script(c))?;
    let reference = threads.swap_remove(rank)?;
    if ours.len() != reference.len() {
        eprintln!(
            "rank {rank}: {} results over MPI, {} in threads",
            ours.len(),
            reference.len()
        );
        return Ok(ours.len().abs_diff(reference.len()).max(1));
    }
    let mut differing = 0;
    for (a, b) in ours.iter().zip(&reference) {
        if a != b {
            differing += 1;
            let name = match a {
                Observation::Bits(n, _) | Observation::Text(n, _) => n,
            };
            eprintln!("rank {rank}: `{name}` differs between MPI and the thread group");
        }
    }
    Ok(differing)
}
