//! Answering a tls-alpn-01 validation (RFC 8737 §3) on nginx's own TLS listener, without a
//! stream module: the connection is moved to a challenge-only SSL_CTX during the ClientHello.
//!
//! nginx's servername callback would switch the connection back to the virtual server's
//! context, and its ALPN callback refuses `acme-tls/1`. OpenSSL takes both callbacks from the
//! connection's *current* context, so after the switch the challenge context's own callbacks run:
//! a servername callback that keeps it, and an ALPN callback that selects `acme-tls/1`. In
//! TLS 1.3 ALPN is decided before the certificate callback, which is why this must happen in
//! the ClientHello phase.
use crate::crypto::{CryptoError, PrivateKey};
use foreign_types::ForeignTypeRef;
use once_cell::sync::OnceCell;
use openssl::pkey::PKey;
use openssl::ssl::{
    select_next_proto, AlpnError, SslContext, SslContextBuilder, SslMethod, SslRef,
};
use openssl::x509::X509;

/// The ALPN protocol of RFC 8737 §6.2, in wire format.
const ACME_TLS_1: &[u8] = b"\x0aacme-tls/1";

static CHALLENGE_CTX: OnceCell<SslContext> = OnceCell::new();

fn challenge_ctx() -> Result<&'static SslContext, CryptoError> {
    CHALLENGE_CTX.get_or_try_init(|| {
        let mut b = SslContextBuilder::new(SslMethod::tls_server())?;
        b.set_alpn_select_callback(|_, client| {
            select_next_proto(ACME_TLS_1, client).ok_or(AlpnError::ALERT_FATAL)
        });
        // Keep this context: without our own callback OpenSSL would fall back to nginx's.
        b.set_servername_callback(|_, _| Ok(()));
        Ok(b.build())
    })
}

/// Whether a raw ALPN ClientHello extension (RFC 7301 §3.1) offers `acme-tls/1`.
pub fn offers_acme_tls_1(ext: &[u8]) -> bool {
    if ext.len() < 2 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    let mut list = &ext[2..ext.len().min(2 + total)];
    while let Some((&len, rest)) = list.split_first() {
        let len = usize::from(len);
        if len == 0 || rest.len() < len {
            return false;
        }
        if &rest[..len] == b"acme-tls/1" {
            return true;
        }
        list = &rest[len..];
    }
    false
}

/// Switches the connection `ssl` to the challenge context and installs the challenge
/// certificate and key on it.
///
/// # Safety
/// `ssl` must be the live `SSL*` of a connection in its handshake, as nginx's
/// `ngx.ssl.get_req_ssl_pointer()` returns it, and no other reference to it may be in use.
pub unsafe fn serve_challenge(
    ssl: *mut openssl_sys::SSL,
    cert: &X509,
    key: &PrivateKey,
) -> Result<(), CryptoError> {
    if ssl.is_null() {
        return Err(CryptoError::InvalidInput("no ssl connection".into()));
    }
    let ctx = challenge_ctx()?;
    // SAFETY: the caller guarantees `ssl` is a live connection that nothing else touches now.
    let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
    ssl.set_ssl_context(ctx)?;
    set_cert_and_key(ssl, cert, &key.pkey)
}

fn set_cert_and_key(
    ssl: &mut SslRef,
    cert: &X509,
    key: &PKey<openssl::pkey::Private>,
) -> Result<(), CryptoError> {
    ssl.set_certificate(cert)?;
    ssl.set_private_key(key)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_acme_tls_1_in_alpn_lists() {
        assert!(offers_acme_tls_1(b"\x00\x0b\x0aacme-tls/1"));
        assert!(offers_acme_tls_1(b"\x00\x0e\x02h2\x0aacme-tls/1"));
        assert!(!offers_acme_tls_1(b"\x00\x0c\x02h2\x08http/1.1"));
        assert!(!offers_acme_tls_1(b"\x00\x0b\x0aacme-tls/2"));
        assert!(!offers_acme_tls_1(b"\x00\x0c\x0bacme-tls/1"));
        assert!(!offers_acme_tls_1(b""));
        assert!(!offers_acme_tls_1(b"\x00\x01\x00"));
    }

    #[test]
    fn challenge_context_selects_acme_tls_1() {
        assert!(challenge_ctx().is_ok());
        assert_eq!(
            select_next_proto(ACME_TLS_1, b"\x02h2\x0aacme-tls/1"),
            Some(&b"acme-tls/1"[..])
        );
        assert_eq!(select_next_proto(ACME_TLS_1, b"\x02h2"), None);
    }
}
