//! X.509 certificate facts from PEM chains.
use super::encoding::b64url;
use super::key::key_id_name;
use super::{CryptoError, PrivateKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::bn::BigNumRef;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::x509::{X509NameRef, X509Ref, X509};
use serde::Serialize;
use std::net::IpAddr;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// What operators and renewal need to know about one certificate; serialized as the Lua
/// `cert_parse` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    /// The issuer as a one-line text, e.g. `CN=Pebble Intermediate CA 4d1e2f`.
    pub issuer: String,
    /// Serial number, lower-case hex without separators.
    #[serde(rename = "serial")]
    pub serial_hex: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// subjectAltName entries: DNS names as is, IP addresses in text form.
    pub sans: Vec<String>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// `rsa` or `ecc`.
    pub key_type: String,
}

/// Splits a PEM text into its `CERTIFICATE` blocks, each with BEGIN/END lines and a final newline.
pub fn split_pem_chain(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(PEM_BEGIN) {
        let after = &rest[start..];
        let Some(end) = after.find(PEM_END) else {
            break;
        };
        let block = &after[..end + PEM_END.len()];
        let mut block = block.replace("\r\n", "\n");
        block.push('\n');
        out.push(block);
        rest = &after[end + PEM_END.len()..];
    }
    out
}

/// Every certificate of a PEM text, in order; an error when there is none.
fn load_chain(pem: &[u8]) -> Result<Vec<X509>, CryptoError> {
    let certs = X509::stack_from_pem(pem)
        .map_err(|_| CryptoError::Decode("invalid certificate pem".into()))?;
    if certs.is_empty() {
        return Err(CryptoError::Decode("no certificate in pem".into()));
    }
    Ok(certs)
}

fn first_cn(name: &X509NameRef) -> Result<Option<String>, CryptoError> {
    match name.entries_by_nid(Nid::COMMONNAME).next() {
        Some(entry) => Ok(Some(entry.data().to_string()?)),
        None => Ok(None),
    }
}

/// `C=US, O=Example, CN=Example CA`, in certificate order.
fn one_line(name: &X509NameRef) -> Result<String, CryptoError> {
    let mut parts = Vec::new();
    for entry in name.entries() {
        let obj = entry.object();
        let field = match obj.nid().short_name() {
            Ok(s) => s.to_owned(),
            Err(_) => obj.to_string(),
        };
        parts.push(format!("{field}={}", entry.data().to_string()?));
    }
    Ok(parts.join(", "))
}

fn unix_seconds(t: &Asn1TimeRef) -> Result<i64, CryptoError> {
    let epoch = Asn1Time::from_unix(0)?;
    let diff = epoch.diff(t)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sans(cert: &X509Ref) -> Vec<String> {
    let Some(names) = cert.subject_alt_names() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|g| {
            if let Some(d) = g.dnsname() {
                return Some(d.to_owned());
            }
            let raw = g.ipaddress()?;
            let ip: IpAddr = match raw.len() {
                4 => <[u8; 4]>::try_from(raw).ok()?.into(),
                16 => <[u8; 16]>::try_from(raw).ok()?.into(),
                _ => return None,
            };
            Some(ip.to_string())
        })
        .collect()
}

fn info(cert: &X509Ref) -> Result<CertInfo, CryptoError> {
    let key_type = match cert.public_key()?.id() {
        Id::RSA => "rsa".to_owned(),
        Id::EC => "ecc".to_owned(),
        other => key_id_name(other),
    };
    Ok(CertInfo {
        subject_cn: first_cn(cert.subject_name())?,
        issuer_cn: first_cn(cert.issuer_name())?,
        issuer: one_line(cert.issuer_name())?,
        serial_hex: cert
            .serial_number()
            .to_bn()?
            .to_hex_str()?
            .to_ascii_lowercase(),
        not_before: unix_seconds(cert.not_before())?,
        not_after: unix_seconds(cert.not_after())?,
        sans: sans(cert),
        fingerprint_sha256: hex(&cert.digest(MessageDigest::sha256())?),
        key_type,
    })
}

/// Parses every certificate of a PEM chain, leaf first. Errors when there is none.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertInfo>, CryptoError> {
    load_chain(pem)?.iter().map(|c| info(c)).collect()
}

