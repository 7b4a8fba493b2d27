//! XChaCha20-Poly1305 messages: `nonce (24) || ciphertext || tag (16)`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::error::{random, Error, Result};

/// Key length.
pub const KEY_LEN: usize = 32;
/// Nonce length (XChaCha20).
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message has beyond its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

fn cipher(key: &[u8]) -> Result<XChaCha20Poly1305> {
    XChaCha20Poly1305::new_from_slice(key)
        .map_err(|_| Error::Invalid(format!("a key is {KEY_LEN} bytes, got {}", key.len())))
}

/// Seals `plaintext` under `key` with a fresh random nonce, binding `ad`.
pub fn seal(key: &[u8], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    seal_with_nonce(key, &random::<NONCE_LEN>()?, ad, plaintext)
}

/// `seal` with a given nonce: for known-answer tests only; a nonce must never repeat
/// under one key.
pub fn seal_with_nonce(key: &[u8], nonce: &[u8], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    if nonce.len() != NONCE_LEN {
        return Err(Error::Invalid(format!(
            "a nonce is {NONCE_LEN} bytes, got {}",
            nonce.len()
        )));
    }
    let ct = cipher(key)?
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .map_err(|_| Error::Invalid("message too long to seal".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed message; `Error::Authentication` when the key, `ad` or any byte is
/// not what sealed it.
pub fn open(key: &[u8], ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return Err(Error::Authentication(format!(
            "{} bytes are too short for a sealed message ({OVERHEAD} at least)",
            sealed.len()
        )));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher(key)?
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .map_err(|_| Error::Authentication("authentication failed (wrong key, or the bytes were changed)".into()))
}
