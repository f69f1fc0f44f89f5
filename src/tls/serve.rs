//! Serving a cached certificate from OpenSSL's certificate callback, without entering Lua
//! (autossl's `native_serving`).
//!
//! lua-nginx-module installs its handler as the certificate callback of every server block with
//! `ssl_certificate_by_lua*`, and each handshake then pays for a fake connection, a fake request
//! and a Lua thread before a line of Lua runs: about as much worker CPU as installing the
//! certificate itself. Once autossl's Lua phase has run for a server block, [`attach`] puts
//! [`serve_cb`] in front of that handler: a name whose every configured key type has a fresh
//! positive entry in the caches gets its chains and keys here, and every other handshake (no
//! or odd SNI, a miss, a stale or negative entry, a failed install) goes on to the Lua handler
//! as before, which also handles a handshake it has already started (a yielded, blocking one).
//!
//! With autossl's `shared_cache`, a name missing from (or stale in) this worker's cache is
//! looked up in the node's shared dict here too ([`set_shared`]), through the function
//! resty.core's `shdict:get` calls: what another worker left there is loaded into this
//! worker's cache and served, still without Lua (the Lua phase costs about 20 µs a handshake,
//! P1's "lua" side).
use super::certcache::{CertCache, Found};
use super::compact;
use super::tls_cert;
use crate::crypto::CryptoError;
use openssl_sys as ffi;
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// OpenSSL's certificate callback (`SSL_CTX_set_cert_cb`): 1 done, 0 fail, -1 retry later.
pub type CertCb = unsafe extern "C" fn(*mut ffi::SSL, *mut c_void) -> c_int;

extern "C" {
    fn SSL_CTX_set_cert_cb(ctx: *mut ffi::SSL_CTX, cb: Option<CertCb>, arg: *mut c_void);
    fn SSL_CTX_set_ex_data(ctx: *mut ffi::SSL_CTX, idx: c_int, data: *mut c_void) -> c_int;
    fn SSL_set_ex_data(ssl: *mut ffi::SSL, idx: c_int, data: *mut c_void) -> c_int;
}

// ssl.h / crypto.h: CRYPTO_EX_INDEX_SSL, CRYPTO_EX_INDEX_SSL_CTX; tls1.h: TLSEXT_NAMETYPE_host_name
const EX_INDEX_SSL: c_int = 0;
const EX_INDEX_SSL_CTX: c_int = 1;
const NAMETYPE_HOST_NAME: c_int = 0;

/// RFC 1035 §2.3.4: a name is at most 253 characters as text.
const MAX_NAME: usize = 253;

/// Server name -> the cache key its entries are under.
type Aliases = HashMap<Box<[u8]>, Box<[u8]>>;

/// lua-nginx-module's `ngx_{http,stream}_lua_ffi_shdict_get` (0.10.23 and later): a value
/// longer than `*str_value_len` is copied into a buffer it `malloc`s and hands back.
pub type ShdictGet = unsafe extern "C" fn(
    zone: *mut c_void,
    key: *const u8,
    key_len: usize,
    value_type: *mut c_int,
    str_value_buf: *mut *mut u8,
    str_value_len: *mut usize,
    num_value: *mut f64,
    user_flags: *mut c_int,
    get_stale: c_int,
    is_stale: *mut c_int,
    err: *mut *mut c_char,
) -> c_int;

/// lua.h's LUA_TSTRING, the shared dict's type of a string value.
const SHDICT_STRING: c_int = 4;
/// The longest dict-key prefix of a cache ("ecc:", "rsa:": sharedcache.lua's keys).
const MAX_PREFIX: usize = 8;

/// The node's shared cache as the callback reads it.
pub struct Shared {
    zone: *mut c_void,
    get: ShdictGet,
    /// The dict key's prefix of each cache, in the order of the caches.
    prefixes: Vec<Box<[u8]>>,
    /// Where values are copied to; grown to the largest seen.
    buf: Vec<u8>,
}

