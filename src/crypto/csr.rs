//! PKCS#10 certificate signing requests (RFC 2986) for finalize (RFC 8555 §7.4).
use super::{CryptoError, PrivateKey};

/// Builds a DER CSR signed with `key`. Each name is a DNS name (wildcards allowed) or an IP
/// literal (RFC 8738), put in subjectAltName as DNS or IP. The subject CN is the first DNS name
/// when it fits 64 bytes, else empty.
pub fn create_csr(key: &PrivateKey, names: &[&str]) -> Result<Vec<u8>, CryptoError> {
    let _ = (key, names);
    Err(CryptoError::InvalidInput("not implemented".into()))
}
