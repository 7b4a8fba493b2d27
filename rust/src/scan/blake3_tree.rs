//! The whole-file BLAKE3 digest built from per-block chaining values (the hazmat API).
//!
//! When the block size is a power-of-two multiple of BLAKE3's 1 KiB chunk, every block at
//! offset `i * bs` is a subtree of the file's BLAKE3 tree, so its chaining value (CV) can
//! be computed independently and the CVs merged like the crate's own CV stack.
//!
//! What this does NOT save: the standalone digest of block `i > 0` (which must equal
//! `blake3(block)`) is a different computation, because every chunk compression binds the
//! chunk counter, which starts at 0 for the standalone hash and at `i * bs / 1024` inside
//! the file. So each block is compressed twice; only block 0 yields both its root digest and
//! its CV from one pass. The gain is that both hashes of a block run back to back while the
//! block sits in L1, in one parallel loop with no second pass over the chunk, and that the
//! whole-file digest parallelises across cores (a plain streaming hasher would not).

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

/// BLAKE3's chunk: the leaf of its tree.
pub const CHUNK_LEN: usize = 1024;

/// Whether `block_size` lets blocks be BLAKE3 subtrees.
pub fn block_is_subtree(block_size: usize) -> bool {
    block_size.is_power_of_two() && block_size >= CHUNK_LEN
}

/// The standalone digest of the block at `offset`, and its CV inside the file's tree.
pub fn block_digest_and_cv(offset: u64, block: &[u8]) -> ([u8; 32], ChainingValue) {
    let mut in_file = blake3::Hasher::new();
    in_file.set_input_offset(offset);
    in_file.update(block);
    let cv = in_file.finalize_non_root();
    if offset == 0 {
        // Same counters from zero: the root finalisation of this very state is blake3(block).
        return (*in_file.finalize().as_bytes(), cv);
    }
    (*blake3::hash(block).as_bytes(), cv)
}

/// A stack of subtree CVs, merged lazily exactly as `blake3::Hasher` merges chunk CVs, so
/// the last merge can be the root one.
#[derive(Default)]
pub struct CvStack {
    stack: Vec<ChainingValue>,
    pushed: u64,
    first_root: Option<[u8; 32]>,
}

impl CvStack {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next block's CV; `root_if_only` is its standalone digest, which is the
    /// whole-file digest when it turns out to be the only block.
    pub fn push(&mut self, cv: ChainingValue, root_if_only: [u8; 32]) {
        if self.pushed == 0 {
            self.first_root = Some(root_if_only);
        }
        // Equal-size subtrees: the binary counter of blocks pushed so far says how many
        // complete subtrees stay on the stack (blake3's `merge_cv_stack`).
        let keep = self.pushed.count_ones() as usize;
        while self.stack.len() > keep {
            if let (Some(right), Some(left)) = (self.stack.pop(), self.stack.pop()) {
                self.stack.push(merge_subtrees_non_root(&left, &right, Mode::Hash));
            }
        }
        self.stack.push(cv);
        self.pushed += 1;
    }

    /// The root digest: right-to-left merges, the last one as root.
    pub fn finalize(mut self) -> [u8; 32] {
        match self.pushed {
            0 => *blake3::hash(b"").as_bytes(),
            1 => self.first_root.unwrap_or_else(|| *blake3::hash(b"").as_bytes()),
            _ => {
                let mut right = self.stack.pop().unwrap_or_default();
                while self.stack.len() > 1 {
                    if let Some(left) = self.stack.pop() {
                        right = merge_subtrees_non_root(&left, &right, Mode::Hash);
                    }
                }
                let left = self.stack.pop().unwrap_or_default();
                *merge_subtrees_root(&left, &right, Mode::Hash).as_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_digest(data: &[u8], bs: usize) -> [u8; 32] {
        let mut tree = CvStack::new();
        for (i, block) in data.chunks(bs).enumerate() {
            let (digest, cv) = block_digest_and_cv((i * bs) as u64, block);
            assert_eq!(digest, *blake3::hash(block).as_bytes());
            tree.push(cv, digest);
        }
        tree.finalize()
    }

    #[test]
    fn merged_block_cvs_equal_the_plain_file_digest() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for bs in [1024, 2048, 4096, 8192, 65536] {
            for len in [
                0,
                1,
                1023,
                1024,
                1025,
                bs - 1,
                bs,
                bs + 1,
                2 * bs,
                3 * bs + 5,
                7 * bs,
                8 * bs,
                9 * bs - 1,
            ] {
                let len = len.min(data.len());
                assert_eq!(
                    tree_digest(&data[..len], bs),
                    *blake3::hash(&data[..len]).as_bytes(),
                    "bs {bs} len {len}"
                );
            }
        }
    }

    #[test]
    fn a_block_inside_the_file_is_not_hashed_like_a_standalone_block() {
        // Why the per-block digest costs a second compression: the chunk counter differs.
        let block = vec![7u8; 4096];
        let mut standalone = blake3::Hasher::new();
        standalone.update(&block);
        let (_, cv_at_4096) = block_digest_and_cv(4096, &block);
        assert_ne!(standalone.finalize_non_root(), cv_at_4096);
        let (_, cv_at_0) = block_digest_and_cv(0, &block);
        assert_eq!(standalone.finalize_non_root(), cv_at_0);
    }
}
