//! Challenge artefacts: key authorization (RFC 8555 §8.1), dns-01 digest (§8.4) and the
//! tls-alpn-01 certificate (RFC 8737 §3).
use super::CryptoError;

/// `token "." thumbprint`.
pub fn key_authorization(token: &str, thumbprint: &str) -> String {
    format!("{token}.{thumbprint}")
}

/// The dns-01 TXT value: base64url(SHA-256(key authorization)).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    let _ = key_authorization;
    String::new()
}

/// A self-signed certificate for `identifier` (DNS name or IP literal) carrying the critical
/// acmeIdentifier extension (1.3.6.1.5.5.7.1.31) with SHA-256(key authorization). Returns
/// (certificate PEM, private key PEM); the key is a fresh P-256 key.
pub fn tls_alpn01_certificate(
    identifier: &str,
    key_authorization: &str,
) -> Result<(String, String), CryptoError> {
    let _ = (identifier, key_authorization);
    Err(CryptoError::Decode("not implemented".into()))
}
