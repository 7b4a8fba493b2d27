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
    let s = k.seal(32, 10, 0, b"d", b"0123456789").unwrap();
    assert_eq!(s.len(), 10 + OVERHEAD);
    assert_eq!(k.open(32, 10, 0, b"d", &s).unwrap(), b"0123456789");
    // Without FLAG_BOUND (blocks sealed before it) the digest is not in the tag.
    assert_eq!(k.open(32, 10, 0, b"other", &s).unwrap(), b"0123456789");
    assert!(k.open(33, 10, 0, b"d", &s).is_err());
    assert!(k.open(32, 11, 0, b"d", &s).is_err());
    assert!(k.open(32, 10, 1, b"d", &s).is_err());
    assert!(k.for_piece("other/data.piece").open(32, 10, 0, b"d", &s).is_err());
    assert_eq!(
        k.digest(b"abc"),
        blake3::keyed_hash(&[2; 32], b"abc").as_bytes().to_vec()
    );
}

/// The GCM specification's (McGrew and Viega) test case 16: AES-256 with associated data.
#[test]
fn aes256gcm_spec_vector() {
    let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
        .try_into()
        .unwrap();
    let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
    let pt = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    let ad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let ct = hex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
    let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");
    assert_eq!(aead_gcm::gcm_raw(&key, &nonce, &ad, &pt), [ct, tag].concat());
}

/// The long-nonce construction is GCM under `BLAKE3-keyed(root, nonce)` with the
/// nonce's last 12 bytes, written out here with the two primitives.
#[test]
fn aes256gcm_long_nonce_is_gcm_under_the_message_key() {
    let root = [9u8; 32];
    for (i, len) in [0usize, 1, 15, 16, 17, 4096, 8192].into_iter().enumerate() {
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|j| (j * 7 + i) as u8);
        let pt: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
        let sealed = aead_gcm::seal_with_nonce(&root, &nonce, b"ad", &pt).unwrap();
        let sub = *blake3::keyed_hash(&root, &nonce).as_bytes();
        let gcm_nonce: [u8; 12] = nonce[12..].try_into().unwrap();
        assert_eq!(&sealed[..NONCE_LEN], &nonce[..]);
        assert_eq!(
            &sealed[NONCE_LEN..],
            &aead_gcm::gcm_raw(&sub, &gcm_nonce, b"ad", &pt)[..]
        );
        assert_eq!(aead_gcm::open_owned(&root, b"ad", sealed.clone()).unwrap(), pt);
        // Every flipped bit (nonce, ciphertext or tag) fails the tag.
        for bit in (0..sealed.len() * 8).step_by(13) {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(
                aead_gcm::open_owned(&root, b"ad", bad),
                Err(Error::Authentication(_))
            ));
        }
        assert!(aead_gcm::open_owned(&[8u8; 32], b"ad", sealed.clone()).is_err());
        assert!(aead_gcm::open_owned(&root, b"other", sealed).is_err());
    }
    assert!(matches!(
        aead_gcm::open_owned(&root, b"", vec![0u8; OVERHEAD - 1]),
        Err(Error::Authentication(_))
    ));
    // Random nonces: two seals of the same message differ.
    assert_ne!(
        aead_gcm::seal(&root, b"", b"same").unwrap(),
        aead_gcm::seal(&root, b"", b"same").unwrap()
    );
}

