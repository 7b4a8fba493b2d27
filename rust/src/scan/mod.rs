//! Block checksum scanning and digests: pure logic, no PyO3 types.

pub mod algorithm;

pub use algorithm::{Algorithm, Hasher};
