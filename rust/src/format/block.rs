//! One stored block: its length fields and flags, checked against the header, and its
//! decoding back to the raw bytes whose digest the index and the block map record.

use crate::scan::algorithm::{to_hex, Algorithm};

/// `flags` bit: the stored bytes are a zstd frame.
pub const FLAG_ZSTD: u8 = 1;
/// `flags` bit: the stored bytes are sealed (`crate::crypto::block`): an
/// XChaCha20-Poly1305 message around what bit 0 describes, `SEALED_OVERHEAD` bytes
/// longer, and the digest is keyed BLAKE3 (docs/FORMAT.md "Encryption"). A build that
/// predates it refuses the bit as unknown, never misreads the block.
pub const FLAG_SEALED: u8 = 2;
/// `flags` bit, only with `FLAG_SEALED`: the seal is AES-256-GCM with a 192-bit nonce
/// (`crate::crypto::aead_gcm`), not XChaCha20-Poly1305; same layout and overhead. A
/// build that predates it refuses the bit as unknown.
pub const FLAG_GCM: u8 = 4;
/// `flags` bit, only with `FLAG_SEALED`: the seal's associated data also binds the
/// block's keyed digest (the one its index entry and block-map record carry), so the tag
/// authenticates that digest too and FULL verification need not re-hash the plaintext
/// (`stored_mismatch_keyed`). Every block sealed since it has it; a build that predates
/// it refuses the bit as unknown.
pub const FLAG_BOUND: u8 = 8;
/// Bytes a sealed block has beyond the bytes it seals (nonce and tag).
pub const SEALED_OVERHEAD: u32 = crate::crypto::OVERHEAD as u32;
/// Every flag bit a reader understands; any other set bit is damage.
const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_SEALED | FLAG_GCM | FLAG_BOUND;

/// The field of an index entry or block-map record that `check_fields` found wrong (its
/// offset inside the entry or record depends on the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Bytes on disk.
    StoredLen,
    /// Bytes of the raw block.
    RawLen,
    /// The flag bits.
    Flags,
}

/// Checks the length fields and flags of a block of a set with `block_size`-byte blocks.
/// A block is never empty, never longer than a block, stored raw at its own length, or
/// compressed to fewer bytes (the writer keeps a block raw when zstd does not shrink it).
pub fn check_fields(stored_len: u32, raw_len: u32, flags: u8, block_size: u32) -> Result<(), (Field, String)> {
    if flags & !KNOWN_FLAGS != 0 {
        return Err((Field::Flags, format!("unknown block flags {flags:#04x}")));
    }
    if flags & (FLAG_GCM | FLAG_BOUND) != 0 && flags & FLAG_SEALED == 0 {
        return Err((
            Field::Flags,
            format!("block flags {flags:#04x} name a cipher or seal binding (bits 2, 3) on a block that is not sealed"),
        ));
    }
    if raw_len == 0 || raw_len > block_size {
        return Err((
            Field::RawLen,
            format!("block length {raw_len} is not in 1..={block_size}"),
        ));
    }
    // A sealed block's rule is that of the bytes it seals.
    let sealed = flags & FLAG_SEALED != 0;
    let inner = if sealed {
        stored_len.checked_sub(SEALED_OVERHEAD)
    } else {
        Some(stored_len)
    };
    let ok = match inner {
        Some(inner) if flags & FLAG_ZSTD != 0 => inner > 0 && inner < raw_len,
        Some(inner) => inner == raw_len,
        None => false,
    };
    if !ok {
        let how = match (sealed, flags & FLAG_ZSTD != 0) {
            (false, true) => "compressed",
            (false, false) => "raw",
            (true, true) => "sealed compressed",
            (true, false) => "sealed raw",
        };
        return Err((
            Field::StoredLen,
            format!("{stored_len} stored bytes for a {how} {raw_len}-byte block"),
        ));
    }
    Ok(())
}

/// Turns stored bytes back into the raw block (no copy when it is stored raw). Err says
/// why they do not decode.
pub fn decode_block(stored: Vec<u8>, raw_len: u32, flags: u8) -> Result<Vec<u8>, String> {
    if flags & FLAG_SEALED != 0 {
        return Err("the block is encrypted and no key was given".into());
    }
    if flags & FLAG_ZSTD != 0 {
        return decompress(&stored, raw_len);
    }
    if stored.len() != raw_len as usize {
        return Err(format!("{} stored bytes for a {}-byte block", stored.len(), raw_len));
    }
    Ok(stored)
}

/// Decompresses a zstd frame that must hold exactly `raw_len` bytes; never allocates
/// more than that (at most a block), whatever the frame claims.
fn decompress(stored: &[u8], raw_len: u32) -> Result<Vec<u8>, String> {
    let raw = zstd::bulk::decompress(stored, raw_len as usize).map_err(|e| format!("zstd: {e}"))?;
    if raw.len() != raw_len as usize {
        return Err(format!("decompressed to {} bytes instead of {}", raw.len(), raw_len));
    }
    Ok(raw)
}

