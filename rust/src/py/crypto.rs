//! Bindings for `crate::crypto`: the primitives `keys.py` builds key slots and envelopes
//! from, and the conversion of a Python `(cipher_key, mac_key)` pair into the engine's
//! `BlockKey`. Argon2id runs with the GIL released (it takes a deliberate second).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::EncryptionError;
use crate::crypto::{self, Argon2Params, BlockKey, Error};

/// A failed tag is `EncryptionError` (wrong key or changed bytes); a bad argument a
/// `ValueError`.
fn crypto_error(e: Error) -> PyErr {
    match e {
        Error::Authentication(m) => EncryptionError::new_err(m),
        Error::Invalid(m) => PyValueError::new_err(m),
        Error::Random(m) => pyo3::exceptions::PyOSError::new_err(m),
    }
}

fn key32(b: &[u8], what: &str) -> PyResult<[u8; 32]> {
    b.try_into()
        .map_err(|_| PyValueError::new_err(format!("{what} is 32 bytes, got {}", b.len())))
}

/// `(cipher_key, mac_key)` of an encrypted set's blocks, as Python passes them.
pub type KeyPair = (Vec<u8>, Vec<u8>);

/// The engine's block keys from `(cipher_key, mac_key)` (bound to a piece later).
pub fn block_key(pair: &(Vec<u8>, Vec<u8>)) -> PyResult<BlockKey> {
    Ok(BlockKey::new(
        key32(&pair.0, "a cipher key")?,
        key32(&pair.1, "a MAC key")?,
        "",
    ))
}

/// XChaCha20-Poly1305 (or `cipher="aes-256-gcm"`: `crypto::aead_gcm`, for the tests and
/// benches of the block cipher): `nonce || ciphertext || tag`; a random nonce unless one
/// is given (known-answer tests only). The GIL is released while it runs.
#[pyfunction]
#[pyo3(signature = (key, ad, plaintext, *, nonce=None, cipher="xchacha20-poly1305"))]
fn aead_seal<'py>(
    py: Python<'py>,
    key: &[u8],
    ad: &[u8],
    plaintext: &[u8],
    nonce: Option<&[u8]>,
    cipher: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let cipher = crypto::Cipher::parse(cipher).map_err(crypto_error)?;
    let out = py
        .detach(|| match (cipher, nonce) {
            (crypto::Cipher::XChaCha20Poly1305, Some(n)) => crypto::seal_with_nonce(key, n, ad, plaintext),
            (crypto::Cipher::XChaCha20Poly1305, None) => crypto::seal(key, ad, plaintext),
            (crypto::Cipher::Aes256Gcm, n) => {
                let root: [u8; crypto::KEY_LEN] = key
                    .try_into()
                    .map_err(|_| Error::Invalid(format!("a key is {} bytes, got {}", crypto::KEY_LEN, key.len())))?;
                match n {
                    Some(n) => crypto::aead_gcm::seal_with_nonce(
                        &root,
                        n.try_into().map_err(|_| {
                            Error::Invalid(format!("a nonce is {} bytes, got {}", crypto::NONCE_LEN, n.len()))
                        })?,
                        ad,
                        plaintext,
                    ),
                    None => crypto::aead_gcm::seal(&root, ad, plaintext),
                }
            }
        })
        .map_err(crypto_error)?;
    Ok(PyBytes::new(py, &out))
}

/// Opens what `aead_seal` made; `EncryptionError` when the key, `ad` or a byte differs.
#[pyfunction]
#[pyo3(signature = (key, ad, sealed, *, cipher="xchacha20-poly1305"))]
fn aead_open<'py>(
    py: Python<'py>,
    key: &[u8],
    ad: &[u8],
    sealed: &[u8],
    cipher: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let cipher = crypto::Cipher::parse(cipher).map_err(crypto_error)?;
    let out = py
        .detach(|| match cipher {
            crypto::Cipher::XChaCha20Poly1305 => crypto::open(key, ad, sealed),
            crypto::Cipher::Aes256Gcm => {
                let root: [u8; crypto::KEY_LEN] = key
                    .try_into()
                    .map_err(|_| Error::Invalid(format!("a key is {} bytes, got {}", crypto::KEY_LEN, key.len())))?;
                crypto::aead_gcm::open_owned(&root, ad, sealed.to_vec())
            }
        })
        .map_err(crypto_error)?;
    Ok(PyBytes::new(py, &out))
}