#[test]
fn block_cipher_follows_the_flags() {
    use crate::format::{FLAG_BOUND, FLAG_GCM, FLAG_SEALED, FLAG_ZSTD};
    let label = "20260101T000000000000Z-00000000/data.piece";
    let old = BlockKey::new([1; 32], [2; 32], label);
    let new = BlockKey::new([1; 32], [2; 32], label).sealing_with(Cipher::Aes256Gcm);
    assert_eq!(old.seal_flags(), FLAG_SEALED | FLAG_BOUND);
    assert_eq!(new.seal_flags(), FLAG_SEALED | FLAG_GCM | FLAG_BOUND);
    assert_eq!(new.for_piece("x/y").seal_flags(), FLAG_SEALED | FLAG_GCM | FLAG_BOUND);
    let f = FLAG_SEALED | FLAG_GCM | FLAG_ZSTD;
    let s = new.seal(64, 100, f, b"", b"stored bytes").unwrap();
    assert_eq!(s.len(), 12 + OVERHEAD);
    // Either key opens either cipher: the block's flags choose, never the key's setting.
    assert_eq!(old.open(64, 100, f, b"", &s).unwrap(), b"stored bytes");
    assert_eq!(new.open(64, 100, f, b"", &s).unwrap(), b"stored bytes");
    // Claiming the other cipher, another place or another piece fails the tag.
    assert!(new.open(64, 100, f & !FLAG_GCM, b"", &s).is_err());
    assert!(new.open(65, 100, f, b"", &s).is_err());
    assert!(new.for_piece("other/data.piece").open(64, 100, f, b"", &s).is_err());
    let x = old.seal(64, 100, FLAG_SEALED, b"", b"stored bytes").unwrap();
    assert_eq!(new.open(64, 100, FLAG_SEALED, b"", &x).unwrap(), b"stored bytes");
    assert!(new.open(64, 100, FLAG_SEALED | FLAG_GCM, b"", &x).is_err());
    // The two ciphers never use the same key.
    assert_ne!(&x[NONCE_LEN..], &s[NONCE_LEN..]);
    assert_eq!(Cipher::parse("aes-256-gcm").unwrap(), Cipher::Aes256Gcm);
    assert_eq!(
        Cipher::parse(Cipher::XChaCha20Poly1305.name()).unwrap(),
        Cipher::XChaCha20Poly1305
    );
    assert!(matches!(Cipher::parse("aes-128-gcm"), Err(Error::Invalid(_))));
}

#[test]
fn gcm_flag_needs_the_sealed_flag() {
    use crate::format::block::{check_fields, Field};
    use crate::format::{FLAG_GCM, FLAG_SEALED, FLAG_ZSTD, SEALED_OVERHEAD};
    assert!(check_fields(512 + SEALED_OVERHEAD, 512, FLAG_SEALED | FLAG_GCM, 512).is_ok());
    assert!(check_fields(100 + SEALED_OVERHEAD, 512, FLAG_SEALED | FLAG_GCM | FLAG_ZSTD, 512).is_ok());
    let (field, msg) = check_fields(512, 512, FLAG_GCM, 512).unwrap_err();
    assert_eq!(field, Field::Flags);
    assert!(msg.contains("not sealed"), "{msg}");
    assert_eq!(
        check_fields(512 + SEALED_OVERHEAD, 512, 16 | FLAG_SEALED, 512)
            .unwrap_err()
            .0,
        Field::Flags
    );
}