/// One DER TLV at the start of `input` (X.690 §8.1, definite lengths only): tag, contents,
/// and what follows. `None` when truncated, indefinite, high-tag-number or over 4 length octets.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of a TLV with tag `want` at the start of `input`, and what follows it.
fn der_expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), CryptoError> {
    match der_tlv(input) {
        Some((tag, value, rest)) if tag == want => Ok((value, rest)),
        _ => Err(CryptoError::Decode("malformed certificate der".into())),
    }
}

/// The DER of the first CERTIFICATE block of `text` (RFC 7468 §2: base64 between the
/// encapsulation boundaries, whitespace ignored) and the text after it; `None` when there is
/// no further block.
fn next_certificate_der(text: &str) -> Result<Option<(Vec<u8>, &str)>, CryptoError> {
    let Some(begin) = text.find(PEM_BEGIN) else {
        return Ok(None);
    };
    let body = &text[begin + PEM_BEGIN.len()..];
    let len = body
        .find(PEM_END)
        .ok_or_else(|| CryptoError::Decode("invalid certificate pem".into()))?;
    let b64: Vec<u8> = body[..len]
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| CryptoError::Decode("invalid certificate pem".into()))?;
    Ok(Some((der, &body[len + PEM_END.len()..])))
}

fn pem_text(pem: &[u8]) -> Result<&str, CryptoError> {
    std::str::from_utf8(pem).map_err(|_| CryptoError::Decode("certificate pem is not text".into()))
}

/// The DER of the first CERTIFICATE block of a PEM text.
fn first_certificate_der(pem: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match next_certificate_der(pem_text(pem)?)? {
        Some((der, _)) => Ok(der),
        None => Err(CryptoError::Decode("no certificate in pem".into())),
    }
}

/// The DER of every CERTIFICATE block of a PEM text, in order; an error when there is none.
pub(crate) fn certificate_ders(pem: &[u8]) -> Result<Vec<Vec<u8>>, CryptoError> {
    let mut rest = pem_text(pem)?;
    let mut out = Vec::new();
    while let Some((der, after)) = next_certificate_der(rest)? {
        out.push(der);
        rest = after;
    }
    if out.is_empty() {
        return Err(CryptoError::Decode("no certificate in pem".into()));
    }
    Ok(out)
}

/// notAfter of the first certificate of a PEM text, in Unix seconds, without building an X509.
///
/// OpenSSL 3.0 decodes the public key of every certificate it parses through its provider
/// decoders (about 90 µs a certificate), and a renewal pass over thousands of stored
/// certificates needs nothing but this date. Walks the DER to
/// tbsCertificate.validity.notAfter (RFC 5280 §4.1) and lets OpenSSL read the Time.
pub fn leaf_not_after(pem: &[u8]) -> Result<i64, CryptoError> {
    leaf_validity(pem).map(|v| v.not_after)
}

/// The validity of the first certificate of a PEM text, read like [`leaf_not_after`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeafValidity {
    pub not_before: i64,
    pub not_after: i64,
    /// A per-certificate fraction in [0, 1) from its DER, to spread renewals.
    pub spread: f64,
}

