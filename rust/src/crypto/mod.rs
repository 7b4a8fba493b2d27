//! Encryption at rest (docs/FORMAT.md "Encryption"): the primitives and the one place
//! that says how they are combined. Pure logic, no PyO3 types.
//!
//! - `aead`: XChaCha20-Poly1305 with a random 24-byte nonce per message. With 192-bit
//!   nonces a random choice repeats with negligible probability (2^-96 after 2^48
//!   messages under one key), so no counter has to survive a crash or be shared by the
//!   hosts that write one repository, which a 96-bit AES-GCM nonce would need.
//! - `aead_gcm`: AES-256-GCM with the same 24-byte random nonce, made safe by a key per
//!   message derived from it; new repositories seal their blocks with it (faster with
//!   AES-NI; `block::Cipher`).
//! - `kdf`: Argon2id for passphrases (parameters stored in the slot) and keyed BLAKE3
//!   for subkeys and block digests.
//! - `wrap`: X25519 key agreement with an ephemeral key (age's model), so a host that
//!   holds only the repository's public key can encrypt set keys it cannot decrypt.
//! - `block`: how a stored block is sealed: what its associated data binds.

pub mod aead;
pub mod aead_gcm;
pub mod block;
pub mod error;
pub mod kdf;
pub mod reseal;
pub mod wrap;

pub use aead::{open, open_owned, seal, seal_with_nonce, KEY_LEN, NONCE_LEN, OVERHEAD, TAG_LEN};
pub use block::{keys_for_pieces, piece_label, BlockKey, Cipher};
pub use error::{Error, Result};
pub use kdf::{argon2id, derive_key, keyed_digest, Argon2Params};
pub use wrap::{public_key, unwrap, wrap, WRAP_OVERHEAD};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rekey;
