//! How a stored block of an encrypted set is sealed (docs/FORMAT.md "Encryption"): its
//! stored bytes (after compression) are an XChaCha20-Poly1305 message whose associated
//! data binds the piece's name (`<set id>/<piece file>`), the block's offset in the piece,
//! its raw length and its flags, so a block moved to another place, another piece or
//! another set fails its tag. Its digest is keyed BLAKE3 under the repository's MAC key.

use super::aead::{self, KEY_LEN};
use super::error::Result;
use super::kdf::keyed_digest;

const AD_MAGIC: &[u8; 16] = b"rustybackup blk1";

/// The keys and name a piece's blocks are sealed with.
#[derive(Clone)]
pub struct BlockKey {
    cipher: [u8; KEY_LEN],
    mac: [u8; KEY_LEN],
    label: Vec<u8>,
}

impl std::fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "BlockKey({:?})", String::from_utf8_lossy(&self.label))
    }
}

impl BlockKey {
    /// Keys for the blocks of the piece named `label` (`<set id>/<piece file>`).
    pub fn new(cipher: [u8; KEY_LEN], mac: [u8; KEY_LEN], label: &str) -> Self {
        Self {
            cipher,
            mac,
            label: label.as_bytes().to_vec(),
        }
    }

    /// The same keys for another piece.
    pub fn for_piece(&self, label: &str) -> Self {
        Self::new(self.cipher, self.mac, label)
    }

    fn ad(&self, offset: u64, raw_len: u32, flags: u8) -> Vec<u8> {
        let mut ad = Vec::with_capacity(AD_MAGIC.len() + 8 + self.label.len() + 13);
        ad.extend_from_slice(AD_MAGIC);
        ad.extend_from_slice(&(self.label.len() as u64).to_le_bytes());
        ad.extend_from_slice(&self.label);
        ad.extend_from_slice(&offset.to_le_bytes());
        ad.extend_from_slice(&raw_len.to_le_bytes());
        ad.push(flags);
        ad
    }

    /// Seals a block's stored bytes that will be written at `offset`.
    pub fn seal(&self, offset: u64, raw_len: u32, flags: u8, stored: &[u8]) -> Result<Vec<u8>> {
        aead::seal(&self.cipher, &self.ad(offset, raw_len, flags), stored)
    }

    /// Opens a block's sealed bytes read at `offset`.
    pub fn open(&self, offset: u64, raw_len: u32, flags: u8, sealed: &[u8]) -> Result<Vec<u8>> {
        aead::open(&self.cipher, &self.ad(offset, raw_len, flags), sealed)
    }

    /// `open` in the buffer the sealed bytes were read into.
    pub fn open_owned(&self, offset: u64, raw_len: u32, flags: u8, sealed: Vec<u8>) -> Result<Vec<u8>> {
        aead::open_owned(&self.cipher, &self.ad(offset, raw_len, flags), sealed)
    }

    /// The keyed digest of a raw block.
    pub fn digest(&self, raw: &[u8]) -> Vec<u8> {
        keyed_digest(&self.mac, raw).to_vec()
    }
}

/// The name a piece's blocks are bound to: `<set id>/<piece file>`, the last two
/// components of its path, the same in `staging/` and in `sets/` (and in any copy that
/// keeps the layout).
pub fn piece_label(piece: &std::path::Path) -> Option<String> {
    let file = piece.file_name()?.to_str()?;
    let dir = piece.parent()?.file_name()?.to_str()?;
    Some(format!("{dir}/{file}"))
}
