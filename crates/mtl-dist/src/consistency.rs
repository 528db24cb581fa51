//! Checks that every rank runs the same thing: configuration hashes compared
//! at start, parameter checksums compared in tests.

use crate::communicator::Communicator;
use crate::error::{DistError, Result};

/// 64-bit FNV-1a offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// 64-bit FNV-1a prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a hash of `bytes` (Fowler, Noll and Vo): a fixed function,
/// the same on every machine, build and run, unlike `std`'s `RandomState`.
/// Hash the canonical serialisation of a run configuration with it.
pub fn config_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// FNV-1a hash of the bits of `params` (little-endian `f32` bit patterns):
/// equal exactly when every value has the same bits (up to hash
/// collisions). `0.0` and `-0.0` differ, as do NaNs with different payloads.
pub fn parameter_checksum(params: &[f32]) -> u64 {
    params.iter().fold(FNV_OFFSET, |h, p| {
        p.to_bits()
            .to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
    })
}

/// Every rank's `value`, in rank order, on every rank. Each `u64` travels as
/// two 32-bit halves in an `f64` all-reduce where only its owner's slot is
/// non-zero, so the sums are exact.
pub fn all_gather_u64(comm: &dyn Communicator, value: u64) -> Result<Vec<u64>> {
    let rank = comm.rank();
    let mut slots = vec![0.0f64; 2 * comm.size()];
    slots[2 * rank] = (value >> 32) as f64;
    slots[2 * rank + 1] = (value & 0xffff_ffff) as f64;
    comm.all_reduce_sum_f64(&mut slots)?;
    Ok(slots
        .chunks_exact(2)
        .map(|hl| ((hl[0] as u64) << 32) | hl[1] as u64)
        .collect())
}

/// The lowest rank whose value differs from rank 0's, with both values.
fn first_difference(values: &[u64]) -> Option<(usize, u64, u64)> {
    let reference = values[0];
    values
        .iter()
        .position(|&v| v != reference)
        .map(|rank| (rank, values[rank], reference))
}

/// Compares the configuration hash of every rank with rank 0's. Every rank
/// gets the same answer.
///
/// # Errors
///
/// [`DistError::ConfigMismatch`] naming the lowest rank that differs;
/// errors of the communicator.
pub fn check_same_config(comm: &dyn Communicator, hash: u64) -> Result<()> {
    match first_difference(&all_gather_u64(comm, hash)?) {
        None => Ok(()),
        Some((rank, found, expected)) => Err(DistError::ConfigMismatch {
            rank,
            found,
            expected,
        }),
    }
}

/// Checks that `params` has the same bits on every rank and returns the
/// common [`parameter_checksum`]. Every rank gets the same answer.
///
/// # Errors
///
/// [`DistError::ParametersDiverged`] naming the lowest rank that differs;
/// errors of the communicator.
pub fn check_identical_parameters(comm: &dyn Communicator, params: &[f32]) -> Result<u64> {
    let sums = all_gather_u64(comm, parameter_checksum(params))?;
    match first_difference(&sums) {
        None => Ok(sums[0]),
        Some((rank, found, expected)) => Err(DistError::ParametersDiverged {
            rank,
            found,
            expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThreadGroup;

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(config_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(config_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(config_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn checksum_sees_every_bit() {
        assert_ne!(parameter_checksum(&[0.0]), parameter_checksum(&[-0.0]));
        assert_ne!(
            parameter_checksum(&[1.0, 2.0]),
            parameter_checksum(&[2.0, 1.0])
        );
        assert_eq!(parameter_checksum(&[1.5]), parameter_checksum(&[1.5]));
    }

    #[test]
    fn u64_values_travel_exactly() {
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| all_gather_u64(c, u64::MAX - c.rank() as u64))
            .unwrap();
        for v in out {
            assert_eq!(v.unwrap(), [u64::MAX, u64::MAX - 1, u64::MAX - 2]);
        }
    }

    #[test]
    fn config_mismatch_names_the_rank() {
        for size in 1..=3 {
            let out = ThreadGroup::new(size)
                .unwrap()
                .run(|c| check_same_config(c, config_hash(b"lr = 0.1")))
                .unwrap();
            assert!(out.iter().all(Result::is_ok));
        }
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let text: &[u8] = if c.rank() == 2 {
                    b"lr = 0.2"
                } else {
                    b"lr = 0.1"
                };
                check_same_config(c, config_hash(text))
            })
            .unwrap();
        let expected = Err(DistError::ConfigMismatch {
            rank: 2,
            found: config_hash(b"lr = 0.2"),
            expected: config_hash(b"lr = 0.1"),
        });
        assert!(out.iter().all(|r| *r == expected));
    }

    #[test]
    fn diverged_parameters_are_reported_on_every_rank() {
        let out = ThreadGroup::new(2)
            .unwrap()
            .run(|c| check_identical_parameters(c, &[1.0, 2.0]))
            .unwrap();
        assert!(out
            .iter()
            .all(|r| *r == Ok(parameter_checksum(&[1.0, 2.0]))));
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let p = [1.0, if c.rank() == 1 { f32::EPSILON } else { 0.0 }];
                check_identical_parameters(c, &p)
            })
            .unwrap();
        assert!(out
            .iter()
            .all(|r| matches!(r, Err(DistError::ParametersDiverged { rank: 1, .. }))));
    }
}
