//! Seconds per GiB of AES-256-GCM used as the backup uses it (crypto/aead_gcm.rs: a key
//! per 8 KiB message from `BLAKE3-keyed(root, nonce)`, GCM's nonce the last 12 bytes of
//! the 24), on `threads` threads over `mib` MiB held in memory, beside keyed BLAKE3 of
//! the same bytes (the digest every block gets anyway). Each line: the wall time, and
//! the CPU time of the process (all threads), per GiB.
//!
//! Variants of sealing, to show what the pass's shape costs beside the cipher:
//! - `seal, per-block Vec + getrandom`: the backup before bfc83d4 (the block copied into a
//!   Vec of its own and encrypted in place, its nonce from a system call);
//! - `seal into the chunk buffer`: the backup now (read where it lies, written into its
//!   slot of one buffer, a chunk's nonces from one call);
//! - `hash then seal` / `hash+seal fused`: keyed BLAKE3 of every block and the seal, as
//!   two passes over a 4 MiB chunk (the backup) or one per block.
//!
//! - `open` / `tag only`: FULL verification of a sealed block, decrypted (before) or its
//!   tag checked alone (a block whose digest is bound into its tag).
//!
//! Usage: cargo run --release -- [mib] [threads] [rounds]

use std::time::Instant;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};

const BS: usize = 8192;
const CHUNK: usize = 512; // blocks per 4 MiB chunk, as engine/backup.rs reads them
const OVERHEAD: usize = 40;
const AD: [u8; 120] = [1; 120]; // about a block's associated data (magic, label, place, digest)

thread_local! {
    /// Each thread's chunk output, reused as the backup reuses its seal buffer (a fresh
    /// 4 MiB allocation per chunk would time page faults, not the cipher).
    static OUT: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK * (BS + OVERHEAD)]);
}

fn process_cpu() -> f64 {
    // CLOCK_PROCESS_CPUTIME_ID: every thread of this process.
    let mut t = [0i64; 2];
    // SAFETY: clock_gettime writes one struct timespec (two i64 on x86_64 Linux) into `t`.
    unsafe { clock_gettime(2, t.as_mut_ptr()) };
    t[0] as f64 + t[1] as f64 * 1e-9
}
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut i64) -> i32;
}

fn message_cipher(root: &[u8; 32], nonce: &[u8; 24]) -> (Aes256Gcm, [u8; 12]) {
    let mut n = [0u8; 12];
    n.copy_from_slice(&nonce[12..]);
    (Aes256Gcm::new(&(*blake3::keyed_hash(root, nonce).as_bytes()).into()), n)
}

