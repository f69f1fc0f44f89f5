//! Account and domain keys: RSA 2048/3072/4096, EC P-256/P-384.
use super::CryptoError;
use openssl::pkey::{PKey, Private};

/// The key types the library generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with the given modulus size in bits (2048, 3072 or 4096).
    Rsa(u32),
    /// NIST P-256 (`prime256v1`), signs ES256.
    EcP256,
    /// NIST P-384 (`secp384r1`), signs ES384.
    EcP384,
}

impl KeyType {
    /// Parses the original's `create_pkey(bits, typ, curve)` arguments: `typ` is `RSA`/`rsa`
    /// or `EC`/`ecc`; `bits` defaults to 4096; `curve` accepts `prime256v1`, `P-256`,
    /// `secp384r1`, `P-384` (default P-256).
    pub fn parse(
        typ: Option<&str>,
        bits: Option<u32>,
        curve: Option<&str>,
    ) -> Result<KeyType, CryptoError> {
        let _ = (typ, bits, curve);
        Err(CryptoError::UnsupportedKey("not implemented".into()))
    }
}

/// A private key with everything the protocol needs from it.
pub struct PrivateKey {
    pub(crate) pkey: PKey<Private>,
    pub(crate) kind: KeyType,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "PrivateKey({:?})", self.kind)
    }
}

impl PrivateKey {
    /// Generates a fresh key. RSA-4096 takes about a second: call it off the event loop.
    pub fn generate(kind: KeyType) -> Result<PrivateKey, CryptoError> {
        let _ = kind;
        Err(CryptoError::UnsupportedKey("not implemented".into()))
    }

    /// Loads a PEM private key (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, CryptoError> {
        let _ = pem;
        Err(CryptoError::Decode("not implemented".into()))
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as the original stores generated keys.
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        Err(CryptoError::Decode("not implemented".into()))
    }

    /// SubjectPublicKeyInfo PEM of the public half.
    pub fn public_key_pem(&self) -> Result<String, CryptoError> {
        Err(CryptoError::Decode("not implemented".into()))
    }

    pub fn key_type(&self) -> KeyType {
        self.kind
    }

    /// JWS `alg` for this key: RS256, ES256 or ES384.
    pub fn jws_alg(&self) -> &'static str {
        "RS256"
    }

    /// The public JWK (RFC 7517): `{"e","kty","n"}` or `{"crv","kty","x","y"}`.
    pub fn jwk(&self) -> Result<serde_json::Value, CryptoError> {
        Err(CryptoError::Decode("not implemented".into()))
    }

    /// RFC 7638 thumbprint: base64url(SHA-256(canonical JWK)).
    pub fn thumbprint(&self) -> Result<String, CryptoError> {
        Err(CryptoError::Decode("not implemented".into()))
    }

    /// Signs `data` as JWS requires: RSASSA-PKCS1-v1_5 SHA-256, or ECDSA with the curve's hash
    /// returned as fixed-size r||s (RFC 7518 §3.4).
    pub fn sign_jws(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let _ = data;
        Err(CryptoError::Decode("not implemented".into()))
    }

    /// Whether `other` has the same public key.
    pub fn public_eq(&self, other: &PrivateKey) -> bool {
        self.pkey.public_eq(&other.pkey)
    }
}
