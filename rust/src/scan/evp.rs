//! MD5 and SHA-512 through the OpenSSL that Python's `hashlib` already loaded.
//!
//! On x86-64 OpenSSL's hand-scheduled assembly is faster than the RustCrypto crates for
//! these two (measured on the 2-core AVX2 build VM: MD5 640 vs 515 MB/s, SHA-512 690 vs
//! 505 MB/s; `ring` was no faster than `sha2`), so a `hash_file` through the crates lost to
//! `hashlib.file_digest`. SHA-1 and SHA-256 use SHA-NI in both and stay on the crates;
//! BLAKE3 is not in OpenSSL. The functions are looked up through `_hashlib`'s own handle
//! (`dlopen(RTLD_NOLOAD)` + `dlsym`): no link-time dependency on libcrypto, exactly
//! hashlib's implementation, and the crates whenever that copy is out of reach (no
//! `_hashlib` file, hidden symbols, a FIPS build refusing MD5, plain `cargo test`).

use std::ffi::{c_int, c_uint, c_void};
use std::path::Path;
use std::sync::OnceLock;

use super::algorithm::Algorithm;
use crate::loaded::Loaded;

type Ctx = c_void;
type Md = c_void;
type CtxNew = unsafe extern "C" fn() -> *mut Ctx;
type CtxFree = unsafe extern "C" fn(*mut Ctx);
type Init = unsafe extern "C" fn(*mut Ctx, *const Md, *mut c_void) -> c_int;
type Update = unsafe extern "C" fn(*mut Ctx, *const c_void, usize) -> c_int;
type Final = unsafe extern "C" fn(*mut Ctx, *mut u8, *mut c_uint) -> c_int;
type MdGetter = unsafe extern "C" fn() -> *const Md;

/// The EVP functions used, with the signatures `openssl/evp.h` declares (1.1 and 3.x).
struct Api {
    /// Keeps `_hashlib` (hence libcrypto) referenced for as long as the pointers are used.
    _library: Loaded,
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    init: Init,
    update: Update,
    finish: Final,
    md5: MdGetter,
    sha512: MdGetter,
}

static API: OnceLock<Option<Api>> = OnceLock::new();

/// Looks OpenSSL up through the already-loaded shared object `module` (Python's
/// `_hashlib`). The first call decides for the life of the process; later calls only
/// report. Returns whether MD5 and SHA-512 streams now go through OpenSSL.
pub fn install(module: &Path) -> bool {
    API.get_or_init(|| load(module)).is_some()
}

/// True when `install` found OpenSSL (streams of `algorithm` use it).
pub fn active(algorithm: Algorithm) -> bool {
    md_of(algorithm).is_some()
}

fn load(module: &Path) -> Option<Api> {
    let library = Loaded::open(module)?;
    // SAFETY (every `function` call): each type alias is the signature evp.h declares for
    // that name (OpenSSL 1.1 and 3.x export all of them), and `_library` keeps the
    // pointers valid: the table lives in a static, for the life of the process.
    let api = unsafe {
        Api {
            ctx_new: library.function(c"EVP_MD_CTX_new")?,
            ctx_free: library.function(c"EVP_MD_CTX_free")?,
            init: library.function(c"EVP_DigestInit_ex")?,
            update: library.function(c"EVP_DigestUpdate")?,
            finish: library.function(c"EVP_DigestFinal_ex")?,
            md5: library.function(c"EVP_md5")?,
            sha512: library.function(c"EVP_sha512")?,
            _library: library,
        }
    };
    // A provider that refuses an algorithm (FIPS and MD5) fails here, once, not mid-file;
    // and a wrong answer (a mismatched library) is caught before any real data is hashed.
    let md5_abc = one_shot(&api, api.md5, b"abc");
    let sha512_abc = one_shot(&api, api.sha512, b"abc");
    let good = md5_abc.as_deref() == Some(&Algorithm::Md5.digest_with_crates(b"abc")[..])
        && sha512_abc.as_deref() == Some(&Algorithm::Sha512.digest_with_crates(b"abc")[..]);
    good.then_some(api)
}

/// The digest of `data` with a context used and freed here (the self-test of `load`).
fn one_shot(api: &Api, md: MdGetter, data: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: a fresh context is initialised with a static digest description, fed `data`
    // (valid for its length), finalised into a 64-byte buffer (EVP_MAX_MD_SIZE) and freed
    // exactly once on every path.
    unsafe {
        let ctx = (api.ctx_new)();
        if ctx.is_null() {
            return None;
        }
        let mut out = vec![0u8; 64];
        let mut len: c_uint = 0;
        let ok = (api.init)(ctx, md(), std::ptr::null_mut()) == 1
            && (api.update)(ctx, data.as_ptr().cast(), data.len()) == 1
            && (api.finish)(ctx, out.as_mut_ptr(), &mut len) == 1;
        (api.ctx_free)(ctx);
        out.truncate(len as usize);
        ok.then_some(out)
    }
}

