//! How a stored block of an encrypted set is sealed (docs/FORMAT.md "Encryption"): its
//! stored bytes (after compression) are an AEAD message (XChaCha20-Poly1305, or
//! AES-256-GCM when the block's `FLAG_GCM` says so) whose associated data binds the piece's name (`<set id>/<piece file>`), the block's offset in the piece,
//! its raw length and its flags, so a block moved to another place, another piece or
//! another set fails its tag, and (`FLAG_BOUND`, every block sealed since) its keyed
//! digest, so a changed digest fails it too. Its digest is keyed BLAKE3 under the
//! repository's MAC key.

use super::aead::{self, KEY_LEN, NONCE_LEN, OVERHEAD};
use super::aead_gcm;
use super::error::{random, Error, Result};
use super::kdf::{derive_key, keyed_digest};
use crate::format::{FLAG_BOUND, FLAG_GCM, FLAG_SEALED};

/// The AEAD new blocks are sealed with; recorded per repository (`keys.py`'s keyring
/// `block_cipher`), and per block in its flags, so a reader never has to be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cipher {
    /// XChaCha20-Poly1305: every block of repositories created before `aes-256-gcm`.
    #[default]
    XChaCha20Poly1305,
    /// AES-256-GCM with a 192-bit nonce (`aead_gcm`), flag `FLAG_GCM`.
    Aes256Gcm,
}

impl Cipher {
    /// The name the keyring records.
    pub fn name(self) -> &'static str {
        match self {
            Self::XChaCha20Poly1305 => "xchacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The cipher a recorded name stands for.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "xchacha20-poly1305" => Ok(Self::XChaCha20Poly1305),
            "aes-256-gcm" => Ok(Self::Aes256Gcm),
            other => Err(Error::Invalid(format!(
                "unknown block cipher {other:?} (known: xchacha20-poly1305, aes-256-gcm)"
            ))),
        }
    }
}

/// `derive_key` context of the AES-256-GCM root key from a set's block key: the two
/// ciphers never share a key.
const GCM_ROOT_CONTEXT: &str = "rustybackup 2026-11 block aes-256-gcm root";

const AD_MAGIC: &[u8; 16] = b"rustybackup blk1";

/// The keys and name a piece's blocks are sealed with.
#[derive(Clone)]
pub struct BlockKey {
    cipher: [u8; KEY_LEN],
    gcm_root: [u8; KEY_LEN],
    mac: [u8; KEY_LEN],
    label: Vec<u8>,
    seal_with: Cipher,
}

impl std::fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "BlockKey({:?})", String::from_utf8_lossy(&self.label))
    }
}

impl BlockKey {
    /// Keys for the blocks of the piece named `label` (`<set id>/<piece file>`).
    /// New blocks are sealed with XChaCha20-Poly1305 unless `sealing_with` says otherwise.
    pub fn new(cipher: [u8; KEY_LEN], mac: [u8; KEY_LEN], label: &str) -> Self {
        Self {
            cipher,
            gcm_root: derive_key(GCM_ROOT_CONTEXT, &cipher),
            mac,
            label: label.as_bytes().to_vec(),
            seal_with: Cipher::default(),
        }
    }

    /// The same keys, sealing new blocks with `cipher`.
    pub fn sealing_with(mut self, cipher: Cipher) -> Self {
        self.seal_with = cipher;
        self
    }

    /// The flags a block sealed by this key gets on top of its zstd bit.
    pub fn seal_flags(&self) -> u8 {
        match self.seal_with {
            Cipher::XChaCha20Poly1305 => FLAG_SEALED | FLAG_BOUND,
            Cipher::Aes256Gcm => FLAG_SEALED | FLAG_GCM | FLAG_BOUND,
        }
    }

    /// The same keys for another piece.
    pub fn for_piece(&self, label: &str) -> Self {
        Self {
            label: label.as_bytes().to_vec(),
            ..self.clone()
        }
    }

    /// The associated data; `digest` is in it only when `flags` has `FLAG_BOUND` (blocks
    /// sealed before it bound their digest to nothing).
    fn ad(&self, offset: u64, raw_len: u32, flags: u8, digest: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(AD_MAGIC.len() + 8 + self.label.len() + 13 + 8 + digest.len());
        ad.extend_from_slice(AD_MAGIC);
        ad.extend_from_slice(&(self.label.len() as u64).to_le_bytes());
        ad.extend_from_slice(&self.label);
        ad.extend_from_slice(&offset.to_le_bytes());
        ad.extend_from_slice(&raw_len.to_le_bytes());
        ad.push(flags);
        if flags & FLAG_BOUND != 0 {
            ad.extend_from_slice(&(digest.len() as u64).to_le_bytes());
            ad.extend_from_slice(digest);
        }
        ad
    }

