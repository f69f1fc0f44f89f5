//! PKCS#10 certificate signing requests (RFC 2986) for finalize (RFC 8555 §7.4).
use super::{CryptoError, KeyType, PrivateKey};
use crate::hostname;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509ReqBuilder};
use std::net::IpAddr;

/// Longest subject CN (RFC 5280 appendix A.1, `ub-common-name`).
const MAX_CN_LEN: usize = 64;

/// An ACME identifier as it goes into a certificate: a DNS name (RFC 8555 §9.7.7) or an IP
/// address (RFC 8738).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Dns(String),
    Ip(IpAddr),
}

impl Identifier {
    /// Classifies `name`: an IPv4/IPv6 literal (brackets allowed around IPv6) is an IP
    /// identifier, anything else must be an ASCII DNS name, optionally with a leading `*.`
    /// wildcard label. Internationalised names must already be in punycode (A-label) form.
    pub fn parse(name: &str) -> Result<Identifier, CryptoError> {
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Identifier::Ip(ip));
        }
        if name.is_empty() {
            return Err(CryptoError::InvalidInput("empty name".into()));
        }
        let lower = name.to_ascii_lowercase();
        let host = lower.strip_prefix("*.").unwrap_or(&lower);
        hostname::check(host.as_bytes()).map_err(|why| {
            CryptoError::InvalidInput(format!(
                "name {} is neither a dns name ({why}) nor an ip address",
                name.escape_default()
            ))
        })?;
        Ok(Identifier::Dns(name.to_owned()))
    }
}

/// Builds a DER CSR signed with `key`. Each name is a DNS name (wildcards allowed) or an IP
/// literal (RFC 8738), put in subjectAltName as DNS or IP. The subject CN is the first DNS name
/// when it fits 64 bytes, else empty.
pub fn create_csr(key: &PrivateKey, names: &[&str]) -> Result<Vec<u8>, CryptoError> {
    if names.is_empty() {
        return Err(CryptoError::InvalidInput(
            "a csr needs at least one name".into(),
        ));
    }
    let mut idents: Vec<Identifier> = Vec::with_capacity(names.len());
    for name in names {
        let ident = Identifier::parse(name)?;
        if !idents.contains(&ident) {
            idents.push(ident);
        }
    }

    let mut builder = X509ReqBuilder::new()?;
    builder.set_version(0)?;
    let mut subject = X509NameBuilder::new()?;
    // RFC 8555 §7.4 puts the names in the SAN; the CN is only kept for old clients and must
    // fit ub-common-name, so a longer first name leaves the subject empty.
    let first_dns = idents.iter().find_map(|i| match i {
        Identifier::Dns(d) => Some(d.as_str()),
        Identifier::Ip(_) => None,
    });
    if let Some(cn) = first_dns.filter(|cn| cn.len() <= MAX_CN_LEN) {
        subject.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    }
    let subject = subject.build();
    builder.set_subject_name(&subject)?;
    builder.set_pubkey(&key.pkey)?;

    let mut san = SubjectAlternativeName::new();
    for ident in &idents {
        match ident {
            Identifier::Dns(d) => san.dns(d),
            Identifier::Ip(ip) => san.ip(&ip.to_string()),
        };
    }
    sign_request(builder, key, Some(san))
}

/// Adds `san` (when given) as the request's only extension, signs the request with `key`
/// (SHA-384 for P-384 keys, else SHA-256) and returns its DER.
fn sign_request(
    mut builder: X509ReqBuilder,
    key: &PrivateKey,
    san: Option<SubjectAlternativeName>,
) -> Result<Vec<u8>, CryptoError> {
    if let Some(san) = san {
        let san = san.build(&builder.x509v3_context(None))?;
        let mut extensions = Stack::new()?;
        extensions.push(san)?;
        builder.add_extensions(&extensions)?;
    }
    let md = match key.kind {
        KeyType::EcP384 => MessageDigest::sha384(),
        KeyType::Rsa(_) | KeyType::EcP256 => MessageDigest::sha256(),
    };
    builder.sign(&key.pkey, md)?;
    Ok(builder.build().to_der()?)
}

