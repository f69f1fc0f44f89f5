//! Flattened JWS JSON serialization (RFC 7515 §7.2.2) as RFC 8555 §6.2 requires, and EAB.
use super::{CryptoError, PrivateKey};

/// How the protected header names the account key (RFC 8555 §6.2).
#[derive(Debug, Clone, Copy)]
pub enum KeyId<'a> {
    /// Embed the public JWK (newAccount, revokeCert with the certificate key).
    Jwk,
    /// The account URL.
    Kid(&'a str),
}

/// Signs `payload` (JSON text; `None` = POST-as-GET, an empty payload) for `url` and returns the
/// flattened JWS as JSON text `{"protected","payload","signature"}`. `nonce` is omitted from the
/// header when `None` (only the inner key-change JWS has none).
pub fn sign_flattened(
    key: &PrivateKey,
    url: &str,
    nonce: Option<&str>,
    key_id: KeyId<'_>,
    payload: Option<&str>,
) -> Result<String, CryptoError> {
    let _ = (key, url, nonce, key_id, payload);
    Err(CryptoError::Decode("not implemented".into()))
}

/// The `externalAccountBinding` object (RFC 8555 §7.3.4): a JWS over the account JWK, HS256 with
/// the CA-issued MAC key, protected header `{"alg":"HS256","kid":eab_kid,"url":new_account_url}`.
pub fn eab_binding(
    eab_kid: &str,
    hmac_key: &[u8],
    new_account_url: &str,
    account_jwk: &serde_json::Value,
) -> Result<serde_json::Value, CryptoError> {
    let _ = (eab_kid, hmac_key, new_account_url, account_jwk);
    Err(CryptoError::Decode("not implemented".into()))
}
