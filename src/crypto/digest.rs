//! Digests and MACs by name, for `resty.acme.openssl`'s digest and hmac.
use super::CryptoError;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let _ = data;
    [0; 32]
}

/// A digest by name: `sha1`, `sha256`, `sha384`, `sha512` (case-insensitive).
pub fn digest(alg: &str, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let _ = (alg, data);
    Err(CryptoError::Decode("not implemented".into()))
}

/// An HMAC by digest name.
pub fn hmac(alg: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let _ = (alg, key, data);
    Err(CryptoError::Decode("not implemented".into()))
}
