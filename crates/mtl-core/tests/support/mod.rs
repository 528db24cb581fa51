//! Fixtures shared by the integration tests.

pub mod two_moons;
