//! Key derivation: Argon2id for passphrases, keyed BLAKE3 for subkeys and digests.

use argon2::{Algorithm, Argon2, Params, Version};

use super::aead::KEY_LEN;
use super::error::{Error, Result};

/// Argon2id cost parameters, stored in each passphrase slot so they can be raised for
/// new slots without breaking old ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// Largest memory cost a slot may ask for (4 GiB): a damaged or hostile slot must not
/// make an open allocate without bound.
const MAX_M_KIB: u32 = 4 << 20;
const MAX_T: u32 = 64;

/// The 32-byte Argon2id (version 0x13) key of `password` and `salt`, optionally keyed
/// with `secret` and bound to `ad` (RFC 9106's K and X; empty in slots).
pub fn argon2id(password: &[u8], salt: &[u8], params: Argon2Params, secret: &[u8], ad: &[u8]) -> Result<[u8; KEY_LEN]> {
    if params.m_kib > MAX_M_KIB || params.t > MAX_T {
        return Err(Error::Invalid(format!(
            "Argon2id parameters m={} KiB, t={} exceed the bounds (m <= {MAX_M_KIB}, t <= {MAX_T})",
            params.m_kib, params.t
        )));
    }
    let p = Params::new(params.m_kib, params.t, params.p, Some(KEY_LEN)).map_err(|e| {
        Error::Invalid(format!(
            "Argon2id parameters m={}, t={}, p={}: {e}",
            params.m_kib, params.t, params.p
        ))
    })?;
    let argon = if secret.is_empty() && ad.is_empty() {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
    } else {
        // argon2 0.5 takes the associated data through Params; the secret here.
        let p = argon2::ParamsBuilder::new()
            .m_cost(params.m_kib)
            .t_cost(params.t)
            .p_cost(params.p)
            .output_len(KEY_LEN)
            .data(argon2::AssociatedData::new(ad).map_err(|e| Error::Invalid(format!("Argon2id data: {e}")))?)
            .build()
            .map_err(|e| Error::Invalid(format!("Argon2id parameters: {e}")))?;
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, p)
            .map_err(|e| Error::Invalid(format!("Argon2id secret: {e}")))?
    };
    let mut out = [0u8; KEY_LEN];
    argon
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::Invalid(format!("Argon2id: {e}")))?;
    Ok(out)
}

/// A subkey of `material` for one purpose (BLAKE3's derive_key mode: `context` is a
/// fixed, unique string per purpose).
pub fn derive_key(context: &str, material: &[u8]) -> [u8; KEY_LEN] {
    blake3::derive_key(context, material)
}

/// Keyed BLAKE3 of `data`: block digests of an encrypted repository, so equal plaintext
/// cannot be recognised by anyone without the MAC key.
pub fn keyed_digest(key: &[u8; KEY_LEN], data: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(key, data).as_bytes()
}
