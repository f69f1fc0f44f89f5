//! Plain C entry points that Lua calls through LuaJIT's FFI instead of the Lua C API: an FFI
//! call is compiled into the trace of the handshake path, a `lua_CFunction` call is not.
//! Declared for Lua in lua/resty/acme/tls_cert.lua, lua/resty/acme/certcache.lua and
//! lua/resty/acme/hostname.lua.
use crate::tls::certcache::{CertCache, CertKey, Found};
use std::cell::RefCell;
use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};

thread_local! {
    /// The message of the last failed call on this thread (nginx runs Lua on one thread).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keeps `msg` as this thread's last error, points `*err` (when not null) at it, and returns -1.
fn fail(err: *mut *const c_char, msg: String) -> c_int {
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|last| {
        *last.borrow_mut() = msg;
        if !err.is_null() {
            // SAFETY: callers pass a writable `err` or null; the string lives in LAST_ERROR
            // until the next failure on this thread.
            unsafe { *err = last.borrow().as_ptr() };
        }
    });
    -1
}

/// 1 when the `len` bytes at `name` are a host name (`crate::hostname`), else 0: the SNI check
/// of every handshake.
///
/// # Safety
/// `name` points at `len` readable bytes, or is null.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_hostname_valid(name: *const u8, len: usize) -> c_int {
    if name.is_null() {
        return 0;
    }
    // SAFETY: `len` readable bytes at `name`, under this function's contract.
    let bytes = unsafe { std::slice::from_raw_parts(name, len) };
    c_int::from(crate::hostname::is_valid(bytes))
}

/// 1 when `pkey` is the key of the chain's leaf, 0 when not, -1 on bad handles.
///
/// # Safety
/// `chain` a valid `STACK_OF(X509)*` and `pkey` a valid `EVP_PKEY*`, or null.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_leaf_matches_key(
    chain: *mut c_void,
    pkey: *mut c_void,
) -> c_int {
    // SAFETY: forwarded under this function's contract.
    match unsafe { crate::tls::tls_cert::leaf_matches_key(chain.cast(), pkey.cast()) } {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(_) => -1,
    }
}

/// Lets the key `pkey` share the leaf's key object where that applies (an EC leaf read with the
/// built-in decoder): 1 with `*out` the new key and `pkey` freed, 0 when it does not apply
/// (`pkey` untouched), -1 when the key does not belong to the leaf (`pkey` untouched).
///
/// # Safety
/// `chain` a `STACK_OF(X509)*` (leaf first) and `pkey` an `EVP_PKEY*` the caller owns, both
/// live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_leaf_share_key(
    chain: *mut c_void,
    pkey: *mut c_void,
    out: *mut *mut c_void,
) -> c_int {
    if out.is_null() {
        return -1;
    }
    // SAFETY: forwarded under this function's contract.
    match unsafe { crate::tls::tls_cert::share_leaf_key(chain.cast(), pkey.cast()) } {
        Ok(Some(key)) => {
            // SAFETY: `out` is writable (contract).
            unsafe { *out = key.cast() };
            1
        }
        Ok(None) => 0,
        Err(_) => -1,
    }
}

/// Installs a chain (`STACK_OF(X509)*`, leaf first) and key (`EVP_PKEY*`), as
/// `ngx.ssl.parse_pem_cert` / `parse_pem_priv_key` return them, on the connection `ssl`
/// (`SSL*`); `clear` non-zero first drops the connection's certificates. Returns 0, or -1 with
/// `*err` set to a message that stays valid until the next call on this thread.
///
/// # Safety
/// The pointers must be what the comment above says, live for the call, from the OpenSSL nginx
/// links; `err` must be writable or null.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_ssl_set_certkey(
    ssl: *mut c_void,
    chain: *mut c_void,
    pkey: *mut c_void,
    clear: c_int,
    err: *mut *const c_char,
) -> c_int {
    // SAFETY: forwarded under this function's contract.
    let r =
        unsafe { crate::tls::tls_cert::install(ssl.cast(), chain.cast(), pkey.cast(), clear != 0) };
    match r {
        Ok(()) => 0,
        Err(e) => fail(err, e.to_string()),
    }
}

// --- the certificate cache and native serving (src/tls/certcache.rs, serve.rs) ---------
//
// A cache is created once per key type by autossl's init and never freed: the certificate
// callback keeps pointers to it for the life of the process.

/// What `resty_acme_cache_get` found: the entry's handles (null for a negative entry),
/// borrowed until the next change of that cache, and the MD5 it was parsed from.
#[repr(C)]
pub struct CacheHit {
    pub cert: *mut c_void,
    pub pkey: *mut c_void,
    pub digest: [u8; 16],
}

