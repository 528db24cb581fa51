//! Keeping rayon's threads from sleeping where a wake-up would cost more
//! than the wait: [`keep_awake`] keeps the workers polling for work through
//! a run of parallel pieces, so that none of the pieces waits for a
//! sleeping worker, and [`join_polling`] keeps the thread that waits for the
//! other half of a join polling rather than sleeping. Where every thread
//! already runs a pass of its own, [`products_on_this_thread`] keeps each
//! pass's matrix products whole on its thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// Set inside [`products_on_this_thread`].
    static OWN_PRODUCTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the matrix products it computes on this thread not cut
/// into parallel tasks, for a caller that already keeps every thread busy
/// with one such `f` (one backward pass per task, as many passes as
/// threads or a multiple): each pass then packs its operands once and
/// never waits for, or steals, a piece of another pass's product. Other
/// parallel loops inside `f` are unchanged. A product's bits do not depend
/// on how it is cut, so results are those of calling `f` directly.
///
/// ```
/// use mtl_core::workers::products_on_this_thread;
/// use mtl_core::Tensor;
/// let a = Tensor::from_vec((0..600 * 600).map(|i| (i % 7) as f32).collect(), &[600, 600]).unwrap();
/// let cut = a.matmul(&a, false, false).unwrap();
/// let whole = products_on_this_thread(|| a.matmul(&a, false, false).unwrap());
/// assert_eq!(cut.data(), whole.data());
/// ```
pub fn products_on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    let before = OWN_PRODUCTS.with(|own| own.replace(true));
    // Restored when `f` returns or unwinds.
    let _restore = Restore(before);
    f()
}

/// Whether this thread is inside [`products_on_this_thread`].
pub(crate) fn own_products() -> bool {
    OWN_PRODUCTS.with(Cell::get)
}

/// Puts back the flag of [`products_on_this_thread`] when dropped.
struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        OWN_PRODUCTS.with(|own| own.set(self.0));
    }
}

/// Runs `f` on one of rayon's workers while every other worker of the pool
/// polls for work instead of going to sleep, until `f` returns.
///
/// A training step is a run of parallel pieces (matrix products, the
/// optimizer) between short serial stretches (losses, the balancer). rayon
/// puts a worker with nothing to do to sleep within microseconds, and the
/// next piece then waits tens of microseconds for it to wake: measured on
/// two cores, a 256³ product started 20 µs after the last parallel piece
/// took 240 µs against 190 µs straight after one. Inside `keep_awake` the
/// other workers take each piece as it appears (between pieces they yield
/// the CPU to any other thread that wants it, so an oversubscribed pool is
/// not starved). Only which thread runs which piece changes, never what is
/// computed: results are those of calling `f` directly.
///
/// ```
/// use mtl_core::workers::keep_awake;
/// let sum: u64 = keep_awake(|| {
///     use rayon::prelude::*;
///     (0..1000u64).into_par_iter().sum()
/// });
/// assert_eq!(sum, 499_500);
/// ```
pub fn keep_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| poll_until(&done));
        }
        // Set when `f` returns or unwinds, so that the pollers end and the
        // scope can close.
        let _finished = Finished(&done);
        f()
    })
}

/// `rayon::join(a, b)`, except that the calling thread, once `a` is done,
/// polls for the end of `b` (running other pending rayon work meanwhile)
/// instead of going to sleep.
///
/// rayon's waiting thread yields the CPU about thirty times, then sleeps;
/// its wake-up, when the other half ends, costs tens of microseconds on a
/// virtual machine. Use this where `b` may end a few tens of microseconds
/// after `a` (the halves of a matrix product): measured on two cores of an
/// Intel Xeon, the weight gradient of a 784-input layer (`256 × 256 × 784`)
/// returned 33–61 µs after its later half had ended, and 0.4–0.9 µs with
/// this join. The results are those of `rayon::join`.
///
/// ```
/// let (a, b) = mtl_core::workers::join_polling(|| 2 + 2, || "four");
/// assert_eq!((a, b), (4, "four"));
/// ```
pub fn join_polling<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let done = AtomicBool::new(false);
    rayon::join(
        || {
            let ra = a();
            poll_until(&done);
            ra
        },
        || {
            // Set when `b` returns or unwinds, so that the poll ends.
            let _finished = Finished(&done);
            b()
        },
    )
}

/// Runs pending rayon work until `done` is set.
fn poll_until(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::thread::yield_now();
        }
    }
}

/// Sets its flag when dropped.
struct Finished<'a>(&'a AtomicBool);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn results_and_panics_come_through_and_the_pool_stays_usable() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            let v: Vec<u64> =
                keep_awake(|| (0..10_000u64).into_par_iter().map(|x| x * x).collect());
            assert_eq!(v, (0..10_000u64).map(|x| x * x).collect::<Vec<_>>());
            // Nested, and after a panic inside: the pollers end each time.
            let nested = keep_awake(|| keep_awake(rayon::current_num_threads));
            assert_eq!(nested, 3);
            let caught = std::panic::catch_unwind(|| keep_awake(|| panic!("inside")));
            assert!(caught.is_err());
            assert_eq!(keep_awake(|| 7), 7);
        });
        // From outside any pool: runs on the global pool.
        assert!(keep_awake(|| rayon::current_thread_index().is_some()));
    }

    #[test]
    fn products_on_this_thread_sets_the_flag_for_its_thread_only_and_restores_it() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            assert!(!own_products());
            let (inside, other) = products_on_this_thread(|| {
                // Nested: still set, and unset again only at the outer end.
                products_on_this_thread(|| ());
                let other = std::thread::spawn(own_products).join().unwrap();
                (own_products(), other)
            });
            assert!(inside && !other);
            assert!(!own_products());
            let caught = std::panic::catch_unwind(|| products_on_this_thread(|| panic!("inside")));
            assert!(caught.is_err());
            assert!(!own_products());
        });
    }

    #[test]
    fn a_polling_join_gives_both_results_and_ends_when_either_side_panics() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                // With one thread, `b` is never stolen: the poll runs it.
                let (a, b) = join_polling(
                    || (0..1000u64).sum::<u64>(),
                    || (0..10_000u64).into_par_iter().map(|x| x % 7).sum::<u64>(),
                );
                assert_eq!((a, b), (499_500, (0..10_000u64).map(|x| x % 7).sum()));
                // `b` much longer than `a`, inside `keep_awake`, nested.
                let (x, (y, z)) = keep_awake(|| {
                    join_polling(
                        || 1,
                        || {
                            join_polling(
                                || std::thread::sleep(std::time::Duration::from_millis(5)),
                                || 3,
                            )
                        },
                    )
                });
                assert_eq!((x, y, z), (1, (), 3));
                let left = std::panic::catch_unwind(|| join_polling(|| panic!("a"), || 2));
                assert!(left.is_err());
                let right = std::panic::catch_unwind(|| join_polling(|| 1, || panic!("b")));
                assert!(right.is_err());
                assert_eq!(join_polling(|| 5, || 6), (5, 6));
            });
        }
    }
}