/// A CSR with an explicit subject (`(field, value)` pairs in order, fields as OpenSSL's short or
/// long names: `CN`, `O`, `commonName`, ...) and subject alternative names (`(type, value)`,
/// type `DNS`, `IP`, `email` or `URI`), signed by `key`: what `resty.acme.openssl.csr` builds
/// for callers of lua-resty-openssl's `x509.csr`. Returns the DER.
pub fn build_csr(
    key: &PrivateKey,
    subject: &[(String, String)],
    sans: &[(String, String)],
) -> Result<Vec<u8>, CryptoError> {
    let mut builder = X509ReqBuilder::new()?;
    builder.set_version(0)?;
    let mut name = X509NameBuilder::new()?;
    for (field, value) in subject {
        name.append_entry_by_text(field, value).map_err(|_| {
            CryptoError::InvalidInput(format!("unknown subject field {field:?} or bad value"))
        })?;
    }
    let name = name.build();
    builder.set_subject_name(&name)?;
    builder.set_pubkey(&key.pkey)?;
    let mut alt_names = None;
    if !sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for (typ, value) in sans {
            match typ.to_ascii_lowercase().as_str() {
                "dns" | "dnsname" => san.dns(value),
                "ip" | "ipaddress" | "ipaddr" => {
                    let ip: IpAddr = value.parse().map_err(|_| {
                        CryptoError::InvalidInput(format!("{value:?} is not an ip address"))
                    })?;
                    san.ip(&ip.to_string())
                }
                "email" | "rfc822name" => san.email(value),
                "uri" | "uniformresourceidentifier" => san.uri(value),
                _ => {
                    return Err(CryptoError::InvalidInput(format!(
                        "unsupported alt name type {typ:?}"
                    )))
                }
            };
        }
        alt_names = Some(san);
    }
    sign_request(builder, key, alt_names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509Req;

    fn parse(der: &[u8]) -> (X509Req, Option<String>, Vec<String>) {
        let req = X509Req::from_der(der).unwrap();
        let cn = req
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .map(|e| e.data().to_string().unwrap());
        let sans = sans_via_dummy_cert(&req);
        (req, cn, sans)
    }

    /// Reads the CSR's SAN back with openssl's own decoder by copying the requested extensions
    /// onto a throwaway certificate.
    fn sans_via_dummy_cert(req: &X509Req) -> Vec<String> {
        use openssl::x509::X509Builder;
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut b = X509Builder::new().unwrap();
        b.set_pubkey(&key.pkey).unwrap();
        for ext in req.extensions().unwrap().iter() {
            b.append_extension2(ext).unwrap();
        }
        b.sign(&key.pkey, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        cert.subject_alt_names()
            .unwrap()
            .iter()
            .map(|g| {
                if let Some(d) = g.dnsname() {
                    format!("DNS:{d}")
                } else {
                    let ip = g.ipaddress().unwrap();
                    let ip: IpAddr = match ip.len() {
                        4 => <[u8; 4]>::try_from(ip).unwrap().into(),
                        _ => <[u8; 16]>::try_from(ip).unwrap().into(),
                    };
                    format!("IP:{ip}")
                }
            })
            .collect()
    }

    #[test]
    fn csr_round_trip_every_key_type() {
        for kind in [KeyType::Rsa(2048), KeyType::EcP256, KeyType::EcP384] {
            let key = PrivateKey::generate(kind).unwrap();
            let der = create_csr(
                &key,
                &["example.com", "*.example.com", "192.0.2.1", "2001:db8::1"],
            )
            .unwrap();
            let (req, cn, sans) = parse(&der);
            assert!(req.verify(&req.public_key().unwrap()).unwrap());
            assert!(req.public_key().unwrap().public_eq(&key.pkey));
            assert_eq!(cn.as_deref(), Some("example.com"));
            assert_eq!(
                sans,
                [
                    "DNS:example.com",
                    "DNS:*.example.com",
                    "IP:192.0.2.1",
                    "IP:2001:db8::1"
                ]
            );
        }
    }

    #[test]
    fn csr_cn_rules() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        // IP first: the CN is the first DNS name.
        let (_, cn, sans) = parse(&create_csr(&key, &["10.0.0.1", "a.example"]).unwrap());
        assert_eq!(cn.as_deref(), Some("a.example"));
        assert_eq!(sans, ["IP:10.0.0.1", "DNS:a.example"]);
        // Only IPs: no CN.
        let (req, cn, _) = parse(&create_csr(&key, &["[::1]"]).unwrap());
        assert_eq!(cn, None);
        assert_eq!(req.subject_name().entries().count(), 0);
        // A first name over 64 bytes: no CN, still in the SAN.
        let long = format!("{}.example.com", "a".repeat(60));
        let (_, cn, sans) = parse(&create_csr(&key, &[&long, "b.example"]).unwrap());
        assert_eq!(cn, None);
        assert_eq!(sans, [format!("DNS:{long}"), "DNS:b.example".to_string()]);
        // Duplicates collapse.
        let (_, _, sans) = parse(&create_csr(&key, &["a.example", "a.example"]).unwrap());
        assert_eq!(sans, ["DNS:a.example"]);
    }

    #[test]
    fn csr_rejects_bad_input() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let err = create_csr(&key, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: a csr needs at least one name"
        );
        for bad in [
            "",
            "bad name",
            "a..b",
            "*.",
            "ex*ample.com",
            "ünicode.example",
        ] {
            let err = create_csr(&key, &["ok.example", bad]).unwrap_err();
            assert!(matches!(err, CryptoError::InvalidInput(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn build_csr_with_explicit_subject_and_alt_names() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let der = build_csr(
            &key,
            &[
                ("CN".into(), "a.example".into()),
                ("O".into(), "Org".into()),
            ],
            &[
                ("DNS".into(), "a.example".into()),
                ("DNS".into(), "b.example".into()),
                ("IP".into(), "192.0.2.1".into()),
            ],
        )
        .unwrap();
        let (req, cn, sans) = parse(&der);
        assert_eq!(cn.as_deref(), Some("a.example"));
        assert!(req.verify(&req.public_key().unwrap()).unwrap());
        assert_eq!(sans, ["DNS:a.example", "DNS:b.example", "IP:192.0.2.1"]);
        assert!(build_csr(&key, &[("NoSuchField".into(), "x".into())], &[]).is_err());
        assert!(build_csr(&key, &[], &[("X400".into(), "x".into())]).is_err());
        assert!(build_csr(&key, &[], &[("IP".into(), "not-an-ip".into())]).is_err());
    }
}
