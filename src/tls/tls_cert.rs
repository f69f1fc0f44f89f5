//! Installing a cached certificate chain and key on a connection in nginx's certificate phase.
//!
//! `ngx.ssl` takes three calls for it (`clear_certs`, `set_cert`, `set_priv_key`), and OpenSSL
//! checks the key against the certificate and fetches a signature method for the key on the
//! way. `SSL_use_cert_and_key` installs leaf, key and chain in one call with one check; the
//! handles are the ones `ngx.ssl.parse_pem_cert` / `parse_pem_priv_key` return (a
//! `STACK_OF(X509)*` and an `EVP_PKEY*` of the same libcrypto nginx links).
use crate::crypto::CryptoError;
use openssl::error::ErrorStack;
use openssl_sys as ffi;
use std::os::raw::{c_int, c_long, c_void};

extern "C" {
    fn SSL_certs_clear(s: *mut ffi::SSL);
    fn X509_check_private_key(x: *const ffi::X509, k: *const ffi::EVP_PKEY) -> c_int;
    fn SSL_use_cert_and_key(
        ssl: *mut ffi::SSL,
        x509: *mut ffi::X509,
        privatekey: *mut ffi::EVP_PKEY,
        chain: *mut ffi::stack_st_X509,
        override_: c_int,
    ) -> c_int;
}

/// The OpenSSL errors of a failed call, drained so that none is left for nginx to report
/// against the handshake.
fn openssl_error(what: &str) -> CryptoError {
    let stack = ErrorStack::get();
    if stack.errors().is_empty() {
        CryptoError::InvalidInput(format!("{what} failed"))
    } else {
        CryptoError::InvalidInput(format!("{what}: {stack}"))
    }
}

/// The leaf of `chain` and the number of certificates in it; an error for an empty chain.
///
/// # Safety
/// `chain` must be a valid, non-null `STACK_OF(X509)*`.
unsafe fn leaf_of(chain: *mut ffi::stack_st_X509) -> Result<(*mut ffi::X509, c_int), CryptoError> {
    // SAFETY: `chain` is a valid stack (caller's contract); num/value only read it.
    let count = unsafe { ffi::OPENSSL_sk_num(chain.cast()) };
    if count < 1 {
        return Err(CryptoError::InvalidInput(
            "the certificate chain is empty".into(),
        ));
    }
    // SAFETY: index 0 exists (count >= 1); the stack holds X509 pointers.
    Ok((
        unsafe { ffi::OPENSSL_sk_value(chain.cast(), 0) }.cast(),
        count,
    ))
}

/// Installs `chain` (leaf first, then its intermediates) and `pkey` on `ssl`, in the slot of
/// the key's type; `clear` first drops every certificate the connection had (the fallback).
/// Certificates and key are up-ref'd: the caller keeps its handles.
///
/// # Safety
/// `ssl` must be the live `SSL*` of a connection in its handshake that nothing else uses
/// during the call, `chain` a valid `STACK_OF(X509)*` and `pkey` a valid `EVP_PKEY*`, all from
/// the libcrypto/libssl this library is linked with.
pub unsafe fn install(
    ssl: *mut ffi::SSL,
    chain: *mut ffi::stack_st_X509,
    pkey: *mut ffi::EVP_PKEY,
    clear: bool,
) -> Result<(), CryptoError> {
    if ssl.is_null() || chain.is_null() || pkey.is_null() {
        return Err(CryptoError::InvalidInput(
            "no connection, chain or key to install".into(),
        ));
    }
    // SAFETY: `chain` is valid and non-null (caller's contract, checked above).
    let (leaf, count) = unsafe { leaf_of(chain) }?;
    if clear {
        // SAFETY: `ssl` is live and ours for the call (caller's contract).
        unsafe { SSL_certs_clear(ssl) };
    }
    // The chain goes in below with add1 (no temporary stack); override replaces the slot.
    // SAFETY: all pointers are valid (caller's contract); OpenSSL up-refs leaf and key.
    if unsafe { SSL_use_cert_and_key(ssl, leaf, pkey, std::ptr::null_mut(), 1) } != 1 {
        return Err(openssl_error("installing the certificate and key"));
    }
    for i in 1..count {
        // SAFETY: 0 < i < count; the element is an X509 of the caller's stack.
        let x = unsafe { ffi::OPENSSL_sk_value(chain.cast(), i) }.cast::<c_void>();
        // SAFETY: SSL_add1_chain_cert is SSL_ctrl(CHAIN_CERT, 1, x): it up-refs `x` and adds it
        // to the chain of the slot just installed.
        if unsafe { ffi::SSL_ctrl(ssl, ffi::SSL_CTRL_CHAIN_CERT, 1 as c_long, x) } != 1 {
            return Err(openssl_error("adding an intermediate certificate"));
        }
    }
    Ok(())
}

