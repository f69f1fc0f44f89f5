//! Plain C entry points that Lua calls through LuaJIT's FFI instead of the Lua C API: an FFI
//! call is compiled into the trace of the handshake path, a `lua_CFunction` call is not.
//! Declared for Lua in lua/resty/acme/tls_cert.lua.
use std::cell::RefCell;
use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};

thread_local! {
    /// The message of the last failed call on this thread (nginx runs Lua on one thread).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
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
    match unsafe { crate::crypto::tls_cert::leaf_matches_key(chain.cast(), pkey.cast()) } {
        Ok(true) => 1,
        Ok(false) => 0,
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
    let r = unsafe {
        crate::crypto::tls_cert::install(ssl.cast(), chain.cast(), pkey.cast(), clear != 0)
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            let msg = CString::new(e.to_string().replace('\0', " ")).unwrap_or_default();
            LAST_ERROR.with(|last| {
                *last.borrow_mut() = msg;
                if !err.is_null() {
                    // SAFETY: `err` is writable (contract); the string lives in LAST_ERROR
                    // until the next failure on this thread.
                    unsafe { *err = last.borrow().as_ptr() };
                }
            });
            -1
        }
    }
}