fn cache_key<'a>(key: *const c_char, len: usize) -> Option<&'a [u8]> {
    if key.is_null() || len == 0 {
        return None;
    }
    // SAFETY: callers pass a Lua string's bytes and length, valid for the call.
    Some(unsafe { std::slice::from_raw_parts(key.cast::<u8>(), len) })
}

/// The cache behind a pointer from `resty_acme_cache_new`, or None for null.
///
/// # Safety
/// `cache` null or from `resty_acme_cache_new` (never freed), used on one thread only, with no
/// other reference to it alive while the returned one is.
unsafe fn cache_mut<'a>(cache: *mut c_void) -> Option<&'a mut CertCache> {
    // SAFETY: a live cache, unaliased for the call (contract).
    unsafe { cache.cast::<CertCache>().as_mut() }
}

/// A new cache of `capacity` names (at least one), never freed.
#[no_mangle]
pub extern "C" fn resty_acme_cache_new(capacity: c_int) -> *mut c_void {
    let cache = CertCache::new(capacity.max(1) as usize);
    Box::into_raw(Box::new(cache)).cast()
}

/// 0 no entry, 1 an entry within its TTL, 2 an expired (stale) one; `out` gets its handles.
///
/// # Safety
/// `cache` from `resty_acme_cache_new`, used on one thread; `key` `len` readable bytes; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_cache_get(
    cache: *mut c_void,
    key: *const c_char,
    len: usize,
    now: f64,
    out: *mut CacheHit,
) -> c_int {
    let Some(key) = cache_key(key, len) else {
        return 0;
    };
    // SAFETY: a live cache, used on this thread only (contract).
    let Some(cache) = (unsafe { cache_mut(cache) }) else {
        return 0;
    };
    if out.is_null() {
        return 0;
    }
    let (rc, value) = match cache.get(key, now) {
        None => return 0,
        Some(Found::Fresh(v)) => (1, v),
        Some(Found::Stale(v)) => (2, v),
    };
    // SAFETY: `out` is writable (contract).
    let out = unsafe { &mut *out };
    match value {
        Some(entry) => {
            let (chain, pkey) = entry.as_raw();
            out.cert = chain.cast();
            out.pkey = pkey.cast();
            out.digest = entry.digest;
        }
        None => {
            out.cert = std::ptr::null_mut();
            out.pkey = std::ptr::null_mut();
            out.digest = [0; 16];
        }
    }
    rc
}

/// Stores `chain` and `pkey` (taking over one reference to each) with the `digest` (16 bytes,
/// or null) of their stored value, or with both null a negative entry, until `expires`.
/// 0, or -1 with nothing taken over.
///
/// # Safety
/// As `resty_acme_cache_get`; `chain` a `STACK_OF(X509)*` owning its elements and `pkey` an
/// `EVP_PKEY*`, which the caller no longer frees after a 0.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_cache_set(
    cache: *mut c_void,
    key: *const c_char,
    len: usize,
    chain: *mut c_void,
    pkey: *mut c_void,
    digest: *const u8,
    expires: f64,
) -> c_int {
    let Some(key) = cache_key(key, len) else {
        return -1;
    };
    // SAFETY: a live cache, used on this thread only (contract).
    let Some(cache) = (unsafe { cache_mut(cache) }) else {
        return -1;
    };
    if chain.is_null() != pkey.is_null() {
        return -1;
    }
    let value = if chain.is_null() {
        None
    } else {
        let mut d = [0u8; 16];
        if !digest.is_null() {
            // SAFETY: a non-null digest has 16 readable bytes (contract).
            d.copy_from_slice(unsafe { std::slice::from_raw_parts(digest, 16) });
        }
        // SAFETY: ownership of both handles passes to the entry (contract).
        Some(unsafe { CertKey::from_raw(chain.cast(), pkey.cast(), d) })
    };
    cache.set(key, value, expires);
    0
}

/// Moves a positive entry's expiry to `expires`, when it was parsed from a stored value of
/// `digest` (16 bytes; null: any). 1 when it did, 0 when there is no such entry.
///
/// # Safety
/// As `resty_acme_cache_get`; `digest` null or 16 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_cache_refresh(
    cache: *mut c_void,
    key: *const c_char,
    len: usize,
    digest: *const u8,
    expires: f64,
) -> c_int {
    let Some(key) = cache_key(key, len) else {
        return 0;
    };
    // SAFETY: a live cache, used on this thread only (contract).
    let Some(cache) = (unsafe { cache_mut(cache) }) else {
        return 0;
    };
    let digest = if digest.is_null() {
        None
    } else {
        // SAFETY: 16 readable bytes (contract).
        let d: &[u8; 16] = unsafe { &*digest.cast::<[u8; 16]>() };
        Some(d)
    };
    c_int::from(cache.refresh(key, digest, expires))
}

