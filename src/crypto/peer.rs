//! The peer-name check that nginx's cosocket handshake cannot make: an IP literal against the
//! server certificate's iPAddress SANs (RFC 5280 section 4.2.1.6, RFC 6125 section 1.7.2).
//!
//! `sslhandshake(session, name, verify)` checks a DNS name with `X509_check_host`, which never
//! looks at IP SANs, so the transport asks nginx for chain verification only and checks an IP
//! host here, on the peer certificate of the session the handshake returned.

use std::net::IpAddr;
use std::os::raw::c_void;

use foreign_types::ForeignTypeRef;
use openssl::x509::X509Ref;

use super::CryptoError;

extern "C" {
    // libssl (OpenSSL 1.1.0+): the peer certificate of a session, borrowed (no reference taken).
    fn SSL_SESSION_get0_peer(s: *mut openssl_sys::SSL_SESSION) -> *mut openssl_sys::X509;
}

/// The address an IP literal host names: `127.0.0.1`, `::1` or `[::1]`; None for a DNS name.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Whether `cert` carries `ip` among its iPAddress subject alternative names. The common name
/// is never consulted (RFC 6125 section 6.2.1: IP addresses are matched against iPAddress SANs).
pub fn cert_matches_ip(cert: &X509Ref, ip: IpAddr) -> bool {
    let want = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    match cert.subject_alt_names() {
        Some(names) => names.iter().any(|n| n.ipaddress() == Some(&want[..])),
        None => false,
    }
}

/// Whether the peer certificate of `session` (an `SSL_SESSION*`) names the IP literal `host`.
///
/// # Safety
/// `session` must be null or a live `SSL_SESSION*` for the duration of the call.
pub unsafe fn session_peer_matches_ip(
    session: *mut c_void,
    host: &str,
) -> Result<bool, CryptoError> {
    let ip = parse_ip(host)
        .ok_or_else(|| CryptoError::InvalidInput(format!("{host:?} is not an ip address")))?;
    if session.is_null() {
        return Err(CryptoError::InvalidInput("no tls session".into()));
    }
    // SAFETY: the caller guarantees `session` is a live SSL_SESSION*; get0 borrows.
    let peer = unsafe { SSL_SESSION_get0_peer(session.cast()) };
    if peer.is_null() {
        return Err(CryptoError::InvalidInput(
            "the tls session has no peer certificate".into(),
        ));
    }
    // SAFETY: `peer` is non-null and owned by the session, which outlives this borrow.
    let cert = unsafe { X509Ref::from_ptr(peer) };
    Ok(cert_matches_ip(cert, ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    fn cert(cn: &str, dns: &[&str], ips: &[&str]) -> X509 {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        if !dns.is_empty() || !ips.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for d in dns {
                san.dns(d);
            }
            for i in ips {
                san.ip(i);
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[test]
    fn ip_literals_parse_with_and_without_brackets() {
        assert_eq!(parse_ip("127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("localhost"), None);
        assert_eq!(parse_ip("127.0.0.1."), None);
        assert_eq!(parse_ip("[127.0.0.1"), None);
    }

    #[test]
    fn only_ip_sans_match() {
        let c = cert(
            "127.0.0.1",
            &["127.0.0.1", "other.example"],
            &["10.0.0.1", "::1"],
        );
        assert!(cert_matches_ip(&c, "10.0.0.1".parse().unwrap()));
        assert!(cert_matches_ip(&c, "::1".parse().unwrap()));
        // a DNS SAN or CN spelling the address is not an IP SAN
        assert!(!cert_matches_ip(&c, "127.0.0.1".parse().unwrap()));
        // ::ffff:10.0.0.1 is a different identity
        assert!(!cert_matches_ip(&c, "::ffff:10.0.0.1".parse().unwrap()));
        let none = cert("127.0.0.1", &[], &[]);
        assert!(!cert_matches_ip(&none, "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn null_session_is_an_error() {
        // SAFETY: a null session is allowed by the contract.
        let r = unsafe { session_peer_matches_ip(std::ptr::null_mut(), "127.0.0.1") };
        assert!(r.is_err());
        // SAFETY: as above.
        let r = unsafe { session_peer_matches_ip(std::ptr::null_mut(), "example.com") };
        assert!(r.is_err());
    }
}
