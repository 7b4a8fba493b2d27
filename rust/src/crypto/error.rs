//! Why a cryptographic step failed. Messages name what failed, never key material.

use std::fmt;

/// A cryptographic failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The authentication tag did not match: wrong key, or the bytes were changed.
    Authentication(String),
    /// An argument of the wrong length or range (a key, nonce, parameter).
    Invalid(String),
    /// The operating system's random source failed.
    Random(String),
}

/// Result of a cryptographic step.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authentication(m) | Self::Invalid(m) | Self::Random(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// `len` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    random_fill(&mut out)?;
    Ok(out)
}

/// Fills `out` from the operating system's random source: a backup draws the nonces of a
/// whole chunk's blocks in one call instead of a system call per block.
pub fn random_fill(out: &mut [u8]) -> Result<()> {
    getrandom::getrandom(out).map_err(|e| Error::Random(format!("the system random source failed: {e}")))
}