/// Drops the entry of `key`. 1 when there was one.
///
/// # Safety
/// As `resty_acme_cache_get`.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_cache_delete(
    cache: *mut c_void,
    key: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: a live cache, used on this thread only (contract).
    match (cache_key(key, len), unsafe { cache_mut(cache) }) {
        (Some(key), Some(cache)) => c_int::from(cache.delete(key)),
        _ => 0,
    }
}

/// The entry of `key` as new references that the caller owns (to free as ngx.ssl's parsed
/// chain and key): 0, or -1 when there is no positive entry.
///
/// # Safety
/// As `resty_acme_cache_get`; `chain_out` and `pkey_out` writable.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_cache_get_owned(
    cache: *mut c_void,
    key: *const c_char,
    len: usize,
    chain_out: *mut *mut c_void,
    pkey_out: *mut *mut c_void,
) -> c_int {
    let Some(key) = cache_key(key, len) else {
        return -1;
    };
    // SAFETY: a live cache, used on this thread only (contract).
    let Some(cache) = (unsafe { cache_mut(cache) }) else {
        return -1;
    };
    if chain_out.is_null() || pkey_out.is_null() {
        return -1;
    }
    let entry = match cache.get(key, f64::NEG_INFINITY) {
        Some(Found::Fresh(Some(e))) | Some(Found::Stale(Some(e))) => e,
        _ => return -1,
    };
    match entry.to_owned_raw() {
        Ok((chain, pkey)) => {
            // SAFETY: both out-pointers are writable (contract).
            unsafe {
                *chain_out = chain.cast();
                *pkey_out = pkey.cast();
            }
            0
        }
        Err(_) => -1,
    }
}

/// The caches the native certificate callback serves from, one per key type in order.
///
/// # Safety
/// `caches` holds `n` pointers from `resty_acme_cache_new`.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_serve_set_caches(caches: *const *mut c_void, n: c_int) {
    let list = if caches.is_null() || n <= 0 {
        Vec::new()
    } else {
        // SAFETY: `n` readable pointers (contract).
        unsafe { std::slice::from_raw_parts(caches, n as usize) }
            .iter()
            .map(|p| p.cast())
            .collect()
    };
    // SAFETY: caches from resty_acme_cache_new are never freed; nginx uses them on one thread.
    unsafe { crate::tls::serve::set_caches(list) };
}

/// The node's shared cache the native certificate callback fills misses from: the
/// `ngx_shm_zone_t*` of a `lua_shared_dict`, the subsystem's `ngx_*_lua_ffi_shdict_get`, and
/// the dict-key prefix of each cache in order, comma-separated (`ecc:,rsa:`: keys
/// `ecc:<name>`, as sharedcache.lua makes them). A null zone or function turns it off. 0, or
/// -1 when the prefixes are not usable.
///
/// # Safety
/// `zone` and `get` as `serve::Shared::new` requires; `prefixes` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_serve_set_shared(
    zone: *mut c_void,
    get: *mut c_void,
    prefixes: *const c_char,
    len: usize,
) -> c_int {
    use crate::tls::serve::{set_shared, Shared, ShdictGet};
    if zone.is_null() || get.is_null() || prefixes.is_null() {
        // SAFETY: nginx serves handshakes and runs Lua on one thread.
        unsafe { set_shared(None) };
        return 0;
    }
    // SAFETY: `len` readable bytes (contract).
    let prefixes = unsafe { std::slice::from_raw_parts(prefixes.cast::<u8>(), len) }
        .split(|&c| c == b',')
        .map(Box::from)
        .collect();
    // SAFETY: `get` is the shdict-get function (contract), which has this signature.
    let get = unsafe { std::mem::transmute::<*mut c_void, ShdictGet>(get) };
    // SAFETY: forwarded under this function's contract.
    match unsafe { Shared::new(zone, get, prefixes) } {
        Some(shared) => {
            // SAFETY: as above.
            unsafe { set_shared(Some(shared)) };
            0
        }
        None => -1,
    }
}

/// Lets the native certificate callback serve `name` from the entries of `target` (a name the
/// Lua phase mapped to a wildcard's entry); at most `cap` names are kept.
///
/// # Safety
/// `name` and `target` readable for `len` / `tlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_serve_alias(
    name: *const c_char,
    len: usize,
    target: *const c_char,
    tlen: usize,
    cap: c_int,
) {
    if let (Some(name), Some(target)) = (cache_key(name, len), cache_key(target, tlen)) {
        crate::tls::serve::set_alias(name, target, cap.max(1) as usize);
    }
}