/// `FLAG_BOUND` blocks (every block sealed since it): the keyed digest is in the tag, so
/// FULL's check of a block (`stored_mismatch_keyed`) that only opens it still reports a
/// block whose recorded digest is not the one it was sealed with, exactly as before.
#[test]
fn bound_digest_is_authenticated() {
    use crate::format::{stored_mismatch_keyed, FLAG_BOUND, FLAG_SEALED, FLAG_ZSTD};
    use crate::scan::algorithm::Algorithm;
    let label = "20260101T000000000000Z-00000000/data.piece";
    for cipher in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
        let k = BlockKey::new([1; 32], [2; 32], label).sealing_with(cipher);
        let raw = b"the plaintext of one block".repeat(40);
        let digest = k.digest(&raw);
        let f = k.seal_flags();
        assert_eq!(f & (FLAG_SEALED | FLAG_BOUND), FLAG_SEALED | FLAG_BOUND);
        let s = k.seal(4096, raw.len() as u32, f, &digest, &raw).unwrap();
        let check = |d: &[u8], stored: &[u8], flags: u8| {
            stored_mismatch_keyed(Algorithm::Blake3, Some(&k), 4096, stored, raw.len() as u32, flags, d)
        };
        assert_eq!(check(&digest, &s, f), None);
        // The recorded digest changed (an index entry or map record): the tag fails.
        let mut other = digest.clone();
        other[0] ^= 1;
        assert!(check(&other, &s, f).is_some_and(|m| m.contains("authentication failed")));
        // Not bound any more (the flag cleared): the flags are in the tag as well.
        assert!(check(&digest, &s, f & !FLAG_BOUND).is_some());
        // A block sealed (with the key) over bytes whose digest is not the bound one, as
        // a writer bug would: FULL opens it without re-hashing, so it is restore's own
        // re-hash that names it (restore.rs `check_block_keyed`).
        let wrong = k.seal(4096, raw.len() as u32, f, &other, &raw).unwrap();
        assert_eq!(check(&other, &wrong, f), None);
        let opened = crate::format::unseal_block(Some(&k), 4096, wrong, raw.len() as u32, f, &other);
        assert!(crate::format::check_block_keyed(Algorithm::Blake3, Some(&k), f, opened, &other).is_err());
        // A block sealed before FLAG_BOUND (the digest not in its tag) is still re-hashed.
        let old_f = f & !FLAG_BOUND;
        let old = k.seal(4096, raw.len() as u32, old_f, b"", &raw).unwrap();
        assert_eq!(check(&digest, &old, old_f), None);
        assert_eq!(
            check(&other, &old, old_f),
            Some(crate::scan::algorithm::to_hex(&digest))
        );
        // Every flipped bit of the stored block is found.
        for bit in (0..s.len() * 8).step_by(97) {
            let mut bad = s.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(check(&digest, &bad, f).is_some(), "bit {bit}");
        }
        // A sealed zstd frame is still decoded: one that does not hold raw_len bytes is
        // reported although its tag is good.
        let frame = zstd::bulk::compress(&raw[..100], 1).unwrap();
        let fz = f | FLAG_ZSTD;
        let sz = k.seal(4096, raw.len() as u32, fz, &digest, &frame).unwrap();
        assert!(check(&digest, &sz, fz).is_some_and(|m| m.contains("decompress") || m.contains("zstd")));
    }
}

/// `seal_into` (the backup's way: a given nonce, an output slice of its own) is `seal`:
/// the same message as the allocating form with the same nonce, opened by `open`, and
/// an output of the wrong length is refused instead of written short.
#[test]
fn seal_into_is_seal_and_checks_its_buffer() {
    use crate::format::{FLAG_BOUND, FLAG_GCM, FLAG_SEALED};
    let k = BlockKey::new([3u8; KEY_LEN], [4u8; KEY_LEN], "set/data.piece").sealing_with(Cipher::Aes256Gcm);
    let digest = k.digest(b"block bytes");
    for f in [k.seal_flags(), FLAG_SEALED | FLAG_BOUND] {
        let nonce = [9u8; NONCE_LEN];
        let mut out = vec![0xAAu8; 11 + OVERHEAD];
        k.seal_into(512, 11, f, &digest, b"block bytes", &nonce, &mut out)
            .unwrap();
        assert_eq!(&out[..NONCE_LEN], &nonce);
        assert_eq!(k.open(512, 11, f, &digest, &out).unwrap(), b"block bytes");
        assert!(k.open(512 + 1, 11, f, &digest, &out).is_err(), "its place is bound in");
        let gcm = f & FLAG_GCM != 0;
        let ad_free = if gcm {
            aead_gcm::seal_with_nonce(&[7u8; KEY_LEN], &nonce, b"ad", b"block bytes").unwrap()
        } else {
            seal_with_nonce(&[7u8; KEY_LEN], &nonce, b"ad", b"block bytes").unwrap()
        };
        let mut into = vec![0u8; 11 + OVERHEAD];
        if gcm {
            aead_gcm::seal_into(&[7u8; KEY_LEN], &nonce, b"ad", b"block bytes", &mut into).unwrap();
        } else {
            aead::seal_into(&[7u8; KEY_LEN], &nonce, b"ad", b"block bytes", &mut into).unwrap();
        }
        assert_eq!(into, ad_free);
        for wrong in [10 + OVERHEAD, 12 + OVERHEAD] {
            let mut short = vec![0u8; wrong];
            let err = k.seal_into(512, 11, f, &digest, b"block bytes", &nonce, &mut short);
            assert!(
                matches!(err, Err(Error::Invalid(ref m)) if m.contains("needs 51 bytes")),
                "{err:?}"
            );
        }
    }
}