impl Shared {
    /// The dict of `zone` (an `ngx_shm_zone_t*`) read with `get`, its keys `<prefix><name>`
    /// with one prefix per cache; None when a prefix is empty or too long.
    ///
    /// # Safety
    /// `zone` must be the zone of a `lua_shared_dict` of the running cycle and `get` the
    /// shdict-get function of the subsystem whose handshakes the callback serves.
    pub unsafe fn new(zone: *mut c_void, get: ShdictGet, prefixes: Vec<Box<[u8]>>) -> Option<Self> {
        if zone.is_null()
            || prefixes
                .iter()
                .any(|p| p.is_empty() || p.len() > MAX_PREFIX)
        {
            return None;
        }
        Some(Shared {
            zone,
            get,
            prefixes,
            buf: vec![0; 16 * 1024],
        })
    }

    /// Puts the shared entry of `key` for cache `i` into `cache` when it is fresh at `now`: a
    /// stale worker entry of the same stored value is only given the shared entry's life
    /// again. True when `cache` now holds a fresh entry for `key`.
    fn fill(&mut self, i: usize, key: &[u8], now: f64, cache: &mut CertCache) -> bool {
        let Some(prefix) = self.prefixes.get(i) else {
            return false;
        };
        let mut dkey = [0u8; MAX_PREFIX + MAX_NAME];
        let n = prefix.len() + key.len();
        if n > dkey.len() {
            return false;
        }
        dkey[..prefix.len()].copy_from_slice(prefix);
        dkey[prefix.len()..n].copy_from_slice(key);
        let own = self.buf.as_mut_ptr();
        let (mut ptr, mut len) = (own, self.buf.len());
        let (mut vtype, mut flags, mut is_stale): (c_int, c_int, c_int) = (0, 0, 0);
        let mut num = 0f64;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: zone and function are the running cycle's (Shared::new's contract); every
        // out-pointer is valid; `ptr` has `len` writable bytes.
        let rc = unsafe {
            (self.get)(
                self.zone,
                dkey.as_ptr(),
                n,
                &mut vtype,
                &mut ptr,
                &mut len,
                &mut num,
                &mut flags,
                0,
                &mut is_stale,
                &mut err,
            )
        };
        let ok = rc == 0 && vtype == SHDICT_STRING && !ptr.is_null() && {
            // SAFETY: on success the function left `len` bytes of the value at `ptr`.
            let blob = unsafe { std::slice::from_raw_parts(ptr, len) };
            load(blob, key, now, cache)
        };
        if ptr != own && !ptr.is_null() {
            // SAFETY: a buffer the function malloc'ed for a value longer than ours.
            unsafe { libc::free(ptr.cast()) };
            self.buf.resize(len.max(self.buf.len()), 0);
        }
        ok
    }
}

/// The compact entry `blob` into `cache` under `key` when it is fresh at `now` (an entry of the
/// same stored value, by its digest, only gets the new expiry).
fn load(blob: &[u8], key: &[u8], now: f64, cache: &mut CertCache) -> bool {
    let Ok((digest, expires)) = compact::header(blob) else {
        return false;
    };
    if expires <= now {
        return false;
    }
    if cache.refresh(key, Some(&digest), expires) {
        return true;
    }
    match compact::decode(blob) {
        Ok((entry, expires)) => {
            cache.set(key, Some(entry), expires);
            true
        }
        // the Lua phase reads it again and says why
        Err(_) => false,
    }
}

struct Registry {
    /// One cache per configured key type, in the order of `domain_key_types`.
    caches: Vec<*mut CertCache>,
    /// The handler this callback stands in front of.
    next: Option<CertCb>,
    /// Server names the Lua phase served from another name's entries (a wildcard's), and
    /// that name. Config decides the mapping, so an alias stays true; the table is bounded.
    aliases: Option<Aliases>,
    /// The node's shared cache, when autossl has one.
    shared: Option<Shared>,
}

