//! X.509 certificate facts from PEM chains.
use super::{CryptoError, PrivateKey};

/// What operators and renewal need to know about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    /// The issuer as a one-line text, e.g. `CN=Pebble Intermediate CA 4d1e2f`.
    pub issuer: String,
    /// Serial number, lower-case hex without separators.
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
    let _ = pem;
    Vec::new()
}

/// Parses every certificate of a PEM chain, leaf first. Errors when there is none.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertInfo>, CryptoError> {
    let _ = pem;
    Err(CryptoError::Decode("not implemented".into()))
}

/// Issuer CN of the last certificate of the chain: what `preferred_chain` is compared with.
pub fn root_issuer_cn(pem: &[u8]) -> Result<Option<String>, CryptoError> {
    let _ = pem;
    Err(CryptoError::Decode("not implemented".into()))
}

/// DER of the first certificate (revokeCert, ARI CertID).
pub fn leaf_der(pem: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let _ = pem;
    Err(CryptoError::Decode("not implemented".into()))
}

/// Whether the leaf certificate's public key is `key`'s.
pub fn leaf_matches_key(pem: &[u8], key: &PrivateKey) -> Result<bool, CryptoError> {
    let _ = (pem, key);
    Err(CryptoError::Decode("not implemented".into()))
}

/// The ARI certificate identifier (RFC 9773 §4.1): base64url(AKI keyIdentifier) "."
/// base64url(serial DER content bytes), from the leaf.
pub fn ari_cert_id(pem: &[u8]) -> Result<String, CryptoError> {
    let _ = pem;
    Err(CryptoError::Decode("not implemented".into()))
}