/// `authenticate` (the tag alone, no decryption) says yes exactly when `open` (the
/// aes-gcm crate's decryption, the oracle) opens the message: random lengths around the
/// GHASH block edges and random associated data, every single flipped bit of a short
/// message and a sample of a long one, another key, other associated data, a cut message.
#[test]
fn authenticate_agrees_with_open() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let root: [u8; 32] = std::array::from_fn(|i| i as u8 * 3);
    for round in 0..48 {
        let len = match round % 4 {
            0 => (next() % 48) as usize,
            1 => 8192,
            2 => 16 * (next() % 9) as usize,
            _ => (next() % 9000) as usize,
        };
        let pt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let ad: Vec<u8> = (0..(next() % 200) as usize).map(|_| next() as u8).collect();
        let sealed = aead_gcm::seal(&root, &ad, &pt).unwrap();
        assert!(aead_gcm::authenticate(&root, &ad, &sealed).is_ok());
        assert_eq!(aead_gcm::open(&root, &ad, &sealed).unwrap(), pt);
        let step = if sealed.len() < 100 {
            1
        } else {
            1 + (next() % 61) as usize
        };
        for bit in (0..sealed.len() * 8).step_by(step) {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(aead_gcm::open(&root, &ad, &bad).is_err());
            assert!(
                matches!(aead_gcm::authenticate(&root, &ad, &bad), Err(Error::Authentication(_))),
                "round {round} bit {bit}"
            );
        }
        let mut other_ad = ad.clone();
        other_ad.push(0);
        assert!(aead_gcm::authenticate(&root, &other_ad, &sealed).is_err());
        assert!(aead_gcm::authenticate(&[1u8; 32], &ad, &sealed).is_err());
        assert!(aead_gcm::authenticate(&root, &ad, &sealed[..sealed.len() - 1]).is_err());
    }
    for short in 0..OVERHEAD {
        assert!(matches!(
            aead_gcm::authenticate(&root, b"", &vec![0u8; short]),
            Err(Error::Authentication(_))
        ));
    }
}

/// A bound uncompressed block checked by its tag alone reports what opening it did: a
/// good block passes; a sealed length that does not match `raw_len` is named with both.
#[test]
fn bound_plain_block_checked_by_its_tag() {
    use crate::format::stored_mismatch_keyed;
    use crate::scan::algorithm::Algorithm;
    let label = "20260101T000000000000Z-00000000/data.piece";
    for cipher in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
        let k = BlockKey::new([4; 32], [5; 32], label).sealing_with(cipher);
        let raw = vec![7u8; 4096];
        let digest = k.digest(&raw);
        let f = k.seal_flags();
        let s = k.seal(0, 4096, f, &digest, &raw).unwrap();
        assert_eq!(
            stored_mismatch_keyed(Algorithm::Blake3, Some(&k), 0, &s, 4096, f, &digest),
            None
        );
        // Sealed over fewer bytes than the recorded raw length (a writer bug): the tag is
        // good, the length is not.
        let short = k.seal(0, 4096, f, &digest, &raw[..4000]).unwrap();
        assert_eq!(
            stored_mismatch_keyed(Algorithm::Blake3, Some(&k), 0, &short, 4096, f, &digest).as_deref(),
            Some("4000 stored bytes for a 4096-byte block")
        );
        // Another place: the offset is in the tag.
        assert!(
            stored_mismatch_keyed(Algorithm::Blake3, Some(&k), 8192, &s, 4096, f, &digest)
                .is_some_and(|m| m.contains("authentication failed"))
        );
    }
}
