//! A manifest's own checksum (manifest format 4, docs/FORMAT.md "Manifest format 4").
//!
//! Pieces and block maps carry checksums the catalog and the manifest record; the manifest
//! itself had none, so in a plain repository a changed digit (a file's mode, mtime, owner,
//! a link's target) still parsed, passed every verification level and was restored as
//! changed. Format 4 writes the BLAKE3 of the document as its first key,
//! `{"checksum":"<64 hex>",...`, computed over the document with those 64 digits as `0`s:
//! found and checked at a fixed offset, with no JSON canonical form to agree on.

/// How a format-4 document begins; the 64 hex digits follow.
pub const PREFIX: &[u8] = br#"{"checksum":""#;
const HEX: usize = 64;
const ZEROS: [u8; HEX] = [b'0'; HEX];

/// What a document says of its checksum.
#[derive(Debug, PartialEq, Eq)]
pub enum Sum {
    /// It does not begin with one (formats 1 to 3).
    Absent,
    /// It begins with one, and its bytes have that BLAKE3 (`sum`).
    Matches { sum: String },
    /// It begins with one that is not the BLAKE3 of its bytes: `stored` as written
    /// (lossy text of whatever stands there), `computed` of the bytes as they are.
    Differs { stored: String, computed: String },
}

fn digest(doc: &[u8]) -> String {
    // The digits' place counts as zeros: the same bytes the writer hashed.
    let mut h = blake3::Hasher::new();
    h.update(&doc[..PREFIX.len()]);
    h.update(&ZEROS);
    h.update(&doc[PREFIX.len() + HEX..]);
    h.finalize().to_hex().to_string()
}

/// `doc` (a JSON object's text, starting with `{`) with its checksum as the first key;
/// None when `doc` does not start with `{`.
pub fn seal(doc: &[u8]) -> Option<Vec<u8>> {
    let rest = doc.strip_prefix(b"{")?;
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(doc.len() + HEAD.len() + 1);
    out.extend_from_slice(HEAD);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    finish(&mut out);
    Some(out)
}

/// How a writer starts a document it seals as it writes it: the key with its digits as
/// `0`s, then the other keys (`,` first, if any), then `finish`.
pub const HEAD: &[u8] = br#"{"checksum":"0000000000000000000000000000000000000000000000000000000000000000""#;

/// Writes the checksum of `doc` (begun with `HEAD`) into its place.
pub fn finish(doc: &mut [u8]) {
    debug_assert!(doc.starts_with(HEAD));
    if doc.len() >= HEAD.len() {
        let sum = digest(doc);
        doc[PREFIX.len()..PREFIX.len() + HEX].copy_from_slice(sum.as_bytes());
    }
}

/// Whether `doc` begins with a checksum, and whether its bytes match it.
pub fn check(doc: &[u8]) -> Sum {
    if !doc.starts_with(PREFIX) {
        return Sum::Absent;
    }
    let end = PREFIX.len() + HEX;
    let stored = doc.get(PREFIX.len()..end.min(doc.len())).unwrap_or_default();
    let well_formed = stored.len() == HEX
        && stored.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        && doc.get(end) == Some(&b'"');
    if !well_formed {
        return Sum::Differs {
            stored: String::from_utf8_lossy(stored).into_owned(),
            computed: String::new(),
        };
    }
    let computed = digest(doc);
    if computed.as_bytes() == stored {
        Sum::Matches { sum: computed }
    } else {
        Sum::Differs {
            stored: String::from_utf8_lossy(stored).into_owned(),
            computed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_document_checks_and_reads_as_the_same_object_with_one_more_key() {
        for doc in [&b"{\"a\":1,\"b\":[2]}\n"[..], b"{}\n", b"{ }", b"{\"files\":[]}"] {
            let sealed = seal(doc).unwrap();
            assert!(sealed.starts_with(PREFIX));
            let Sum::Matches { sum } = check(&sealed) else {
                panic!("{}", String::from_utf8_lossy(&sealed));
            };
            assert_eq!(sum.as_bytes(), &sealed[PREFIX.len()..PREFIX.len() + HEX]);
            let tail = &sealed[PREFIX.len() + HEX + 1..];
            let tail = tail.strip_prefix(b",").unwrap_or(tail);
            assert_eq!(tail, &doc[1..]);
        }
        assert_eq!(check(b"{\"a\":1}"), Sum::Absent);
        assert_eq!(seal(b"[1]"), None);
        assert_eq!(seal(b""), None);
    }

    #[test]
    fn head_is_the_prefix_and_zeros() {
        assert_eq!(HEAD.len(), PREFIX.len() + HEX + 1);
        assert!(HEAD.starts_with(PREFIX) && HEAD[PREFIX.len()..PREFIX.len() + HEX] == ZEROS);
    }

    #[test]
    fn every_changed_byte_differs() {
        let sealed = seal(b"{\"format\":4,\"files\":[{\"path\":\"a\",\"mode\":420}]}\n").unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut d = sealed.clone();
                d[i] ^= 1 << bit;
                // A change inside the prefix makes it no checksum at all: the reader
                // then requires one by the format number (manifest.py).
                if i < PREFIX.len() {
                    assert_eq!(check(&d), Sum::Absent, "byte {i} bit {bit}");
                } else {
                    assert!(matches!(check(&d), Sum::Differs { .. }), "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn a_cut_or_malformed_checksum_differs_without_reading_past_the_end() {
        let sealed = seal(b"{\"a\":1}").unwrap();
        for n in PREFIX.len()..sealed.len() {
            assert!(matches!(check(&sealed[..n]), Sum::Differs { .. }), "cut at {n}");
        }
        let mut upper = sealed.clone();
        upper[PREFIX.len()..PREFIX.len() + HEX].make_ascii_uppercase();
        if upper != sealed {
            assert!(matches!(check(&upper), Sum::Differs { .. }));
        }
    }
}
