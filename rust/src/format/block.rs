//! One stored block: its length fields and flags, checked against the header, and its
//! decoding back to the raw bytes whose digest the index and the block map record.

use crate::scan::algorithm::{to_hex, Algorithm};

/// `flags` bit: the stored bytes are a zstd frame.
pub const FLAG_ZSTD: u8 = 1;
/// Every flag bit a reader understands; any other set bit is damage.
const KNOWN_FLAGS: u8 = FLAG_ZSTD;

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
    if raw_len == 0 || raw_len > block_size {
        return Err((
            Field::RawLen,
            format!("block length {raw_len} is not in 1..={block_size}"),
        ));
    }
    let ok = if flags & FLAG_ZSTD != 0 {
        stored_len > 0 && stored_len < raw_len
    } else {
        stored_len == raw_len
    };
    if !ok {
        let how = if flags & FLAG_ZSTD != 0 { "compressed" } else { "raw" };
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
