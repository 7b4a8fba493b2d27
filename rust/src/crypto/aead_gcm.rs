//! AES-256-GCM with a 192-bit random nonce (cipher `aes-256-gcm`, the sealed blocks of
//! repositories created since it; docs/FORMAT.md "Encryption"). Messages are laid out
//! like XChaCha20-Poly1305's, `nonce (24) || ciphertext || tag (16)`, so a block's length
//! rule does not depend on its cipher.
//!
//! Why the long nonce: GCM's own nonce is 96 bits, and random 96-bit nonces under one
//! key are safe only up to about 2^32 messages (NIST SP 800-38D), a count a large set
//! or a long-lived key could approach and that no single writer can enforce across
//! hosts and resumed passes. Each message therefore gets its own AES key,
//! `BLAKE3-keyed(root, nonce)` (like XChaCha's HChaCha step and C2SP's XAES-256-GCM),
//! and the nonce's last 12 bytes are GCM's nonce: one key seals one message, and a
//! repeat needs the same random 192-bit nonce twice (about 2^-96 after 2^48 messages).
//! The derivation costs one BLAKE3 compression and an AES key schedule per block,
//! ~0.2 us against ~8 us to seal 8 KiB (benches/README.md "Encryption").

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};

type Nonce = aes_gcm::aead::Nonce<Aes256Gcm>;

use super::aead::{KEY_LEN, NONCE_LEN, OVERHEAD, TAG_LEN};
use super::error::{random, Error, Result};

/// GCM's own nonce: the last 12 bytes of the message's nonce.
const GCM_NONCE_LEN: usize = 12;

/// The one-message AES-256 key of `nonce` under `root`.
fn message_cipher(root: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&(*blake3::keyed_hash(root, nonce).as_bytes()).into())
}

/// GCM's nonce of a message: the last 12 bytes of its 24.
fn gcm_nonce(nonce: &[u8; NONCE_LEN]) -> Nonce {
    let mut n = [0u8; GCM_NONCE_LEN];
    n.copy_from_slice(&nonce[NONCE_LEN - GCM_NONCE_LEN..]);
    n.into()
}

/// Seals `plaintext` under `root` with a fresh random nonce, binding `ad`.
pub fn seal(root: &[u8; KEY_LEN], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    seal_with_nonce(root, &random::<NONCE_LEN>()?, ad, plaintext)
}

/// `seal` with a given nonce: for known-answer tests only; a nonce must never repeat
/// under one key.
pub fn seal_with_nonce(root: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; OVERHEAD + plaintext.len()];
    seal_into(root, nonce, ad, plaintext, &mut out)?;
    Ok(out)
}

