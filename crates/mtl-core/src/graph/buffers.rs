//! The tape's free list: value buffers of one step, kept for the next.
//!
//! A training step records the same ops on the same shapes every time, so
//! the buffers a step frees are exactly the sizes the next step asks for.
//! [`Graph::reset`](super::Graph::reset) hands the node values of the last
//! step to the pool, and the ops whose output overwrites every element
//! (matrix products, convolutions, pooling, element-wise maps) take their
//! output buffer from it instead of allocating and zero-filling a new one.
//! Only the last step's buffers are kept, so the pool never holds more than
//! one step's values.

use std::sync::Mutex;

use rayon::prelude::*;

/// Buffers below this many elements are not worth keeping (the allocator
/// serves them from its caches without page faults).
const MIN_POOLED: usize = 1 << 10;

/// Free buffers, matched by exact length.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<f32>>,
}

impl BufferPool {
    /// A buffer of `len` elements whose contents are unspecified (values of
    /// an earlier step, or zeros): only for outputs written in full.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        match self.free.iter().rposition(|b| b.len() == len) {
            Some(i) => self.free.swap_remove(i),
            None => zeros(len),
        }
    }

    /// Forgets the buffers kept so far and keeps `buffers` instead.
    pub(crate) fn refill(&mut self, buffers: impl Iterator<Item = Vec<f32>>) {
        self.free.clear();
        self.free
            .extend(buffers.filter(|b| b.len() >= MIN_POOLED && b.len() == b.capacity()));
    }
}

/// How many used-up gradient buffers [`SpentGradients`] keeps.
const MAX_SPENT: usize = 8;

/// How many elements [`SpentGradients`] keeps in all (16 MiB of `f32`), so
/// that the large gradients of convolutional layers add little to the
/// process's peak memory.
const MAX_SPENT_ELEMENTS: usize = 1 << 22;

/// Gradient buffers that backward passes have used up, for later passes'
/// products to write into instead of allocating (and faulting in) fresh
/// memory. Passes borrow the graph (per-task passes run in parallel), so
/// the list sits behind a lock, taken once per buffer. It keeps at most
/// [`MAX_SPENT`] buffers and [`MAX_SPENT_ELEMENTS`] elements, dropping the
/// oldest first.
#[derive(Debug, Default)]
pub(crate) struct SpentGradients {
    free: Mutex<Vec<Vec<f32>>>,
}

impl SpentGradients {
    /// A buffer of `len` elements with unspecified contents: only for
    /// outputs written in full.
    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        if len >= MIN_POOLED {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = free.iter().rposition(|b| b.len() == len) {
                return free.swap_remove(i);
            }
        }
        zeros(len)
    }

    /// Keeps `buffer` for a later [`SpentGradients::take`].
    pub(crate) fn put(&self, buffer: Vec<f32>) {
        let len = buffer.len();
        if len < MIN_POOLED || len != buffer.capacity() || len > MAX_SPENT_ELEMENTS {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept: usize = free.iter().map(Vec::len).sum();
        while free.len() == MAX_SPENT || kept + len > MAX_SPENT_ELEMENTS {
            kept -= free.remove(0).len();
        }
        free.push(buffer);
    }
}

/// `len` zeros, written by the pool's threads from
/// [`PARALLEL_ELEMENTS`](crate::tensor::PARALLEL_ELEMENTS) on rather than by
/// one serial fill (a batch of first-layer activations is megabytes).
fn zeros(len: usize) -> Vec<f32> {
    if len < crate::tensor::PARALLEL_ELEMENTS {
        return vec![0.0; len];
    }
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(0.0f32, len));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_by_exact_length_and_only_from_the_last_refill() {
        let mut pool = BufferPool::default();
        pool.refill(vec![vec![1.0; 2048], vec![2.0; 4096], vec![3.0; 10]].into_iter());
        assert_eq!(pool.take(4096)[0], 2.0);
        // Not kept (too small), so a fresh zeroed buffer.
        assert_eq!(pool.take(10), vec![0.0; 10]);
        assert_eq!(pool.take(4096), vec![0.0; 4096]);
        pool.refill(vec![vec![5.0; 1024]].into_iter());
        assert_eq!(pool.take(2048), vec![0.0; 2048]);
        assert_eq!(pool.take(1024)[0], 5.0);
    }

    #[test]
    fn spent_gradients_come_back_by_length_and_the_oldest_go_first() {
        let spent = SpentGradients::default();
        spent.put(vec![1.0; 2048]);
        spent.put(vec![2.0; 10]);
        assert_eq!(spent.take(2048)[0], 1.0);
        assert_eq!(spent.take(2048), vec![0.0; 2048]);
        assert_eq!(spent.take(10), vec![0.0; 10]);
        for i in 0..=MAX_SPENT {
            spent.put(vec![i as f32; 4096]);
        }
        let kept: Vec<f32> = (0..=MAX_SPENT).map(|_| spent.take(4096)[0]).collect();
        // The first one put was dropped; the rest come back newest first.
        let mut want: Vec<f32> = (1..=MAX_SPENT).rev().map(|i| i as f32).collect();
        want.push(0.0);
        assert_eq!(kept, want);
        // Large buffers: only as many as fit in the element budget, oldest
        // dropped first; one larger than the budget is not kept.
        let big = MAX_SPENT_ELEMENTS / 3;
        for i in 0..4 {
            spent.put(vec![i as f32; big]);
        }
        spent.put(vec![9.0; MAX_SPENT_ELEMENTS + 1]);
        assert_eq!(spent.take(MAX_SPENT_ELEMENTS + 1)[0], 0.0);
        let kept: Vec<f32> = (0..4).map(|_| spent.take(big)[0]).collect();
        assert_eq!(kept, vec![3.0, 2.0, 1.0, 0.0]);
    }
}