    /// Seals a block's stored bytes that will be written at `offset`, with the cipher
    /// `flags` name (`seal_flags`; they are bound into the tag), and, with `FLAG_BOUND`,
    /// the block's keyed `digest` (`digest()` of its raw bytes).
    pub fn seal(&self, offset: u64, raw_len: u32, flags: u8, digest: &[u8], stored: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; stored.len() + OVERHEAD];
        self.seal_into(
            offset,
            raw_len,
            flags,
            digest,
            stored,
            &random::<NONCE_LEN>()?,
            &mut out,
        )?;
        Ok(out)
    }

    /// `seal` into `out` (exactly `OVERHEAD` bytes longer than `stored`) with `nonce`,
    /// which must be fresh random bytes (`error::random_fill`): the backup's way, with
    /// the nonces of a chunk drawn at once and its blocks sealed into one buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn seal_into(
        &self,
        offset: u64,
        raw_len: u32,
        flags: u8,
        digest: &[u8],
        stored: &[u8],
        nonce: &[u8; NONCE_LEN],
        out: &mut [u8],
    ) -> Result<()> {
        let ad = self.ad(offset, raw_len, flags, digest);
        if flags & FLAG_GCM != 0 {
            aead_gcm::seal_into(&self.gcm_root, nonce, &ad, stored, out)
        } else {
            aead::seal_into(&self.cipher, nonce, &ad, stored, out)
        }
    }

    /// Opens a block's sealed bytes read at `offset`, recorded with `digest`.
    pub fn open(&self, offset: u64, raw_len: u32, flags: u8, digest: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let ad = self.ad(offset, raw_len, flags, digest);
        if flags & FLAG_GCM != 0 {
            aead_gcm::open(&self.gcm_root, &ad, sealed)
        } else {
            aead::open(&self.cipher, &ad, sealed)
        }
    }

    /// Whether `open` would succeed, without keeping the plaintext: FULL verification
    /// of a block whose digest is in its tag (`FLAG_BOUND`) and that needs no decoding.
    /// AES-256-GCM checks the tag alone (`aead_gcm::authenticate`, no decryption);
    /// XChaCha20-Poly1305 blocks are opened as before.
    pub fn authenticate(&self, offset: u64, raw_len: u32, flags: u8, digest: &[u8], sealed: &[u8]) -> Result<()> {
        let ad = self.ad(offset, raw_len, flags, digest);
        if flags & FLAG_GCM != 0 {
            aead_gcm::authenticate(&self.gcm_root, &ad, sealed)
        } else {
            aead::open(&self.cipher, &ad, sealed).map(drop)
        }
    }

    /// `open` in the buffer the sealed bytes were read into, with the cipher its flags name.
    pub fn open_owned(&self, offset: u64, raw_len: u32, flags: u8, digest: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>> {
        self.open(offset, raw_len, flags, digest, &sealed)
    }

    /// The keyed digest of a raw block.
    pub fn digest(&self, raw: &[u8]) -> Vec<u8> {
        keyed_digest(&self.mac, raw).to_vec()
    }
}

/// Each source's key bound to its piece's name (`piece_label`), as a restore opens them:
/// None where no key was given (that source's blocks must not be sealed).
pub fn keys_for_pieces<P: AsRef<std::path::Path>>(keys: &[Option<BlockKey>], pieces: &[P]) -> Vec<Option<BlockKey>> {
    pieces
        .iter()
        .enumerate()
        .map(
            |(i, p)| match (keys.get(i).and_then(Option::as_ref), piece_label(p.as_ref())) {
                (Some(k), Some(label)) => Some(k.for_piece(&label)),
                _ => None,
            },
        )
        .collect()
}

/// The name a piece's blocks are bound to: `<set id>/<piece file>`, the last two
/// components of its path, the same in `staging/` and in `sets/` (and in any copy that
/// keeps the layout).
pub fn piece_label(piece: &std::path::Path) -> Option<String> {
    let file = piece.file_name()?.to_str()?;
    let dir = piece.parent()?.file_name()?.to_str()?;
    Some(format!("{dir}/{file}"))
}