/// notBefore and notAfter of the first certificate of a PEM text (RFC 5280 §4.1.2.5), without
/// building an X509.
pub fn leaf_validity(pem: &[u8]) -> Result<LeafValidity, CryptoError> {
    let der = first_certificate_der(pem)?;
    let bad = || CryptoError::Decode("malformed certificate der".into());
    let (cert, _) = der_expect(&der, 0x30)?; // Certificate
    let (mut tbs, _) = der_expect(cert, 0x30)?; // tbsCertificate
    if let Some((0xa0, _, rest)) = der_tlv(tbs) {
        tbs = rest; // [0] EXPLICIT version, absent for v1
    }
    let (_, tbs) = der_expect(tbs, 0x02)?; // serialNumber
    let (_, tbs) = der_expect(tbs, 0x30)?; // signature
    let (_, tbs) = der_expect(tbs, 0x30)?; // issuer
    let (validity, _) = der_expect(tbs, 0x30)?;
    let (nb_tag, nb_time, validity) = der_tlv(validity).ok_or_else(bad)?; // notBefore
    let (na_tag, na_time, _) = der_tlv(validity).ok_or_else(bad)?; // notAfter
                                                                   // RFC 5280 §4.1.2.5: UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ.
    let read = |tag: u8, time: &[u8]| -> Result<i64, CryptoError> {
        let well_formed = matches!((tag, time.len()), (0x17, 13) | (0x18, 15))
            && time[time.len() - 1] == b'Z'
            && time[..time.len() - 1].iter().all(u8::is_ascii_digit);
        if !well_formed {
            return Err(bad());
        }
        let text = std::str::from_utf8(time).map_err(|_| bad())?;
        let t = Asn1Time::from_str_x509(text)?;
        unix_seconds(&t)
    };
    Ok(LeafValidity {
        not_before: read(nb_tag, nb_time)?,
        not_after: read(na_tag, na_time)?,
        spread: crate::acme::renewal::spread_of(&der),
    })
}

/// Issuer CN of the last certificate of the chain: what `preferred_chain` is compared with.
pub fn root_issuer_cn(pem: &[u8]) -> Result<Option<String>, CryptoError> {
    let chain = load_chain(pem)?;
    match chain.last() {
        Some(last) => first_cn(last.issuer_name()),
        None => Ok(None),
    }
}

/// DER of the first certificate (revokeCert, ARI CertID).
pub fn leaf_der(pem: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let chain = load_chain(pem)?;
    Ok(chain[0].to_der()?)
}

/// Whether the leaf certificate's public key is `key`'s.
pub fn leaf_matches_key(pem: &[u8], key: &PrivateKey) -> Result<bool, CryptoError> {
    let chain = load_chain(pem)?;
    Ok(chain[0].public_key()?.public_eq(&key.pkey))
}

/// The content octets of the DER INTEGER encoding `n` (X.690 §8.3): minimal two's complement,
/// so a positive number whose top bit is set gets a leading 0x00.
fn integer_content_octets(n: &BigNumRef) -> Vec<u8> {
    let magnitude = n.to_vec();
    if magnitude.is_empty() {
        return vec![0];
    }
    if !n.is_negative() {
        let mut out = Vec::with_capacity(magnitude.len() + 1);
        if magnitude[0] & 0x80 != 0 {
            out.push(0);
        }
        out.extend_from_slice(&magnitude);
        return out;
    }
    // Two's complement of the magnitude: invert, add one.
    let mut out: Vec<u8> = magnitude.iter().map(|b| !b).collect();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            break;
        }
    }
    if out[0] & 0x80 == 0 {
        out.insert(0, 0xff);
    }
    while out.len() > 1 && out[0] == 0xff && out[1] & 0x80 != 0 {
        out.remove(0);
    }
    out
}