// SAFETY: the caches are only touched on the nginx worker's main thread (Lua and handshakes
// both run there); the mutex only orders that thread against itself.
unsafe impl Send for Registry {}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    caches: Vec::new(),
    next: None,
    aliases: None,
    shared: None,
});

/// Handshakes served here, for the `acme_handshakes_total{result="served"}` counter.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// The address marks: "this connection went to Lua" and "this SSL_CTX is attached".
static MARK: u8 = 1;

fn mark() -> *mut c_void {
    (&raw const MARK).cast_mut().cast()
}

/// (SSL ex_data index, SSL_CTX ex_data index), allocated once per process.
fn indexes() -> Result<(c_int, c_int), CryptoError> {
    static INDEXES: OnceLock<(c_int, c_int)> = OnceLock::new();
    if let Some(i) = INDEXES.get() {
        return Ok(*i);
    }
    // SAFETY: plain index allocations with no callbacks.
    let (ssl, ctx) = unsafe {
        (
            ffi::CRYPTO_get_ex_new_index(EX_INDEX_SSL, 0, std::ptr::null_mut(), None, None, None),
            ffi::CRYPTO_get_ex_new_index(
                EX_INDEX_SSL_CTX,
                0,
                std::ptr::null_mut(),
                None,
                None,
                None,
            ),
        )
    };
    if ssl < 0 || ctx < 0 {
        return Err(CryptoError::InvalidInput(
            "openssl has no ex_data index left".into(),
        ));
    }
    Ok(*INDEXES.get_or_init(|| (ssl, ctx)))
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // Every step under the lock is a plain assignment or a lookup: a panic cannot leave the
    // registry half-changed, so a poisoned lock is taken over.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The caches the callback serves from, one per key type in order (a new config: the aliases
/// of the old one are dropped).
///
/// # Safety
/// Every pointer must come from `Box::into_raw` of a [`CertCache`] that is never freed, and
/// only be used on the thread that serves handshakes.
pub unsafe fn set_caches(caches: Vec<*mut CertCache>) {
    let mut reg = registry();
    reg.caches = caches;
    reg.aliases = None;
}

/// The node's shared cache the callback fills worker-cache misses from (None: none).
///
/// # Safety
/// Only called on the thread that serves handshakes.
pub unsafe fn set_shared(shared: Option<Shared>) {
    registry().shared = shared;
}

/// Serves `name` from the entries of `target` from now on (what the Lua phase found for it:
/// `a.example.com` from `*.example.com`). At most `cap` names are kept; a full table starts
/// over, and the names come back through the Lua phase.
pub fn set_alias(name: &[u8], target: &[u8], cap: usize) {
    if name.is_empty() || name.len() > MAX_NAME || target.is_empty() || name == target {
        return;
    }
    let mut reg = registry();
    let aliases = reg.aliases.get_or_insert_with(HashMap::new);
    if aliases.len() >= cap.max(1) && !aliases.contains_key(name) {
        aliases.clear();
    }
    aliases.insert(name.into(), target.into());
}

/// Handshakes [`serve_cb`] has served since the process started.
pub fn served() -> u64 {
    SERVED.load(Ordering::Relaxed)
}

/// Puts [`serve_cb`] in front of `handler` (the exported name of lua-nginx-module's certificate
/// handler) on the `SSL_CTX` of `ssl`. Ok(true) when it did now, Ok(false) when that context
/// was attached before. Connections made from the context from now on take the new callback.
///
/// # Safety
/// `ssl` must be a live `SSL*` in its certificate phase, on the thread that serves handshakes.
pub unsafe fn attach(ssl: *mut ffi::SSL, handler: &CStr) -> Result<bool, CryptoError> {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches what nginx loaded
    // (its modules are dlopen'ed RTLD_GLOBAL).
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, handler.as_ptr()) };
    if sym.is_null() {
        return Err(CryptoError::InvalidInput(format!(
            "{} is not exported by the loaded modules",
            handler.to_string_lossy()
        )));
    }
    // SAFETY: the symbol is lua-nginx-module's certificate handler, which has the callback's
    // signature (it is what the module passes to SSL_CTX_set_cert_cb).
    let next: CertCb = unsafe { std::mem::transmute::<*mut c_void, CertCb>(sym) };
    // SAFETY: forwarded under this function's contract.
    unsafe { attach_handler(ssl, next) }
}

