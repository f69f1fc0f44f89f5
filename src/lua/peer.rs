//! The FFI entry point of the transport's IP peer-name check (lua/resty/acme/transport.lua):
//! the session pointer that `sslhandshake` returns is a cdata only the FFI can pass on.
use std::os::raw::{c_char, c_int, c_void};

/// 1 when the peer certificate of `session` (an `SSL_SESSION*`) has the IP literal
/// `host[0..len]` among its iPAddress SANs, 0 when it has not, -1 when that cannot be told
/// (null session, no peer certificate, `host` not an IP literal).
///
/// # Safety
/// `session` null or a live `SSL_SESSION*`; `host` null or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn resty_acme_session_peer_ip_matches(
    session: *mut c_void,
    host: *const c_char,
    len: usize,
) -> c_int {
    if host.is_null() {
        return -1;
    }
    // SAFETY: the caller guarantees `host` is readable for `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(host.cast::<u8>(), len) };
    let Ok(host) = std::str::from_utf8(bytes) else {
        return -1;
    };
    // SAFETY: forwarded under this function's contract.
    match unsafe { crate::crypto::peer::session_peer_matches_ip(session, host) } {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(_) => -1,
    }
}