/// Argon2id (v0x13), 32-byte output; `secret` and `ad` are RFC 9106's K and X.
#[pyfunction]
#[pyo3(signature = (password, salt, *, m_kib, t, p, secret=None, ad=None))]
#[allow(clippy::too_many_arguments)]
fn argon2id<'py>(
    py: Python<'py>,
    password: Vec<u8>,
    salt: Vec<u8>,
    m_kib: u32,
    t: u32,
    p: u32,
    secret: Option<Vec<u8>>,
    ad: Option<Vec<u8>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let params = Argon2Params { m_kib, t, p };
    let (secret, ad) = (secret.unwrap_or_default(), ad.unwrap_or_default());
    let out = py
        .detach(|| crypto::argon2id(&password, &salt, params, &secret, &ad))
        .map_err(crypto_error)?;
    Ok(PyBytes::new(py, &out))
}

/// BLAKE3 derive_key: a 32-byte subkey of `material` for the purpose `context`.
#[pyfunction]
fn derive_key<'py>(py: Python<'py>, context: &str, material: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &crypto::derive_key(context, material))
}

/// Keyed BLAKE3 (32 bytes): an encrypted repository's block digest.
#[pyfunction]
fn keyed_digest<'py>(py: Python<'py>, key: &[u8], data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &crypto::keyed_digest(&key32(key, "a MAC key")?, data)))
}

/// The X25519 public key of a secret key.
#[pyfunction]
fn x25519_public<'py>(py: Python<'py>, secret: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &crypto::public_key(secret).map_err(crypto_error)?))
}

/// Wraps `payload` to an X25519 public key with an ephemeral key (age's model).
#[pyfunction]
fn x25519_wrap<'py>(py: Python<'py>, public: &[u8], payload: &[u8], ad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &crypto::wrap(public, payload, ad).map_err(crypto_error)?,
    ))
}

/// Unwraps what `x25519_wrap` made for the public key of `secret`.
#[pyfunction]
fn x25519_unwrap<'py>(py: Python<'py>, secret: &[u8], wrapped: &[u8], ad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &crypto::unwrap(secret, wrapped, ad).map_err(crypto_error)?,
    ))
}

/// Lets every block-map reader of this process open the sealed maps of a set whose map
/// key this is (`format::sealed_map`: found by the key id in the map's header).
#[pyfunction]
fn blockmap_read_key(key: &[u8]) -> PyResult<()> {
    crate::format::sealed_map::register_read_key(key32(key, "a block map key")?);
    Ok(())
}

/// Seals the block map of new set `set_id` under `key` from now on (`None`: stop); maps
/// of sets without a write key are written plain.
#[pyfunction]
#[pyo3(signature = (set_id, key))]
fn blockmap_write_key(set_id: &str, key: Option<&[u8]>) -> PyResult<()> {
    let key = key.map(|k| key32(k, "a block map key")).transpose()?;
    crate::format::sealed_map::set_write_key(set_id, key);
    Ok(())
}

/// Adds this domain's functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(aead_seal, m)?)?;
    m.add_function(wrap_pyfunction!(aead_open, m)?)?;
    m.add_function(wrap_pyfunction!(argon2id, m)?)?;
    m.add_function(wrap_pyfunction!(derive_key, m)?)?;
    m.add_function(wrap_pyfunction!(keyed_digest, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_public, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_wrap, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_unwrap, m)?)?;
    m.add_function(wrap_pyfunction!(blockmap_read_key, m)?)?;
    m.add_function(wrap_pyfunction!(blockmap_write_key, m)?)?;
    m.add("AEAD_OVERHEAD", crypto::OVERHEAD)?;
    Ok(())
}
