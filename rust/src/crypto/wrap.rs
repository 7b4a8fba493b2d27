//! Wrapping a secret to an X25519 public key with an ephemeral key (age's model): the
//! wrapper learns nothing it could unwrap later. Wrapped form: `ephemeral public (32) ||
//! sealed secret`, the sealing key derived from the shared secret and both public keys.

use x25519_dalek::{PublicKey, StaticSecret};

use super::aead::{self, KEY_LEN};
use super::error::{random, Error, Result};

/// Bytes a wrapped secret has beyond the secret.
pub const WRAP_OVERHEAD: usize = 32 + aead::OVERHEAD;
const CONTEXT: &str = "rustybackup 2026-11 x25519 wrap v1";

fn key32(b: &[u8], what: &str) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| Error::Invalid(format!("{what} is 32 bytes, got {}", b.len())))
}

/// The public key of an X25519 secret key.
pub fn public_key(secret: &[u8]) -> Result<[u8; 32]> {
    let s = StaticSecret::from(key32(secret, "an X25519 secret key")?);
    Ok(PublicKey::from(&s).to_bytes())
}

fn sealing_key(shared: &[u8; 32], eph: &[u8; 32], recipient: &[u8; 32]) -> Result<[u8; KEY_LEN]> {
    // An all-zero shared secret means a low-order public key: refuse it (RFC 7748 s. 6.1).
    if shared.iter().all(|&b| b == 0) {
        return Err(Error::Invalid("the X25519 public key is of low order".into()));
    }
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared);
    material.extend_from_slice(eph);
    material.extend_from_slice(recipient);
    Ok(blake3::derive_key(CONTEXT, &material))
}

/// Wraps `secret` to `recipient` (an X25519 public key), binding `ad`.
pub fn wrap(recipient: &[u8], secret: &[u8], ad: &[u8]) -> Result<Vec<u8>> {
    let recipient = key32(recipient, "an X25519 public key")?;
    let eph = StaticSecret::from(random::<32>()?);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(recipient)).to_bytes();
    let key = sealing_key(&shared, &eph_pub, &recipient)?;
    let mut out = eph_pub.to_vec();
    out.extend_from_slice(&aead::seal(&key, ad, secret)?);
    Ok(out)
}

/// Unwraps what `wrap` made for the public key of `secret_key`.
pub fn unwrap(secret_key: &[u8], wrapped: &[u8], ad: &[u8]) -> Result<Vec<u8>> {
    if wrapped.len() < WRAP_OVERHEAD {
        return Err(Error::Authentication(format!(
            "{} bytes are too short for a wrapped key ({WRAP_OVERHEAD} at least)",
            wrapped.len()
        )));
    }
    let s = StaticSecret::from(key32(secret_key, "an X25519 secret key")?);
    let recipient = PublicKey::from(&s).to_bytes();
    let (eph, sealed) = wrapped.split_at(32);
    let eph = key32(eph, "an ephemeral public key")?;
    let shared = s.diffie_hellman(&PublicKey::from(eph)).to_bytes();
    let key = sealing_key(&shared, &eph, &recipient)?;
    aead::open(&key, ad, sealed)
}
