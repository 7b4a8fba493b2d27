//! XChaCha20-Poly1305 messages: `nonce (24) || ciphertext || tag (16)`, encrypted from
//! the plaintext into the message's buffer and decrypted from the message into the
//! plaintext's (no copy before or after the cipher).

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

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
    let mut out = vec![0u8; OVERHEAD + plaintext.len()];
    seal_into(key, nonce, ad, plaintext, &mut out)?;
    Ok(out)
}

/// Seals `plaintext` with `nonce` into `out` (exactly `OVERHEAD` bytes longer), reading
/// the plaintext where it lies (`aead_gcm::seal_into`). `nonce` must be fresh random bytes.
pub fn seal_into(key: &[u8], nonce: &[u8], ad: &[u8], plaintext: &[u8], out: &mut [u8]) -> Result<()> {
    let len = plaintext.len();
    if out.len() != len + OVERHEAD {
        return Err(Error::Invalid(format!(
            "internal: a sealed message of {len} bytes needs {} bytes, got {}",
            len + OVERHEAD,
            out.len()
        )));
    }
    let xnonce = XNonce::try_from(nonce).map_err(|_| Error::Invalid(format!("a nonce is {NONCE_LEN} bytes")))?;
    let (head, rest) = out.split_at_mut(NONCE_LEN);
    let (body, tail) = rest.split_at_mut(len);
    head.copy_from_slice(nonce);
    let io = InOutBuf::new(plaintext, body)
        .map_err(|_| Error::Invalid("internal: ciphertext buffer of the wrong length".into()))?;
    let tag = cipher(key)?
        .encrypt_inout_detached(&xnonce, ad, io)
        .map_err(|_| Error::Invalid("message too long to seal".into()))?;
    tail.copy_from_slice(&tag);
    Ok(())
}

/// Opens a sealed message; `Error::Authentication` when the key, `ad` or any byte is
/// not what sealed it.
/// The plaintext is decrypted from `sealed` into a buffer of its own (no copy of the
/// message first, no move of the plaintext over the nonce after; `aead_gcm::open`).
pub fn open(key: &[u8], ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let len = sealed.len();
    if len < OVERHEAD {
        return Err(Error::Authentication(format!(
            "{len} bytes are too short for a sealed message ({OVERHEAD} at least)"
        )));
    }
    let (Ok(nonce), Ok(tag)) = (
        XNonce::try_from(&sealed[..NONCE_LEN]),
        Tag::try_from(&sealed[len - TAG_LEN..]),
    ) else {
        return Err(Error::Authentication(
            "a sealed message's nonce or tag has the wrong length".into(),
        ));
    };
    let mut plain = vec![0u8; len - OVERHEAD];
    let io = InOutBuf::new(&sealed[NONCE_LEN..len - TAG_LEN], &mut plain)
        .map_err(|_| Error::Invalid("internal: plaintext buffer of the wrong length".into()))?;
    cipher(key)?
        .decrypt_inout_detached(&nonce, ad, io, &tag)
        .map_err(|_| Error::Authentication("authentication failed (wrong key, or the bytes were changed)".into()))?;
    Ok(plain)
}

/// `open` of a message read into a buffer of its own.
pub fn open_owned(key: &[u8], ad: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>> {
    open(key, ad, &sealed)
}