/// Seals `plaintext` with `nonce` into `out` (exactly `OVERHEAD` bytes longer). The
/// cipher reads the plaintext where it lies and writes the ciphertext into `out`, so a
/// backup seals a block straight into its chunk's output buffer: no copy of the block
/// and no allocation per block (benches/README.md "Encryption"). `nonce` must be fresh
/// random bytes (`error::random_fill`).
pub fn seal_into(
    root: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<()> {
    let len = plaintext.len();
    if out.len() != len + OVERHEAD {
        return Err(Error::Invalid(format!(
            "internal: a sealed message of {len} bytes needs {} bytes, got {}",
            len + OVERHEAD,
            out.len()
        )));
    }
    let (head, rest) = out.split_at_mut(NONCE_LEN);
    let (body, tail) = rest.split_at_mut(len);
    head.copy_from_slice(nonce);
    let io = InOutBuf::new(plaintext, body)
        .map_err(|_| Error::Invalid("internal: ciphertext buffer of the wrong length".into()))?;
    let tag = message_cipher(root, nonce)
        .encrypt_inout_detached(&gcm_nonce(nonce), ad, io)
        .map_err(|_| Error::Invalid("message too long to seal".into()))?;
    tail.copy_from_slice(&tag);
    Ok(())
}

/// Opens a sealed message read into `sealed`; `Error::Authentication` when the key, `ad`
/// or any byte is not what sealed it.
pub fn open_owned(root: &[u8; KEY_LEN], ad: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>> {
    open(root, ad, &sealed)
}

/// Opens a sealed message into a new buffer. Decrypting from `sealed` into it costs no
/// more than decrypting in place and saves the two copies an in-place open needs (the
/// message into a buffer of its own, the plaintext down over the nonce): a fifth of FULL
/// verification's time per block besides the cipher (benches/README.md "Encryption").
pub fn open(root: &[u8; KEY_LEN], ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let (nonce, body, tag) = parts(sealed)?;
    let mut plain = vec![0u8; body.len()];
    let io = InOutBuf::new(body, &mut plain)
        .map_err(|_| Error::Invalid("internal: plaintext buffer of the wrong length".into()))?;
    message_cipher(root, &nonce)
        .decrypt_inout_detached(&gcm_nonce(&nonce), ad, io, &Tag::from(tag))
        .map_err(|_| refused())?;
    Ok(plain)
}

/// A sealed message's nonce, ciphertext and tag, once its length allows them.
fn parts(sealed: &[u8]) -> Result<([u8; NONCE_LEN], &[u8], [u8; TAG_LEN])> {
    let len = sealed.len();
    if len < OVERHEAD {
        return Err(Error::Authentication(format!(
            "{len} bytes are too short for a sealed message ({OVERHEAD} at least)"
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&sealed[len - TAG_LEN..]);
    Ok((nonce, &sealed[NONCE_LEN..len - TAG_LEN], tag))
}

fn refused() -> Error {
    Error::Authentication("authentication failed (wrong key, or the bytes were changed)".into())
}

/// Checks a sealed message's tag without decrypting it: GHASH over `ad` and the
/// ciphertext and one AES block for the tag's mask, as `open` computes them before it
/// decrypts (NIST SP 800-38D, 7.2), so `Ok` here is exactly when `open` would succeed.
/// FULL verification of a block whose digest is bound into its tag needs only this: the
/// plaintext would be thrown away, and decrypting it (the CTR keystream) is half of
/// `open`'s cost (benches/README.md "Encryption at rest").
pub fn authenticate(root: &[u8; KEY_LEN], ad: &[u8], sealed: &[u8]) -> Result<()> {
    use aes_gcm::aes::cipher::{BlockCipherEncrypt, KeyInit as _};
    use aes_gcm::aes::Aes256;
    use ghash::universal_hash::UniversalHash;
    use ghash::GHash;

    let (nonce, body, tag) = parts(sealed)?;
    let aes = Aes256::new(&(*blake3::keyed_hash(root, &nonce).as_bytes()).into());
    let mut h = ghash::Block::default();
    aes.encrypt_block(&mut h);
    // J0 = IV || 0^31 || 1 for a 96-bit IV; its encryption masks the tag.
    let mut mask = ghash::Block::default();
    mask[..GCM_NONCE_LEN].copy_from_slice(&nonce[NONCE_LEN - GCM_NONCE_LEN..]);
    mask[15] = 1;
    aes.encrypt_block(&mut mask);
    let mut gh = GHash::new(&h);
    gh.update_padded(ad);
    gh.update_padded(body);
    let mut lens = ghash::Block::default();
    lens[..8].copy_from_slice(&((ad.len() as u64) * 8).to_be_bytes());
    lens[8..].copy_from_slice(&((body.len() as u64) * 8).to_be_bytes());
    gh.update(&[lens]);
    let expected = gh.finalize();
    // Every byte compared whatever the first difference (no early exit on the tag).
    let diff = expected
        .iter()
        .zip(mask.iter())
        .zip(&tag)
        .fold(0u8, |acc, ((e, m), t)| acc | ((e ^ m) ^ t));
    if std::hint::black_box(diff) == 0 {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Plain AES-256-GCM with a 96-bit nonce (`ciphertext || tag`): the known-answer
/// tests check the primitive under the construction with it.
#[cfg(test)]
pub fn gcm_raw(key: &[u8; KEY_LEN], nonce: &[u8; GCM_NONCE_LEN], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = plaintext.to_vec();
    let tag = Aes256Gcm::new(&(*key).into())
        .encrypt_inout_detached(&(*nonce).into(), ad, out.as_mut_slice().into())
        .expect("a short test message seals");
    out.extend_from_slice(&tag);
    out
}