/// The ARI certificate identifier (RFC 9773 §4.1): base64url(AKI keyIdentifier) "."
/// base64url(serial DER content bytes), from the leaf.
pub fn ari_cert_id(pem: &[u8]) -> Result<String, CryptoError> {
    let chain = load_chain(pem)?;
    let leaf = &chain[0];
    let aki = leaf.authority_key_id().ok_or_else(|| {
        CryptoError::InvalidInput("certificate has no authority key identifier".into())
    })?;
    let serial = leaf.serial_number().to_bn()?;
    Ok(format!(
        "{}.{}",
        b64url(aki.as_slice()),
        b64url(&integer_content_octets(&serial))
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::KeyType;
    use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString};
    use openssl::bn::BigNum;
    use openssl::x509::extension::{
        AuthorityKeyIdentifier, BasicConstraints, SubjectAlternativeName, SubjectKeyIdentifier,
    };
    use openssl::x509::{X509Builder, X509Extension, X509NameBuilder};

    pub(crate) struct Spec<'a> {
        pub subject_cn: &'a str,
        pub serial_hex: &'a str,
        pub not_before: i64,
        pub not_after: i64,
        pub dns: &'a [&'a str],
        pub ips: &'a [&'a str],
        pub ca: bool,
        /// Fixed AKI keyIdentifier (RFC 9773 example) instead of the issuer's SKI.
        pub aki: Option<&'a [u8]>,
    }

    /// A spec valid 2020-2030 without IP names or a fixed AKI.
    pub(crate) fn spec<'a>(cn: &'a str, serial: &'a str, ca: bool, dns: &'a [&'a str]) -> Spec<'a> {
        Spec {
            subject_cn: cn,
            serial_hex: serial,
            not_before: 1_600_000_000,
            not_after: 1_900_000_000,
            dns,
            ips: &[],
            ca,
            aki: None,
        }
    }

    fn name(cn: &str, org: Option<&str>) -> openssl::x509::X509Name {
        let mut b = X509NameBuilder::new().unwrap();
        if let Some(o) = org {
            b.append_entry_by_nid(Nid::COUNTRYNAME, "US").unwrap();
            b.append_entry_by_nid(Nid::ORGANIZATIONNAME, o).unwrap();
        }
        b.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        b.build()
    }

    /// Issues a certificate for `subject_key` per `spec`, signed by `issuer` (self-signed
    /// when None).
    pub(crate) fn issue(
        spec: &Spec<'_>,
        subject_key: &PrivateKey,
        issuer: Option<(&X509, &PrivateKey)>,
    ) -> X509 {
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_hex_str(spec.serial_hex).unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
            .unwrap();
        let org = if spec.ca { Some("Test Org") } else { None };
        b.set_subject_name(&name(spec.subject_cn, org)).unwrap();
        match issuer {
            Some((cert, _)) => b.set_issuer_name(cert.subject_name()).unwrap(),
            None => b.set_issuer_name(&name(spec.subject_cn, org)).unwrap(),
        }
        b.set_not_before(&Asn1Time::from_unix(spec.not_before).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(spec.not_after).unwrap())
            .unwrap();
        b.set_pubkey(&subject_key.pkey).unwrap();
        if spec.ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
        }
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        if let Some(keyid) = spec.aki {
            // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
            let mut der = vec![0x30, keyid.len() as u8 + 2, 0x80, keyid.len() as u8];
            der.extend_from_slice(keyid);
            let oid = Asn1Object::from_str("2.5.29.35").unwrap();
            let value = Asn1OctetString::new_from_bytes(&der).unwrap();
            b.append_extension(X509Extension::new_from_der(&oid, false, &value).unwrap())
                .unwrap();
        } else if let Some((cert, _)) = issuer {
            let aki = AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&b.x509v3_context(Some(cert), None))
                .unwrap();
            b.append_extension(aki).unwrap();
        }
        if !spec.dns.is_empty() || !spec.ips.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for d in spec.dns {
                san.dns(d);
            }
            for ip in spec.ips {
                san.ip(ip);
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        let signer = issuer.map(|(_, k)| k).unwrap_or(subject_key);
        b.sign(&signer.pkey, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn pem(certs: &[&X509]) -> String {
        certs
            .iter()
            .map(|c| String::from_utf8(c.to_pem().unwrap()).unwrap())
            .collect()
    }

    struct Chain {
        leaf_key: PrivateKey,
        leaf: X509,
        intermediate: X509,
    }

    fn chain() -> Chain {
        let ca_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let ca = issue(
            &Spec {
                subject_cn: "Test Intermediate",
                serial_hex: "01",
                not_before: 1_600_000_000,
                not_after: 1_900_000_000,
                dns: &[],
                ips: &[],
                ca: true,
                aki: None,
            },
            &ca_key,
            None,
        );
        // Pretend a root signed the intermediate: re-issue it with a different issuer name.
        let root_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let root = issue(
            &Spec {
                subject_cn: "Test Root X1",
                serial_hex: "02",
                not_before: 1_500_000_000,
                not_after: 2_000_000_000,
                dns: &[],
                ips: &[],
                ca: true,
                aki: None,
            },
            &root_key,
            None,
        );
        let intermediate = issue(
            &Spec {
                subject_cn: "Test Intermediate",
                serial_hex: "03",
                not_before: 1_600_000_000,
                not_after: 1_900_000_000,
                dns: &[],
                ips: &[],
                ca: true,
                aki: None,
            },
            &ca_key,
            Some((&root, &root_key)),
        );
        let leaf_key = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        let leaf = issue(
            &Spec {
                subject_cn: "example.com",
                serial_hex: "FA0102",
                not_before: 1_700_000_000,
                not_after: 1_707_776_000,
                dns: &["example.com", "*.example.com"],
                ips: &["192.0.2.7", "2001:db8::7"],
                ca: false,
                aki: None,
            },
            &leaf_key,
            Some((&ca, &ca_key)),
        );
        Chain {
            leaf_key,
            leaf,
            intermediate,
        }
    }

    #[test]
    fn split_keeps_only_certificates() {
        let c = chain();
        let leaf = String::from_utf8(c.leaf.to_pem().unwrap()).unwrap();
        let inter = String::from_utf8(c.intermediate.to_pem().unwrap()).unwrap();
        let key = c.leaf_key.to_pem().unwrap();
        let text = format!(
            "junk\n{}{}\r\n\n{}",
            leaf.trim_end(),
            key,
            inter.replace('\n', "\r\n").trim_end()
        );
        let blocks = split_pem_chain(&text);
        assert_eq!(blocks, [leaf, inter]);
        assert!(split_pem_chain("nothing here").is_empty());
    }

    #[test]
    fn leaf_not_after_matches_the_full_parse() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        // UTCTime (before 2050), GeneralizedTime (from 2050 on), a long serial.
        for (not_after, serial) in [
            (1_900_000_000, "0a"),
            (2_600_000_000, "7fffffffffffffffffffffffffffffff01"),
        ] {
            let spec = Spec {
                subject_cn: "www.example.test",
                serial_hex: serial,
                not_before: 1_600_000_000,
                not_after,
                dns: &["www.example.test"],
                ips: &[],
                ca: false,
                aki: None,
            };
            let c = chain();
            let leaf = issue(&spec, &key, Some((&c.intermediate, &c.leaf_key)));
            let text = pem(&[&leaf, &c.intermediate]);
            assert_eq!(leaf_not_after(text.as_bytes()).unwrap(), not_after);
            assert_eq!(
                parse_chain(text.as_bytes()).unwrap()[0].not_after,
                not_after
            );
            let v = leaf_validity(text.as_bytes()).unwrap();
            assert_eq!((v.not_before, v.not_after), (1_600_000_000, not_after));
            assert!((0.0..1.0).contains(&v.spread));
        }
    }

    #[test]
    fn leaf_not_after_rejects_what_is_not_a_certificate() {
        let c = chain();
        let good = pem(&[&c.leaf]);
        assert!(leaf_not_after(b"").is_err());
        assert!(
            leaf_not_after(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(leaf_not_after(good.replace("-----END CERTIFICATE-----", "").as_bytes()).is_err());
        // truncated DER: drop a line from the middle of the base64
        let mut lines: Vec<&str> = good.lines().collect();
        lines.remove(3);
        assert!(leaf_not_after(lines.join("\n").as_bytes()).is_err());
        assert_eq!(der_tlv(&[0x30, 0x80]), None);
        assert_eq!(der_tlv(&[0x30, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(der_tlv(&[0x1f, 0x01, 0x00]), None);
        assert_eq!(
            der_tlv(&[0x04, 0x81, 0x02, 0xaa, 0xbb, 0xcc]),
            Some((0x04, &[0xaa, 0xbb][..], &[0xcc][..]))
        );
    }

    #[test]
    fn parse_chain_fields() {
        let c = chain();
        let text = pem(&[&c.leaf, &c.intermediate]);
        let infos = parse_chain(text.as_bytes()).unwrap();
        assert_eq!(infos.len(), 2);
        let leaf = &infos[0];
        assert_eq!(leaf.subject_cn.as_deref(), Some("example.com"));
        assert_eq!(leaf.issuer_cn.as_deref(), Some("Test Intermediate"));
        assert_eq!(leaf.issuer, "C=US, O=Test Org, CN=Test Intermediate");
        assert_eq!(leaf.serial_hex, "fa0102");
        assert_eq!(leaf.not_before, 1_700_000_000);
        assert_eq!(leaf.not_after, 1_707_776_000);
        assert_eq!(
            leaf.sans,
            ["example.com", "*.example.com", "192.0.2.7", "2001:db8::7"]
        );
        assert_eq!(leaf.key_type, "rsa");
        assert_eq!(
            leaf.fingerprint_sha256,
            hex(&openssl::sha::sha256(&c.leaf.to_der().unwrap()))
        );
        let inter = &infos[1];
        assert_eq!(inter.subject_cn.as_deref(), Some("Test Intermediate"));
        assert_eq!(inter.issuer_cn.as_deref(), Some("Test Root X1"));
        assert_eq!(inter.key_type, "ecc");
        assert_eq!(inter.not_before, 1_600_000_000);
        assert!(inter.sans.is_empty());

        assert_eq!(
            root_issuer_cn(text.as_bytes()).unwrap().as_deref(),
            Some("Test Root X1")
        );
        // A chain of only the leaf: its own issuer.
        let only_leaf = pem(&[&c.leaf]);
        assert_eq!(
            root_issuer_cn(only_leaf.as_bytes()).unwrap().as_deref(),
            Some("Test Intermediate")
        );
        assert_eq!(leaf_der(text.as_bytes()).unwrap(), c.leaf.to_der().unwrap());
    }

    #[test]
    fn errors_on_no_certificate() {
        for bad in [
            &b""[..],
            b"garbage",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(parse_chain(bad), Err(CryptoError::Decode(_))));
            assert!(root_issuer_cn(bad).is_err());
            assert!(leaf_der(bad).is_err());
        }
        assert_eq!(
            parse_chain(b"").unwrap_err().to_string(),
            "decode error: no certificate in pem"
        );
    }

    #[test]
    fn leaf_key_match() {
        let c = chain();
        let text = pem(&[&c.leaf, &c.intermediate]);
        assert!(leaf_matches_key(text.as_bytes(), &c.leaf_key).unwrap());
        let other = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        assert!(!leaf_matches_key(text.as_bytes(), &other).unwrap());
    }

    #[test]
    fn ari_cert_id_rfc9773_example() {
        // RFC 9773 §4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:
        // C8:D4 and serial 00:87:65:43:21 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ];
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let cert = issue(
            &Spec {
                subject_cn: "ari.example",
                serial_hex: "87654321",
                not_before: 1_700_000_000,
                not_after: 1_707_776_000,
                dns: &["ari.example"],
                ips: &[],
                ca: false,
                aki: Some(&aki),
            },
            &key,
            None,
        );
        let text = pem(&[&cert]);
        assert_eq!(
            ari_cert_id(text.as_bytes()).unwrap(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
    }

    #[test]
    fn ari_cert_id_from_issuer_ski() {
        let c = chain();
        let text = pem(&[&c.leaf, &c.intermediate]);
        let ski = c.intermediate.subject_key_id().unwrap().as_slice().to_vec();
        // Serial 0xFA0102 has its top bit set: DER content is 00 FA 01 02.
        let want = format!("{}.{}", b64url(&ski), b64url(&[0x00, 0xFA, 0x01, 0x02]));
        // The intermediate of `chain()` is a re-issue with the same key, so its SKI is the
        // leaf's AKI.
        assert_eq!(ari_cert_id(text.as_bytes()).unwrap(), want);

        // Self-signed without AKI: a clear error.
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let cert = issue(
            &Spec {
                subject_cn: "x",
                serial_hex: "01",
                not_before: 0,
                not_after: 1,
                dns: &[],
                ips: &[],
                ca: false,
                aki: None,
            },
            &key,
            None,
        );
        let err = ari_cert_id(pem(&[&cert]).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: certificate has no authority key identifier"
        );
    }

    #[test]
    fn integer_octets() {
        let cases: [(&str, &[u8]); 7] = [
            ("0", &[0x00]),
            ("7F", &[0x7F]),
            ("80", &[0x00, 0x80]),
            ("0100", &[0x01, 0x00]),
            ("-1", &[0xFF]),
            ("-80", &[0x80]),
            ("-81", &[0xFF, 0x7F]),
        ];
        for (hex_in, want) in cases {
            let n = BigNum::from_hex_str(hex_in).unwrap();
            assert_eq!(integer_content_octets(&n), want, "{hex_in}");
        }
    }
}