/// [`attach`] with the handler given by address.
///
/// # Safety
/// As [`attach`]; `next` must be the certificate callback the context had.
pub unsafe fn attach_handler(ssl: *mut ffi::SSL, next: CertCb) -> Result<bool, CryptoError> {
    if ssl.is_null() {
        return Err(CryptoError::InvalidInput("no connection".into()));
    }
    let (_, ctx_idx) = indexes()?;
    // SAFETY: `ssl` is live (contract); its context lives at least as long.
    let ctx = unsafe { ffi::SSL_get_SSL_CTX(ssl) };
    if ctx.is_null() {
        return Err(CryptoError::InvalidInput(
            "the connection has no context".into(),
        ));
    }
    // SAFETY: `ctx` is live; the index is ours.
    if unsafe { ffi::SSL_CTX_get_ex_data(ctx, ctx_idx) } == mark() {
        return Ok(false);
    }
    {
        let mut reg = registry();
        match reg.next {
            Some(prev) if prev as usize != next as usize => {
                return Err(CryptoError::InvalidInput(
                    "another certificate handler is attached already".into(),
                ))
            }
            _ => reg.next = Some(next),
        }
    }
    // SAFETY: `ctx` is live; lua-nginx-module set its handler with a null argument, which
    // serve_cb passes on. Only connections created from now on copy the new callback.
    unsafe {
        SSL_CTX_set_cert_cb(ctx, Some(serve_cb), std::ptr::null_mut());
        SSL_CTX_set_ex_data(ctx, ctx_idx, mark());
    }
    Ok(true)
}

/// The certificate callback [`attach`] installs.
///
/// # Safety
/// Called by OpenSSL with a live `SSL*` in its handshake.
pub unsafe extern "C" fn serve_cb(ssl: *mut ffi::SSL, arg: *mut c_void) -> c_int {
    let Ok((ssl_idx, _)) = indexes() else {
        return 0;
    };
    let next = {
        let mut reg = registry();
        // SAFETY: `ssl` is live (OpenSSL's call); the index is ours.
        if unsafe { ffi::SSL_get_ex_data(ssl, ssl_idx) }.is_null() {
            // SAFETY: the caches are live and used on this thread only (set_caches' contract).
            if unsafe { serve_cached(ssl, &mut reg) } {
                SERVED.fetch_add(1, Ordering::Relaxed);
                return 1;
            }
            // From now on this connection is Lua's, also when OpenSSL calls again after a
            // yield: the Lua handler would otherwise lose track of a thread it started.
            // SAFETY: as above.
            unsafe { SSL_set_ex_data(ssl, ssl_idx, mark()) };
        }
        reg.next
    };
    match next {
        // SAFETY: the handler's own contract is OpenSSL's, which this call keeps.
        Some(f) => unsafe { f(ssl, arg) },
        // attach sets the handler before the callback; keep the connection's certificate
        None => 1,
    }
}

/// The client's server name, lower-cased into `buf`, when it is one a cache can hold.
fn normalize<'a>(name: &[u8], buf: &'a mut [u8; MAX_NAME]) -> Option<&'a [u8]> {
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    for (i, &c) in name.iter().enumerate() {
        let c = c.to_ascii_lowercase();
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.') {
            return None;
        }
        buf[i] = c;
    }
    Some(&buf[..name.len()])
}

