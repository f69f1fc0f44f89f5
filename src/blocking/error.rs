use crate::acme::AcmeError;
use crate::crypto::CryptoError;
use std::fmt;

/// Errors of the blocking driver, its publishers and the file store. Messages are lower case and
/// name the cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockingError {
    /// Driver options that cannot be used (unreadable CA bundle, no certificate in it).
    Config(String),
    /// The protocol operation failed (including transport failures reported to the core).
    Acme(AcmeError),
    /// A challenge publisher could not be set up or failed outside the protocol.
    Publish(String),
    /// The file store could not be read or written, or holds malformed content.
    Store(String),
    Crypto(CryptoError),
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockingError::Config(m) => write!(f, "{m}"),
            BlockingError::Acme(e) => write!(f, "{e}"),
            BlockingError::Publish(m) => write!(f, "{m}"),
            BlockingError::Store(m) => write!(f, "{m}"),
            BlockingError::Crypto(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BlockingError {}

impl From<AcmeError> for BlockingError {
    fn from(e: AcmeError) -> Self {
        BlockingError::Acme(e)
    }
}

impl From<CryptoError> for BlockingError {
    fn from(e: CryptoError) -> Self {
        BlockingError::Crypto(e)
    }
}