/// Whether `pkey` is the private key of the chain's leaf (`X509_check_private_key`), checked
/// once when a stored entry is cached so that a mismatched store entry is refused with its
/// cause instead of failing every handshake. OpenSSL's errors of a mismatch are drained.
///
/// # Safety
/// `chain` must be a valid `STACK_OF(X509)*` and `pkey` a valid `EVP_PKEY*`.
pub unsafe fn leaf_matches_key(
    chain: *mut ffi::stack_st_X509,
    pkey: *mut ffi::EVP_PKEY,
) -> Result<bool, CryptoError> {
    if chain.is_null() || pkey.is_null() {
        return Err(CryptoError::InvalidInput("no chain or key".into()));
    }
    // SAFETY: `chain` is valid and non-null (caller's contract, checked above).
    let (leaf, _) = unsafe { leaf_of(chain) }?;
    // SAFETY: both handles are valid (caller's contract).
    let ok = unsafe { X509_check_private_key(leaf, pkey) };
    let _ = ErrorStack::get();
    Ok(ok == 1)
}

/// For an EC leaf with a built-in key (src/crypto/leaf.rs): the key `pkey` as one that shares
/// the leaf's key object (one copy of the curve per cached name instead of three). Ok(Some(new))
/// when it did: `pkey` has been freed and `new` takes its place; Ok(None) when it does not apply
/// (another key type, a provider-decoded leaf): `pkey` is untouched; Err when the key does not
/// belong to the leaf (`pkey` untouched).
///
/// # Safety
/// `chain` a valid non-empty `STACK_OF(X509)*`, `pkey` a valid `EVP_PKEY*` the caller owns.
pub unsafe fn share_leaf_key(
    chain: *mut ffi::stack_st_X509,
    pkey: *mut ffi::EVP_PKEY,
) -> Result<Option<*mut ffi::EVP_PKEY>, CryptoError> {
    if chain.is_null() || pkey.is_null() {
        return Err(CryptoError::InvalidInput("no chain or key".into()));
    }
    use foreign_types::{ForeignType, ForeignTypeRef};
    // SAFETY: `chain` is valid and non-null (caller's contract, checked above).
    let (leaf, _) = unsafe { leaf_of(chain) }?;
    // SAFETY: both are valid and borrowed for the call only.
    let (leaf, key) = unsafe {
        (
            openssl::x509::X509Ref::from_ptr(leaf),
            openssl::pkey::PKeyRef::<openssl::pkey::Private>::from_ptr(pkey),
        )
    };
    match crate::crypto::leaf::ec_key_for_leaf_from(leaf, key) {
        None => Ok(None),
        Some(Err(e)) => Err(e),
        Some(Ok(shared)) => {
            // SAFETY: the caller's key, which it hands over on this outcome.
            unsafe { ffi::EVP_PKEY_free(pkey) };
            Ok(Some(std::mem::ManuallyDrop::new(shared).as_ptr()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};
    use foreign_types::{ForeignType, ForeignTypeRef};
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{Ssl, SslContext, SslMethod};
    use openssl::stack::Stack;
    use openssl::x509::X509;

    /// A P-256 leaf for example.com issued by an intermediate, and the leaf's key.
    fn chain_and_key() -> (X509, X509, PKey<Private>) {
        let ca_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let inter = issue(&spec("Test Intermediate", "01", true, &[]), &ca_key, None);
        let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let leaf = issue(
            &spec("example.com", "02", false, &["example.com"]),
            &leaf_key,
            Some((&inter, &ca_key)),
        );
        (leaf, inter, leaf_key.pkey)
    }

    /// ssl.h: SSL_get0_chain_certs is SSL_ctrl(115); openssl-sys has no constant for it.
    const SSL_CTRL_GET_CHAIN_CERTS: c_int = 115;

    fn other_key() -> PKey<Private> {
        PrivateKey::generate(KeyType::EcP256).unwrap().pkey
    }

    fn stack(certs: &[X509]) -> Stack<X509> {
        let mut s = Stack::new().unwrap();
        for c in certs {
            s.push(c.clone()).unwrap();
        }
        s
    }

    /// A server connection of its own context (the context lives as long as the connection).
    fn new_ssl() -> Ssl {
        let ctx = SslContext::builder(SslMethod::tls_server())
            .unwrap()
            .build();
        Ssl::new(&ctx).unwrap()
    }

    #[test]
    fn installs_leaf_key_and_chain() {
        let (leaf, inter, key) = chain_and_key();
        let ssl = new_ssl();
        let chain = stack(&[leaf.clone(), inter.clone()]);
        unsafe { install(ssl.as_ptr(), chain.as_ptr(), key.as_ptr(), true) }.unwrap();
        let served = ssl.certificate().unwrap();
        assert_eq!(served.to_der().unwrap(), leaf.to_der().unwrap());
        assert!(ssl.private_key().unwrap().public_eq(&key));
        // SSL_get0_chain_certs: the intermediate, once
        let mut sk: *mut ffi::stack_st_X509 = std::ptr::null_mut();
        let rc = unsafe {
            ffi::SSL_ctrl(
                ssl.as_ptr(),
                SSL_CTRL_GET_CHAIN_CERTS,
                0,
                (&mut sk as *mut *mut ffi::stack_st_X509).cast(),
            )
        };
        assert_eq!(rc, 1);
        assert_eq!(unsafe { ffi::OPENSSL_sk_num(sk.cast()) }, 1);
        let x = unsafe { ffi::OPENSSL_sk_value(sk.cast(), 0) }.cast::<ffi::X509>();
        let x = unsafe { openssl::x509::X509Ref::from_ptr(x) };
        assert_eq!(x.to_der().unwrap(), inter.to_der().unwrap());
        // the caller's handles stay valid after the connection is gone
        drop(ssl);
        assert!(leaf.to_der().is_ok() && key.private_key_to_pem_pkcs8().is_ok());
    }

    #[test]
    fn refuses_a_key_of_another_certificate_and_leaves_no_error_queued() {
        let (leaf, inter, _) = chain_and_key();
        let wrong = other_key();
        let ssl = new_ssl();
        let chain = stack(&[leaf, inter]);
        let err = unsafe { install(ssl.as_ptr(), chain.as_ptr(), wrong.as_ptr(), true) }
            .unwrap_err()
            .to_string();
        assert!(err.contains("installing the certificate and key"), "{err}");
        assert!(ErrorStack::get().errors().is_empty());
    }

    #[test]
    fn tells_whether_the_key_belongs_to_the_leaf() {
        let (leaf, inter, key) = chain_and_key();
        let chain = stack(&[leaf, inter]);
        assert!(unsafe { leaf_matches_key(chain.as_ptr(), key.as_ptr()) }.unwrap());
        let wrong = other_key();
        assert!(!unsafe { leaf_matches_key(chain.as_ptr(), wrong.as_ptr()) }.unwrap());
        assert!(ErrorStack::get().errors().is_empty());
        let empty: Stack<X509> = Stack::new().unwrap();
        assert!(unsafe { leaf_matches_key(empty.as_ptr(), key.as_ptr()) }.is_err());
    }

    #[test]
    fn refuses_an_empty_chain_and_null_handles() {
        let (_, _, key) = chain_and_key();
        let ssl = new_ssl();
        let empty: Stack<X509> = Stack::new().unwrap();
        let err = unsafe { install(ssl.as_ptr(), empty.as_ptr(), key.as_ptr(), true) }
            .unwrap_err()
            .to_string();
        assert!(err.contains("chain is empty"), "{err}");
        let err = unsafe { install(std::ptr::null_mut(), empty.as_ptr(), key.as_ptr(), true) }
            .unwrap_err()
            .to_string();
        assert!(err.contains("no connection"), "{err}");
    }
}
