//! [`MainThread`]: a communicator kept on the thread that created it, handed
//! to `Send` owners such as a trainer, and shared between them.

use std::rc::Rc;

use crate::communicator::{Communicator, Failure, RankFailure};
use crate::error::Result;

/// A communicator confined to the thread that created it, `Send` by that
/// promise, and shared (reference counted) between the owners that thread
/// runs one after another.
///
/// MPI runs at thread level *funneled*: only the thread that called
/// `Mpi::init` may call MPI, so `Mpi` is not `Send`. A trainer is `Send` and
/// takes a `Box<dyn Communicator + Send>`; a program that builds, steps and
/// drops its trainers on the main thread wraps its communicator here, once,
/// and gives each trainer a clone. The communicator (and with it MPI) is
/// dropped with the last clone.
///
/// ```
/// use mtl_dist::{Communicator, MainThread, SingleProcess};
///
/// // SAFETY: every clone is used and dropped on this thread.
/// let comm = unsafe { MainThread::new(SingleProcess) };
/// let boxed: Box<dyn Communicator + Send> = Box::new(comm.clone());
/// let mut v = [2.0f32];
/// boxed.all_reduce_sum_f32(&mut v)?;
/// assert_eq!((v[0], comm.size()), (2.0, 1));
/// # Ok::<(), mtl_dist::DistError>(())
/// ```
#[derive(Debug)]
pub struct MainThread<C> {
    inner: Rc<C>,
}

impl<C> MainThread<C> {
    /// Wraps `inner`.
    ///
    /// # Safety
    ///
    /// The result and every clone of it must be used and dropped on the
    /// calling thread only. They may be moved into `Send` values (a
    /// trainer), provided those values, too, are used and dropped on this
    /// thread and never sent to another.
    pub unsafe fn new(inner: C) -> Self {
        Self {
            inner: Rc::new(inner),
        }
    }

    /// The wrapped communicator.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C> Clone for MainThread<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
        }
    }
}

// SAFETY: `MainThread::new`'s contract keeps every clone, and so the `Rc`
// and `inner`, on the thread that created them; `Send` only lets the value
// sit inside `Send` owners there.
unsafe impl<C> Send for MainThread<C> {}

impl<C: Communicator> Communicator for MainThread<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.inner.all_reduce_sum_f32(values)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.inner.all_reduce_sum_f64(values)
    }

    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        self.inner.broadcast_bytes(root, bytes)
    }

    fn barrier(&self) -> Result<()> {
        self.inner.barrier()
    }

    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()> {
        self.inner.reduce_scatter_sum_f32(send, counts, recv)
    }

    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        self.inner.all_gather_f32(send, counts, recv)
    }

    fn agree(&self, local: Option<Failure>) -> Result<Option<RankFailure>> {
        self.inner.agree(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Collective, ThreadGroup, Timed};

    #[test]
    fn clones_share_one_communicator() {
        let out = ThreadGroup::new(2)
            .unwrap()
            .run(|c| {
                // SAFETY: used and dropped on this thread.
                let shared = unsafe { MainThread::new(Timed::new(c)) };
                let owners: Vec<Box<dyn Communicator + Send>> =
                    vec![Box::new(shared.clone()), Box::new(shared.clone())];
                let mut v = [1.0f32, 2.0];
                for o in &owners {
                    o.all_reduce_sum_f32(&mut v).unwrap();
                }
                drop(owners);
                (v, shared.inner().handle().snapshot())
            })
            .unwrap();
        for (v, stats) in out {
            assert_eq!(v, [4.0, 8.0]);
            assert_eq!(stats.get(Collective::AllReduceF32).calls, 2);
            assert_eq!(stats.get(Collective::AllReduceF32).bytes, 16);
        }
    }
}