fn seal_vec(root: &[u8; 32], block: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    getrandom::getrandom(&mut nonce).expect("random");
    let mut out = Vec::with_capacity(block.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(block);
    let (c, n) = message_cipher(root, &nonce);
    let tag = c
        .encrypt_inout_detached(&n.into(), &AD, (&mut out[24..]).into())
        .expect("seal");
    out.extend_from_slice(&tag);
    out
}

fn seal_into(root: &[u8; 32], nonce: &[u8; 24], block: &[u8], out: &mut [u8]) {
    let (head, rest) = out.split_at_mut(24);
    let (body, tail) = rest.split_at_mut(block.len());
    head.copy_from_slice(nonce);
    let (c, n) = message_cipher(root, nonce);
    let io = InOutBuf::new(block, body).expect("lengths");
    tail.copy_from_slice(&c.encrypt_inout_detached(&n.into(), &AD, io).expect("seal"));
}

fn open_into(root: &[u8; 32], sealed: &[u8], plain: &mut Vec<u8>) {
    let len = sealed.len();
    let nonce: [u8; 24] = sealed[..24].try_into().expect("nonce");
    let tag: [u8; 16] = sealed[len - 16..].try_into().expect("tag");
    plain.clear();
    plain.resize(len - OVERHEAD, 0); // as aead_gcm::open: a buffer per block
    let (c, n) = message_cipher(root, &nonce);
    let io = InOutBuf::new(&sealed[24..len - 16], plain).expect("lengths");
    c.decrypt_inout_detached(&n.into(), &AD, io, &Tag::from(tag))
        .expect("authentic");
}

/// The tag of a sealed message checked without decrypting it, as crypto/aead_gcm.rs
/// `authenticate` does for FULL verification of a bound block: GHASH and one AES block.
fn tag_only(root: &[u8; 32], sealed: &[u8]) {
    use aes_gcm::aes::cipher::{BlockCipherEncrypt, KeyInit as _};
    use ghash::universal_hash::UniversalHash;
    let len = sealed.len();
    let nonce: [u8; 24] = sealed[..24].try_into().expect("nonce");
    let aes = aes_gcm::aes::Aes256::new(&(*blake3::keyed_hash(root, &nonce).as_bytes()).into());
    let mut h = ghash::Block::default();
    aes.encrypt_block(&mut h);
    let mut mask = ghash::Block::default();
    mask[..12].copy_from_slice(&nonce[12..]);
    mask[15] = 1;
    aes.encrypt_block(&mut mask);
    let mut gh = ghash::GHash::new(&h);
    gh.update_padded(&AD);
    gh.update_padded(&sealed[24..len - 16]);
    let mut lens = ghash::Block::default();
    lens[..8].copy_from_slice(&((AD.len() as u64) * 8).to_be_bytes());
    lens[8..].copy_from_slice(&(((len - OVERHEAD) as u64) * 8).to_be_bytes());
    gh.update(&[lens]);
    let t = gh.finalize();
    let ok = t.iter().zip(mask.iter()).zip(&sealed[len - 16..]).all(|((a, m), b)| a ^ m == *b);
    assert!(ok, "authentic");
}

/// Runs `work` on each thread's share of the chunks; returns (wall, cpu) seconds.
fn timed(threads: usize, chunks: &[&[u8]], work: impl Fn(&[u8]) + Sync) -> (f64, f64) {
    let (c, t) = (process_cpu(), Instant::now());
    std::thread::scope(|s| {
        for k in 0..threads {
            let work = &work;
            s.spawn(move || chunks.iter().skip(k).step_by(threads).for_each(|ch| work(ch)));
        }
    });
    (t.elapsed().as_secs_f64(), process_cpu() - c)
}

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (mib, threads, rounds) = (arg(1, 256), arg(2, 2), arg(3, 3));
    let mut data = vec![0u8; mib << 20];
    getrandom::getrandom(&mut data).expect("random");
    let chunks: Vec<&[u8]> = data.chunks(BS * CHUNK).collect();
    let root = [7u8; 32];
    let mac = [5u8; 32];
    // The sealed messages FULL verification opens (one per block, as in a piece).
    let sealed: Vec<Vec<u8>> = data.chunks(BS).map(|b| seal_vec(&root, b)).collect();
    let sealed_chunks: Vec<&[Vec<u8>]> = sealed.chunks(CHUNK).collect();
    let gib = data.len() as f64 / (1u64 << 30) as f64;
    println!("{mib} MiB in 8 KiB messages, {threads} threads, seconds per GiB (wall / CPU), {rounds} rounds");
    for round in 0..rounds {
        let mut line = format!("round {round}:");
        let mut show = |name: &str, (w, c): (f64, f64)| line += &format!("  {name} {:.3} / {:.3}", w / gib, c / gib);
        show(
            "keyed BLAKE3",
            timed(threads, &chunks, |ch| {
                ch.chunks(BS).for_each(|b| {
                    std::hint::black_box(blake3::keyed_hash(&mac, b));
                });
            }),
        );
        show(
            "seal, per-block Vec + getrandom",
            timed(threads, &chunks, |ch| {
                ch.chunks(BS)
                    .for_each(|b| drop(std::hint::black_box(seal_vec(&root, b))));
            }),
        );
        let into = |ch: &[u8], digests: bool| {
            let mut nonces = vec![0u8; CHUNK * 24];
            getrandom::getrandom(&mut nonces).expect("random");
            let hashed: Vec<_> = if digests {
                ch.chunks(BS).map(|b| blake3::keyed_hash(&mac, b)).collect()
            } else {
                Vec::new()
            };
            OUT.with_borrow_mut(|out| {
                for ((b, o), n) in ch
                    .chunks(BS)
                    .zip(out.chunks_mut(BS + OVERHEAD))
                    .zip(nonces.chunks_exact(24))
                {
                    seal_into(&root, n.try_into().expect("24"), b, o);
                }
                std::hint::black_box((&out[..], hashed));
            });
        };
        show(
            "seal into the chunk buffer",
            timed(threads, &chunks, |ch| into(ch, false)),
        );
        show("hash then seal", timed(threads, &chunks, |ch| into(ch, true)));
        show(
            "hash+seal fused",
            timed(threads, &chunks, |ch| {
                let mut nonces = vec![0u8; CHUNK * 24];
                getrandom::getrandom(&mut nonces).expect("random");
                OUT.with_borrow_mut(|out| {
                    for ((b, o), n) in ch
                        .chunks(BS)
                        .zip(out.chunks_mut(BS + OVERHEAD))
                        .zip(nonces.chunks_exact(24))
                    {
                        std::hint::black_box(blake3::keyed_hash(&mac, b));
                        seal_into(&root, n.try_into().expect("24"), b, o);
                    }
                    std::hint::black_box(&out[..]);
                });
            }),
        );
        let (c, t) = (process_cpu(), Instant::now());
        std::thread::scope(|s| {
            for k in 0..threads {
                let sealed_chunks = &sealed_chunks;
                s.spawn(move || {
                    let mut plain = Vec::new();
                    for ch in sealed_chunks.iter().skip(k).step_by(threads) {
                        ch.iter().for_each(|m| open_into(&root, m, &mut plain));
                    }
                });
            }
        });
        show("open", (t.elapsed().as_secs_f64(), process_cpu() - c));
        let (c, t) = (process_cpu(), Instant::now());
        std::thread::scope(|s| {
            for k in 0..threads {
                let sealed_chunks = &sealed_chunks;
                s.spawn(move || {
                    for ch in sealed_chunks.iter().skip(k).step_by(threads) {
                        ch.iter().for_each(|m| tag_only(&root, m));
                    }
                });
            }
        });
        show("tag only", (t.elapsed().as_secs_f64(), process_cpu() - c));
        println!("{line}");
    }
}