/// Checks a decoded block against its recorded digest; Err is the actual digest (hex) or
/// why the block did not decode.
pub fn check_block(alg: Algorithm, raw: Result<Vec<u8>, String>, digest: &[u8]) -> Result<Vec<u8>, String> {
    let data = raw?;
    let actual = alg.digest(&data);
    if actual == digest {
        Ok(data)
    } else {
        Err(to_hex(&actual))
    }
}

/// Decodes and hashes stored bytes held in memory (a verifier's chunk); None when they
/// match `digest`, else the actual digest (hex) or why they do not decode.
pub fn stored_mismatch(alg: Algorithm, stored: &[u8], raw_len: u32, flags: u8, digest: &[u8]) -> Option<String> {
    if flags & FLAG_SEALED != 0 {
        return Some("the block is encrypted and no key was given".into());
    }
    let actual = if flags & FLAG_ZSTD != 0 {
        match decompress(stored, raw_len) {
            Ok(raw) => alg.digest(&raw),
            Err(reason) => return Some(reason),
        }
    } else if stored.len() != raw_len as usize {
        return Some(format!("{} stored bytes for a {}-byte block", stored.len(), raw_len));
    } else {
        alg.digest(stored)
    };
    (actual != digest).then(|| to_hex(&actual))
}

/// Opens a sealed block read at `offset` with `key` and decodes it; without the sealed
/// flag this is `decode_block`. Err says why the block cannot be had (a failed tag is
/// reported like a corrupt block: wrong key or changed bytes).
pub fn unseal_block(
    key: Option<&crate::crypto::BlockKey>,
    offset: u64,
    stored: Vec<u8>,
    raw_len: u32,
    flags: u8,
    digest: &[u8],
) -> Result<Vec<u8>, String> {
    if flags & FLAG_SEALED == 0 {
        return decode_block(stored, raw_len, flags);
    }
    let Some(key) = key else {
        return Err("the block is encrypted and no key was given".into());
    };
    let inner = key
        .open_owned(offset, raw_len, flags, digest, stored)
        .map_err(|e| e.to_string())?;
    decode_block(inner, raw_len, flags & FLAG_ZSTD)
}

/// `check_block` for a block of a piece sealed with `key`: a sealed block's digest is
/// keyed.
pub fn check_block_keyed(
    alg: Algorithm,
    key: Option<&crate::crypto::BlockKey>,
    flags: u8,
    raw: Result<Vec<u8>, String>,
    digest: &[u8],
) -> Result<Vec<u8>, String> {
    match key {
        Some(k) if flags & FLAG_SEALED != 0 => {
            let data = raw?;
            let actual = k.digest(&data);
            if actual == digest {
                Ok(data)
            } else {
                Err(to_hex(&actual))
            }
        }
        _ => check_block(alg, raw, digest),
    }
}

/// `stored_mismatch` with the piece's key: opens, decodes and checks a sealed block.
pub fn stored_mismatch_keyed(
    alg: Algorithm,
    key: Option<&crate::crypto::BlockKey>,
    offset: u64,
    stored: &[u8],
    raw_len: u32,
    flags: u8,
    digest: &[u8],
) -> Option<String> {
    if flags & FLAG_SEALED == 0 || key.is_none() {
        return stored_mismatch(alg, stored, raw_len, flags, digest);
    }
    if let (Some(k), FLAG_BOUND) = (key, flags & (FLAG_BOUND | FLAG_ZSTD)) {
        // Bound and stored uncompressed: decoding would only compare the length, which
        // the sealed length gives, so the tag is checked without decrypting (see below
        // for why the plaintext is not re-hashed).
        if let Err(e) = k.authenticate(offset, raw_len, flags, digest, stored) {
            return Some(e.to_string());
        }
        let inner = stored.len().saturating_sub(SEALED_OVERHEAD as usize);
        return (inner != raw_len as usize).then(|| format!("{inner} stored bytes for a {raw_len}-byte block"));
    }
    // Opened from the verifier's chunk straight into the plaintext's buffer (no copy).
    let raw = match key {
        Some(k) => k
            .open(offset, raw_len, flags, digest, stored)
            .map_err(|e| e.to_string())
            .and_then(|inner| decode_block(inner, raw_len, flags & FLAG_ZSTD)),
        None => Err("the block is encrypted and no key was given".into()),
    };
    if flags & FLAG_BOUND != 0 {
        // The tag just checked authenticates the recorded digest with the bytes (it is in
        // the associated data), under a key only our writer holds, and that writer sealed
        // the digest it had computed over these very plaintext bytes: re-hashing them
        // would check the writer again, not the storage. Any changed byte of the block,
        // of its digest, offset, length or flags fails the tag and is reported here,
        // block-exact, like a corrupt block. (Restore still re-hashes what it writes.)
        return raw.err();
    }
    check_block_keyed(alg, key, flags, raw, digest).err()
}
