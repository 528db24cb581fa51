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
            None => vec![0.0; len],
        }
    }

    /// Forgets the buffers kept so far and keeps `buffers` instead.
    pub(crate) fn refill(&mut self, buffers: impl Iterator<Item = Vec<f32>>) {
        self.free.clear();
        self.free
            .extend(buffers.filter(|b| b.len() >= MIN_POOLED && b.len() == b.capacity()));
    }
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
}
