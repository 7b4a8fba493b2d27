//! Known-answer tests of the wiring (published vectors) and round trips.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// draft-irtf-cfrg-xchacha-03, appendix A.3.1.
#[test]
fn xchacha20poly1305_draft_vector() {
    let key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce = hex("404142434445464748494a4b4c4d4e4f5051525354555657");
    let ad = hex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ct = hex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
         731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
         2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
         21f9664c97637da9768812f615c68b13b52e");
    let tag = hex("c0875924c1c7987947deafd8780acf49");
    let sealed = seal_with_nonce(&key, &nonce, &ad, pt).unwrap();
    assert_eq!(&sealed[..NONCE_LEN], &nonce[..]);
    assert_eq!(&sealed[NONCE_LEN..sealed.len() - TAG_LEN], &ct[..]);
    assert_eq!(&sealed[sealed.len() - TAG_LEN..], &tag[..]);
    assert_eq!(open(&key, &ad, &sealed).unwrap(), pt.to_vec());
    let mut bad = sealed.clone();
    bad[NONCE_LEN] ^= 1;
    assert!(matches!(open(&key, &ad, &bad), Err(Error::Authentication(_))));
    assert!(matches!(open(&key, b"other", &sealed), Err(Error::Authentication(_))));
}

/// RFC 9106 section 5.3 (Argon2id, version 0x13).
#[test]
fn argon2id_rfc9106_vector() {
    let out = argon2id(
        &[1u8; 32],
        &[2u8; 16],
        Argon2Params { m_kib: 32, t: 3, p: 4 },
        &[3u8; 8],
        &[4u8; 12],
    )
    .unwrap();
    assert_eq!(
        out.to_vec(),
        hex("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
    );
}

#[test]
fn argon2id_bounds_refused() {
    let huge = Argon2Params {
        m_kib: u32::MAX,
        t: 1,
        p: 1,
    };
    assert!(matches!(
        argon2id(b"x", &[0; 16], huge, &[], &[]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn wrap_round_trip_and_wrong_key() {
    let secret = [7u8; 32];
    let public = public_key(&secret).unwrap();
    let w = wrap(&public, b"set key bytes", b"ad").unwrap();
    assert_eq!(w.len(), 13 + WRAP_OVERHEAD);
    assert_eq!(unwrap(&secret, &w, b"ad").unwrap(), b"set key bytes");
    assert!(unwrap(&[8u8; 32], &w, b"ad").is_err());
    assert!(unwrap(&secret, &w, b"other").is_err());
    // A low-order public key (all zero) is refused rather than wrapping to nothing.
    assert!(matches!(wrap(&[0u8; 32], b"k", b""), Err(Error::Invalid(_))));
}

#[test]
fn block_ad_binds_place() {
    let k = BlockKey::new([1; 32], [2; 32], "20260101T000000000000Z-00000000/data.piece");
    let s = k.seal(32, 10, 0, b"0123456789").unwrap();
    assert_eq!(s.len(), 10 + OVERHEAD);
    assert_eq!(k.open(32, 10, 0, &s).unwrap(), b"0123456789");
    assert!(k.open(33, 10, 0, &s).is_err());
    assert!(k.open(32, 11, 0, &s).is_err());
    assert!(k.open(32, 10, 1, &s).is_err());
    assert!(k.for_piece("other/data.piece").open(32, 10, 0, &s).is_err());
    assert_eq!(
        k.digest(b"abc"),
        blake3::keyed_hash(&[2; 32], b"abc").as_bytes().to_vec()
    );
}