fn md_of(algorithm: Algorithm) -> Option<(&'static Api, MdGetter)> {
    let api = API.get()?.as_ref()?;
    match algorithm {
        Algorithm::Md5 => Some((api, api.md5)),
        Algorithm::Sha512 => Some((api, api.sha512)),
        _ => None,
    }
}

/// A streaming MD5 or SHA-512 state owned by OpenSSL. It exists only once `install`
/// succeeded, so its methods always find the function table.
pub struct EvpHasher {
    api: &'static Api,
    ctx: *mut Ctx,
    /// An update OpenSSL refused; `finalize` reports it.
    failed: bool,
}

// SAFETY: an EVP_MD_CTX has no thread affinity; it is only ever used by whoever owns the
// `EvpHasher` (it is not `Sync`), so moving it to another thread is sound.
unsafe impl Send for EvpHasher {}

impl EvpHasher {
    /// A fresh state for `algorithm`, or None when OpenSSL is not in use for it.
    pub fn new(algorithm: Algorithm) -> Option<Self> {
        let (api, md) = md_of(algorithm)?;
        // SAFETY: plain constructor call; null means allocation failed.
        let ctx = unsafe { (api.ctx_new)() };
        if ctx.is_null() {
            return None;
        }
        let me = Self {
            api,
            ctx,
            failed: false,
        };
        // SAFETY: `ctx` is a fresh context, `md()` a static digest description, no engine.
        let ok = unsafe { (api.init)(ctx, md(), std::ptr::null_mut()) } == 1;
        ok.then_some(me)
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        // SAFETY: `ctx` is an initialised context owned by `self`; `data` is valid for
        // its length.
        let ok = unsafe { (self.api.update)(self.ctx, data.as_ptr().cast(), data.len()) } == 1;
        self.failed |= !ok;
    }

    /// The digest of everything fed.
    ///
    /// # Panics
    /// If OpenSSL reported a failure (it cannot for MD5/SHA-512 once `load`'s self-test
    /// passed, short of a provider entering its error state): a wrong or empty digest
    /// written into a manifest would be worse than stopping.
    pub fn finalize(self) -> Vec<u8> {
        let mut out = vec![0u8; 64]; // EVP_MAX_MD_SIZE
        let mut len: c_uint = 0;
        // SAFETY: `out` has room for the largest digest; `ctx` is initialised and owned.
        let ok = unsafe { (self.api.finish)(self.ctx, out.as_mut_ptr(), &mut len) } == 1;
        assert!(
            ok && !self.failed && (len == 16 || len == 64),
            "OpenSSL failed to compute a digest (EVP_DigestUpdate/Final reported an error)"
        );
        out.truncate(len as usize);
        out
    }
}

impl Drop for EvpHasher {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from EVP_MD_CTX_new and is freed exactly once, here.
        unsafe { (self.api.ctx_free)(self.ctx) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads the system libcrypto the way Python would, then routes through it. Every
    /// digest must equal the crates' (the install is process-wide, and harmless to other
    /// tests for exactly that reason).
    #[cfg(unix)]
    #[test]
    fn openssl_streams_equal_the_crates() {
        assert!(load(Path::new("/nonexistent/_hashlib.so")).is_none());
        let name = c"libcrypto.so.3";
        // SAFETY: loading a system library by soname, as `import _hashlib` does.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            eprintln!("no libcrypto.so.3 on this machine: the OpenSSL route is untested here");
            return;
        }
        assert!(install(Path::new("libcrypto.so.3")));
        for alg in [Algorithm::Md5, Algorithm::Sha512] {
            assert!(active(alg));
            for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 1000, 300_000, 1 << 20] {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut h = alg.hasher();
                assert!(matches!(h, super::super::algorithm::Hasher::Evp(_)));
                for piece in data.chunks(7777) {
                    h.update(piece);
                }
                assert_eq!(h.finalize(), alg.digest_with_crates(&data), "{} len {len}", alg.name());
                assert_eq!(alg.digest(&data), alg.digest_with_crates(&data));
            }
        }
        assert!(!active(Algorithm::Sha256) && !active(Algorithm::Blake3));
    }
}
