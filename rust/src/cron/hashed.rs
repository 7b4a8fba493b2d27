//! Jenkins-style hashed values (`H`, `H/n`, `H(a-b)`, `H(a-b)/n`): a stable spread of jobs
//! over the clock, so that a thousand jobs written `H 2 * * *` do not all start at 02:00.
//! The value depends only on the seed (e.g. the job id) and the field, never on the
//! process (no random hasher state), so a schedule fires at the same minute on every host.

use super::field::FieldKind;

/// FNV-1a 64 over the seed, a separator and the field name: stable across runs,
/// platforms and versions (unlike `std`'s `RandomState`).
pub fn hash(seed: &str, kind: FieldKind) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(std::iter::once(0u8)).chain(kind.name().bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; fold the high half in (as Jenkins folds
    // its hash) before taking a remainder.
    h ^ (h >> 29)
}

/// The hashed offset in `0..span` for this seed and field.
pub fn pick(seed: &str, kind: FieldKind, span: u32) -> u32 {
    if span == 0 {
        return 0;
    }
    (hash(seed, kind) % u64::from(span)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_depends_on_seed_and_field() {
        assert_eq!(
            pick("job-1", FieldKind::Minute, 60),
            pick("job-1", FieldKind::Minute, 60)
        );
        let spread: std::collections::HashSet<u32> = (0..200)
            .map(|i| pick(&format!("job-{i}"), FieldKind::Minute, 60))
            .collect();
        assert!(
            spread.len() > 40,
            "200 seeds should spread over most minutes: {}",
            spread.len()
        );
        assert_ne!(hash("a", FieldKind::Minute), hash("a", FieldKind::Hour));
    }
}