/// Puts the native certificate callback in front of the handler exported as `handler` on the
/// context of `ssl`: 1 attached now, 0 attached before, -1 with `*err` set.
///
/// # Safety
/// `ssl` a live `SSL*` in its certificate phase; `handler` a NUL-terminated string; `err`
/// writable or null.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_serve_attach(
    ssl: *mut c_void,
    handler: *const c_char,
    err: *mut *const c_char,
) -> c_int {
    if handler.is_null() {
        return fail(err, "no handler name".into());
    }
    // SAFETY: NUL-terminated (contract).
    let handler = unsafe { std::ffi::CStr::from_ptr(handler) };
    // SAFETY: forwarded under this function's contract.
    match unsafe { crate::tls::serve::attach(ssl.cast(), handler) } {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => fail(err, e.to_string()),
    }
}

/// Handshakes the native callback served (a double: exact far beyond any real count).
#[no_mangle]
pub extern "C" fn resty_acme_serve_count() -> f64 {
    crate::tls::serve::served() as f64
}

// --- the node-wide second cache level (src/tls/compact.rs) -----------------------------

/// Writes the compact form of `chain` and `pkey` (handles as the cache holds them, borrowed)
/// with `digest` (16 bytes) and `expires` into `buf` when it has room for it. Returns its
/// length (greater than `cap`: nothing written, call again with that room), or -1 with `*err`.
///
/// # Safety
/// `chain` a valid `STACK_OF(X509)*`, `pkey` a valid `EVP_PKEY*`, `digest` 16 readable bytes,
/// `buf` `cap` writable bytes, `err` writable or null.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_compact_encode(
    chain: *mut c_void,
    pkey: *mut c_void,
    digest: *const u8,
    expires: f64,
    buf: *mut u8,
    cap: usize,
    err: *mut *const c_char,
) -> i64 {
    use foreign_types::ForeignTypeRef;
    use openssl::pkey::PKeyRef;
    use openssl::stack::StackRef;
    if chain.is_null() || pkey.is_null() || digest.is_null() {
        return fail(err, "no chain, key or digest to encode".into()) as i64;
    }
    // SAFETY: valid handles borrowed for the call, 16 digest bytes (contract).
    let (chain, pkey, digest) = unsafe {
        (
            StackRef::<openssl::x509::X509>::from_ptr(chain.cast()),
            PKeyRef::from_ptr(pkey.cast()),
            &*digest.cast::<[u8; 16]>(),
        )
    };
    match crate::tls::compact::encode(chain, pkey, digest, expires) {
        Ok(bytes) => {
            if bytes.len() <= cap && !buf.is_null() {
                // SAFETY: `cap` writable bytes (contract), and the entry fits.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len()) };
            }
            bytes.len() as i64
        }
        Err(e) => fail(err, e.to_string()) as i64,
    }
}

fn bytes_of<'a>(data: *const c_char, len: usize) -> &'a [u8] {
    if data.is_null() {
        return &[];
    }
    // SAFETY: callers pass a Lua string's bytes and length, valid for the call.
    unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
}

/// The expiry of a compact entry (its digest into `digest`, 16 writable bytes, when not null),
/// or -1 when it is not one.
///
/// # Safety
/// `data` `len` readable bytes; `digest` null or 16 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_compact_header(
    data: *const c_char,
    len: usize,
    digest: *mut u8,
) -> f64 {
    match crate::tls::compact::header(bytes_of(data, len)) {
        Ok((d, expires)) => {
            if !digest.is_null() {
                // SAFETY: 16 writable bytes (contract).
                unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), digest, 16) };
            }
            expires
        }
        Err(_) => -1.0,
    }
}

/// Loads a compact entry into `out`: a chain and a key of the caller's own (freed as ngx.ssl's
/// parsed ones) and the digest. 0, or -1 with `*err`.
///
/// # Safety
/// `data` `len` readable bytes; `out` writable; `err` writable or null.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_compact_decode(
    data: *const c_char,
    len: usize,
    out: *mut CacheHit,
    err: *mut *const c_char,
) -> c_int {
    use foreign_types::ForeignType;
    if out.is_null() {
        return fail(err, "nowhere to load the entry".into());
    }
    match crate::tls::compact::decode(bytes_of(data, len)) {
        Ok((entry, _)) => {
            let digest = entry.digest;
            let chain = std::mem::ManuallyDrop::new(entry.chain);
            let pkey = std::mem::ManuallyDrop::new(entry.pkey);
            // SAFETY: `out` is writable (contract); ownership of both handles passes to it.
            let out = unsafe { &mut *out };
            out.cert = chain.as_ptr().cast();
            out.pkey = pkey.as_ptr().cast();
            out.digest = digest;
            0
        }
        Err(e) => fail(err, e.to_string()),
    }
}
