//! Challenge artefacts: key authorization (RFC 8555 §8.1), dns-01 digest (§8.4) and the
//! tls-alpn-01 certificate (RFC 8737 §3).
use super::csr::Identifier;
use super::digest::sha256;
use super::encoding::b64url;
use super::{CryptoError, KeyType, PrivateKey};
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id-pe-acmeIdentifier extension (RFC 8737 §6.1).
pub const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// `token "." thumbprint`.
pub fn key_authorization(token: &str, thumbprint: &str) -> String {
    format!("{token}.{thumbprint}")
}

/// The dns-01 TXT value: base64url(SHA-256(key authorization)).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64url(&sha256(key_authorization.as_bytes()))
}

/// The extnValue of the acmeIdentifier extension: the DER of
/// `Authorization ::= OCTET STRING (SIZE (32))` holding SHA-256(key authorization)
/// (RFC 8737 §3), i.e. `04 20` followed by the digest.
pub fn acme_identifier_value(key_authorization: &str) -> Vec<u8> {
    let mut der = Vec::with_capacity(34);
    der.extend_from_slice(&[0x04, 0x20]);
    der.extend_from_slice(&sha256(key_authorization.as_bytes()));
    der
}

/// A self-signed certificate for `identifier` (DNS name or IP literal) carrying the critical
/// acmeIdentifier extension (1.3.6.1.5.5.7.1.31) with SHA-256(key authorization), and its
/// key, a fresh P-256 key.
pub fn tls_alpn01_cert(
    identifier: &str,
    key_authorization: &str,
) -> Result<(X509, PrivateKey), CryptoError> {
    if key_authorization.is_empty() {
        return Err(CryptoError::InvalidInput("empty key authorization".into()));
    }
    let ident = Identifier::parse(identifier)?;
    let key = PrivateKey::generate(KeyType::EcP256)?;

    let mut b = X509Builder::new()?;
    b.set_version(2)?; // X.509 v3: extensions are required.
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    b.set_serial_number(&serial)?;

    let mut name = X509NameBuilder::new()?;
    match &ident {
        Identifier::Dns(d) if d.len() <= 64 => name.append_entry_by_nid(Nid::COMMONNAME, d)?,
        _ => name.append_entry_by_nid(Nid::COMMONNAME, "acme-tls-alpn-01")?,
    }
    let name = name.build();
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CryptoError::InvalidInput("system clock is before 1970".into()))?
        .as_secs();
    let now = i64::try_from(now)
        .map_err(|_| CryptoError::InvalidInput("system clock out of range".into()))?;
    // Backdated a day against validator clock skew; short-lived, it only answers one challenge.
    let not_before = Asn1Time::from_unix(now - 86_400)?;
    let not_after = Asn1Time::from_unix(now + 7 * 86_400)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.set_pubkey(&key.pkey)?;

    // RFC 8737 §3: the SAN holds exactly the identifier being validated (RFC 8738 §6 for IPs).
    let mut san = SubjectAlternativeName::new();
    match &ident {
        Identifier::Dns(d) => san.dns(d),
        Identifier::Ip(ip) => san.ip(&ip.to_string()),
    };
    let san = san.build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;

    // RFC 8737 §3: the acmeIdentifier extension MUST be critical.
    let oid = Asn1Object::from_str(ACME_IDENTIFIER_OID)?;
    let value = Asn1OctetString::new_from_bytes(&acme_identifier_value(key_authorization))?;
    b.append_extension(X509Extension::new_from_der(&oid, true, &value)?)?;

    b.sign(&key.pkey, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// [`tls_alpn01_cert`] as (certificate PEM, private key PEM), for ngx.ssl in the certificate
/// phase.
pub fn tls_alpn01_certificate(
    identifier: &str,
    key_authorization: &str,
) -> Result<(String, String), CryptoError> {
    let (cert, key) = tls_alpn01_cert(identifier, key_authorization)?;
    let cert_pem = String::from_utf8(cert.to_pem()?)
        .map_err(|_| CryptoError::Openssl("pem output is not utf-8".into()))?;
    Ok((cert_pem, key.to_pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509;
    use std::net::IpAddr;

    #[test]
    fn key_authorization_and_dns01() {
        let ka = key_authorization("tok", "thumb");
        assert_eq!(ka, "tok.thumb");
        // RFC 8555 §8.4 computes the digest of the key authorization; a fixed vector:
        // SHA-256("abc") in base64url.
        assert_eq!(
            dns01_txt_value("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert_eq!(dns01_txt_value(&ka).len(), 43);
    }

    /// Returns (critical, extnValue) of the extension with `oid` in a parsed certificate, via
    /// the DER of the whole certificate (the openssl crate has no extension iterator for X509).
    fn find_extension(cert: &X509, oid: &[u8]) -> Option<(bool, Vec<u8>)> {
        let der = cert.to_der().unwrap();
        // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
        let mut needle = vec![0x06, oid.len() as u8];
        needle.extend_from_slice(oid);
        let pos = der.windows(needle.len()).position(|w| w == needle)?;
        let mut rest = &der[pos + needle.len()..];
        let mut critical = false;
        if rest[0] == 0x01 {
            assert_eq!(rest[1], 1);
            critical = rest[2] == 0xff;
            rest = &rest[3..];
        }
        assert_eq!(rest[0], 0x04, "extnValue is an OCTET STRING");
        let len = rest[1] as usize;
        Some((critical, rest[2..2 + len].to_vec()))
    }

    const ACME_ID_OID_DER: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];

    #[test]
    fn tls_alpn_certificate_dns() {
        let ka = "token123.thumbprint456";
        let (cert_pem, key_pem) = tls_alpn01_certificate("example.com", ka).unwrap();
        let cert = X509::from_pem(cert_pem.as_bytes()).unwrap();
        let key = PrivateKey::from_pem(key_pem.as_bytes()).unwrap();
        assert_eq!(key.key_type(), KeyType::EcP256);
        assert!(cert.public_key().unwrap().public_eq(&key.pkey));
        assert!(cert.verify(&key.pkey).unwrap()); // self-signed
        assert_eq!(cert.version(), 2);

        let sans: Vec<String> = cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|g| g.dnsname().unwrap().to_owned())
            .collect();
        assert_eq!(sans, ["example.com"]);

        let (critical, value) = find_extension(&cert, &ACME_ID_OID_DER).unwrap();
        assert!(critical);
        let mut want = vec![0x04, 0x20];
        want.extend_from_slice(&openssl::sha::sha256(ka.as_bytes()));
        assert_eq!(value, want);
        assert_eq!(value, acme_identifier_value(ka));

        // Valid now.
        let now = Asn1Time::days_from_now(0).unwrap();
        assert!(cert.not_before() < now);
        assert!(cert.not_after() > now);

        let info = crate::crypto::cert::parse_chain(cert_pem.as_bytes()).unwrap();
        assert_eq!(info[0].subject_cn.as_deref(), Some("example.com"));
        assert_eq!(info[0].key_type, "ecc");
    }

    #[test]
    fn tls_alpn_certificate_ip_and_fresh_keys() {
        let (cert_pem, key_pem) = tls_alpn01_certificate("2001:db8::1", "a.b").unwrap();
        let cert = X509::from_pem(cert_pem.as_bytes()).unwrap();
        let ips: Vec<IpAddr> = cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|g| <[u8; 16]>::try_from(g.ipaddress().unwrap()).unwrap().into())
            .collect();
        assert_eq!(ips, ["2001:db8::1".parse::<IpAddr>().unwrap()]);
        let (critical, _) = find_extension(&cert, &ACME_ID_OID_DER).unwrap();
        assert!(critical);

        let (cert2, key2) = tls_alpn01_certificate("2001:db8::1", "a.b").unwrap();
        assert_ne!(key_pem, key2);
        assert_ne!(
            X509::from_pem(cert2.as_bytes())
                .unwrap()
                .serial_number()
                .to_bn()
                .unwrap(),
            cert.serial_number().to_bn().unwrap()
        );
    }

    #[test]
    fn tls_alpn_certificate_rejects_bad_input() {
        assert!(matches!(
            tls_alpn01_certificate("bad name", "a.b"),
            Err(CryptoError::InvalidInput(_))
        ));
        assert!(matches!(
            tls_alpn01_certificate("example.com", ""),
            Err(CryptoError::InvalidInput(_))
        ));
    }
}