/// `ngx.now()`'s clock (the wall clock, in seconds); the coarse one is a few ms behind at
/// most, like nginx's cached time.
fn now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Installs the cached chains of the connection's server name (or of its alias), one per key
/// type, a worker-cache miss filled from the shared cache; false (and nothing to rely on
/// installed) when any type has no fresh positive entry.
///
/// # Safety
/// `ssl` live in its certificate phase; every cache pointer live and unaliased for the call.
unsafe fn serve_cached(ssl: *mut ffi::SSL, reg: &mut Registry) -> bool {
    let Registry {
        caches,
        aliases,
        shared,
        ..
    } = reg;
    const MAX_TYPES: usize = 4;
    if caches.is_empty() || caches.len() > MAX_TYPES {
        return false;
    }
    // SAFETY: `ssl` is live; the name stays valid during the callback.
    let raw = unsafe { ffi::SSL_get_servername(ssl, NAMETYPE_HOST_NAME) };
    if raw.is_null() {
        return false;
    }
    // SAFETY: OpenSSL keeps the name NUL-terminated.
    let name = unsafe { CStr::from_ptr(raw as *const c_char) }.to_bytes();
    let mut buf = [0u8; MAX_NAME];
    let Some(mut key) = normalize(name, &mut buf) else {
        return false;
    };
    if let Some(target) = aliases.as_ref().and_then(|a| a.get(key)) {
        key = target;
    }
    let t = now();
    let mut found = [(std::ptr::null_mut(), std::ptr::null_mut()); MAX_TYPES];
    for (i, &cache) in caches.iter().enumerate() {
        // SAFETY: live and unaliased (contract).
        let cache = unsafe { &mut *cache };
        match cache.get(key, t) {
            Some(Found::Fresh(Some(entry))) => {
                found[i] = entry.as_raw();
                continue;
            }
            // "not in the store": the Lua phase decides when to look again
            Some(Found::Fresh(None)) => return false,
            Some(Found::Stale(_)) | None => {}
        }
        let Some(shared) = shared.as_mut() else {
            return false;
        };
        if !shared.fill(i, key, t, cache) {
            return false;
        }
        match cache.get(key, t) {
            Some(Found::Fresh(Some(entry))) => found[i] = entry.as_raw(),
            _ => return false,
        }
    }
    for (i, &(chain, pkey)) in found[..caches.len()].iter().enumerate() {
        // SAFETY: `ssl` is live; the handles belong to cache entries that nothing changes
        // during this call.
        if unsafe { tls_cert::install(ssl, chain, pkey, i == 0) }.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};
    use crate::tls::certcache::CertKey;
    use foreign_types::ForeignType;
    use openssl::ssl::{Ssl, SslConnector, SslContext, SslMethod, SslVerifyMode};
    use openssl::stack::Stack;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicUsize;

    static LUA_CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Stands for lua-nginx-module's handler: counts, and keeps the fallback certificate.
    unsafe extern "C" fn fake_lua(_ssl: *mut ffi::SSL, _arg: *mut c_void) -> c_int {
        LUA_CALLS.fetch_add(1, Ordering::SeqCst);
        1
    }

    /// The server's leaf as the client saw it after a handshake with `sni`.
    fn served_cn(ctx: &SslContext, sni: &str) -> String {
        let (a, b) = UnixStream::pair().unwrap();
        let ctx = ctx.clone();
        let server = std::thread::spawn(move || {
            let mut s = Ssl::new(&ctx).unwrap().accept(a).unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).unwrap();
        });
        let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        let mut c = connector
            .build()
            .configure()
            .unwrap()
            .verify_hostname(false)
            .connect(sni, b)
            .unwrap();
        let cert = c.ssl().peer_certificate().unwrap();
        c.write_all(b"x").unwrap();
        server.join().unwrap();
        let cn = cert.subject_name().entries().next().unwrap();
        String::from_utf8(cn.data().as_slice().to_vec()).unwrap()
    }

    fn entry(cn: &str) -> CertKey {
        let ca_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let inter = issue(&spec("Serve Intermediate", "01", true, &[]), &ca_key, None);
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let leaf = issue(&spec(cn, "02", false, &[cn]), &key, Some((&inter, &ca_key)));
        let mut chain = Stack::new().unwrap();
        chain.push(leaf).unwrap();
        chain.push(inter).unwrap();
        CertKey {
            chain,
            pkey: key.pkey,
            digest: [0; 16],
        }
    }

    #[test]
    fn serves_fresh_entries_and_hands_the_rest_to_lua() {
        let fallback_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let fallback = issue(
            &spec("fallback.test", "03", false, &["fallback.test"]),
            &fallback_key,
            None,
        );
        let mut b = SslContext::builder(SslMethod::tls_server()).unwrap();
        b.set_certificate(&fallback).unwrap();
        b.set_private_key(&fallback_key.pkey).unwrap();
        let ctx = b.build();
        // SAFETY (test): the context is live; this is what lua-nginx-module does at startup.
        unsafe { SSL_CTX_set_cert_cb(ctx.as_ptr(), Some(fake_lua), std::ptr::null_mut()) };

        let t = now();
        let mut cache = CertCache::new(8);
        cache.set(b"cached.test", Some(entry("cached.test")), t + 100.0);
        cache.set(b"stale.test", Some(entry("stale.test")), t - 10.0);
        cache.set(b"missing.test", None, t + 100.0);
        let cache = Box::into_raw(Box::new(cache));
        unsafe { set_caches(vec![cache]) };

        // before attaching, every handshake is Lua's
        assert_eq!(served_cn(&ctx, "cached.test"), "fallback.test");
        assert_eq!(LUA_CALLS.load(Ordering::SeqCst), 1);

        let ssl = Ssl::new(&ctx).unwrap();
        assert!(unsafe { attach_handler(ssl.as_ptr(), fake_lua) }.unwrap());
        assert!(!unsafe { attach_handler(ssl.as_ptr(), fake_lua) }.unwrap());
        let served0 = served();

        // a fresh entry: served here, in any letter case, Lua not entered
        assert_eq!(served_cn(&ctx, "cached.test"), "cached.test");
        assert_eq!(served_cn(&ctx, "CACHED.test"), "cached.test");
        assert_eq!(LUA_CALLS.load(Ordering::SeqCst), 1);
        assert_eq!(served() - served0, 2);

        // unknown, expired and negative entries go to Lua, which keeps the fallback here
        for name in [
            "other.test",
            "stale.test",
            "missing.test",
            "under_score.test",
        ] {
            assert_eq!(served_cn(&ctx, name), "fallback.test", "{name}");
        }
        assert_eq!(LUA_CALLS.load(Ordering::SeqCst), 5);
        assert_eq!(served() - served0, 2);

        // a name the Lua phase served from another name's entry (a wildcard's)
        set_alias(b"sub.cached.test", b"cached.test", 4);
        assert_eq!(served_cn(&ctx, "Sub.Cached.Test"), "cached.test");
        assert_eq!(LUA_CALLS.load(Ordering::SeqCst), 5);
        assert_eq!(served() - served0, 3);

        // a second key type without an entry for the name: Lua's, so it can order that type
        let other = Box::into_raw(Box::new(CertCache::new(1)));
        unsafe { set_caches(vec![cache, other]) };
        assert_eq!(served_cn(&ctx, "cached.test"), "fallback.test");
        assert_eq!(LUA_CALLS.load(Ordering::SeqCst), 6);
        unsafe { set_caches(Vec::new()) };
    }

    thread_local! {
        static DICT: std::cell::RefCell<HashMap<Vec<u8>, Vec<u8>>> = Default::default();
    }

    /// Stands for lua-nginx-module's shdict get over DICT, copying as it does (malloc for a
    /// value longer than the caller's buffer).
    unsafe extern "C" fn fake_get(
        _zone: *mut c_void,
        key: *const u8,
        key_len: usize,
        value_type: *mut c_int,
        buf: *mut *mut u8,
        len: *mut usize,
        _num: *mut f64,
        _flags: *mut c_int,
        _get_stale: c_int,
        _is_stale: *mut c_int,
        _err: *mut *mut c_char,
    ) -> c_int {
        let key = unsafe { std::slice::from_raw_parts(key, key_len) }.to_vec();
        DICT.with(|d| match d.borrow().get(&key) {
            None => {
                unsafe { *value_type = 0 };
                0
            }
            Some(v) => unsafe {
                *value_type = SHDICT_STRING;
                if *len < v.len() {
                    *buf = libc::malloc(v.len()).cast();
                }
                std::ptr::copy_nonoverlapping(v.as_ptr(), *buf, v.len());
                *len = v.len();
                0
            },
        })
    }

    #[test]
    fn fills_misses_from_the_shared_dict() {
        let t = now();
        let e = entry("shared.test");
        let blob = compact::encode(&e.chain, &e.pkey, &[5; 16], t + 50.0).unwrap();
        let old = compact::encode(&e.chain, &e.pkey, &[5; 16], t - 1.0).unwrap();
        DICT.with(|d| {
            let mut d = d.borrow_mut();
            d.insert(b"ecc:shared.test".to_vec(), blob.clone());
            d.insert(b"ecc:old.test".to_vec(), old);
        });
        let zone = std::ptr::dangling_mut::<c_void>();
        let mut shared =
            unsafe { Shared::new(zone, fake_get, vec![b"ecc:".to_vec().into()]) }.unwrap();
        shared.buf = vec![0; 64]; // shorter than an entry: the malloc'ed copy is taken and freed
        let mut cache = CertCache::new(4);
        assert!(!shared.fill(0, b"none.test", t, &mut cache));
        assert!(!shared.fill(0, b"old.test", t, &mut cache));
        assert!(!shared.fill(1, b"shared.test", t, &mut cache));
        assert!(shared.fill(0, b"shared.test", t, &mut cache));
        assert!(shared.buf.len() >= blob.len());
        let Some(Found::Fresh(Some(got))) = cache.get(b"shared.test", t) else {
            panic!("no fresh entry");
        };
        assert_eq!(got.digest, [5; 16]);
        assert_eq!(got.chain[0].to_der().unwrap(), e.chain[0].to_der().unwrap());
        // a stale worker entry of the same stored value gets the shared entry's life again,
        // one of another value is replaced
        for (digest, kept) in [([5u8; 16], true), ([0u8; 16], false)] {
            let mut mine = entry("shared.test");
            mine.digest = digest;
            let mine_der = mine.chain[0].to_der().unwrap();
            cache.set(b"shared.test", Some(mine), t - 5.0);
            assert!(shared.fill(0, b"shared.test", t, &mut cache));
            let Some(Found::Fresh(Some(got))) = cache.get(b"shared.test", t) else {
                panic!("no fresh entry after the fill");
            };
            assert_eq!(got.chain[0].to_der().unwrap() == mine_der, kept);
        }
        assert!(unsafe { Shared::new(zone, fake_get, vec![b"".to_vec().into()]) }.is_none());
        assert!(unsafe { Shared::new(std::ptr::null_mut(), fake_get, Vec::new()) }.is_none());
    }

    #[test]
    fn names_are_lowered_and_checked() {
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(
            normalize(b"WWW.Example.COM", &mut buf),
            Some(&b"www.example.com"[..])
        );
        assert_eq!(normalize(b"a-1.test", &mut buf), Some(&b"a-1.test"[..]));
        for bad in [
            &b""[..],
            b"*.example.com",
            b"a b.test",
            b"a_b.test",
            b"\xc3\xa9.test",
        ] {
            assert_eq!(normalize(bad, &mut buf), None, "{bad:?}");
        }
        assert!(normalize(&[b'a'; 253], &mut buf).is_some());
        assert!(normalize(&[b'a'; 254], &mut buf).is_none());
    }
}
