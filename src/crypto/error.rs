use std::fmt;

/// Errors of the crypto area. Messages are lower case and name the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key type, size or curve that the library does not support.
    UnsupportedKey(String),
    /// PEM or DER input that could not be decoded.
    Decode(String),
    /// Input rejected before any crypto ran (empty name list, bad identifier, ...).
    InvalidInput(String),
    /// The openssl library reported a failure.
    Openssl(String),
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::UnsupportedKey(m) => write!(f, "unsupported key: {m}"),
            CryptoError::Decode(m) => write!(f, "decode error: {m}"),
            CryptoError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            CryptoError::Openssl(m) => write!(f, "openssl: {m}"),
        }
    }
}

impl std::error::Error for CryptoError {}

impl From<openssl::error::ErrorStack> for CryptoError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        CryptoError::Openssl(e.to_string())
    }
}
