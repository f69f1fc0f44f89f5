use super::Problem;
use crate::crypto::CryptoError;
use std::fmt;

/// Errors of the protocol area. Messages are lower case and name the cause.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA answered with a problem document.
    Problem(Problem),
    /// The transport failed (connect, TLS, timeout); the text comes from the caller.
    Transport(String),
    /// The CA's reply could not be used: what was expected and what was wrong.
    Malformed(String),
    /// A caller-supplied value was invalid (identifier, config).
    InvalidInput(String),
    /// An authorization or order became invalid; carries the CA's reasons, and the problem
    /// document the CA gave for it (the failed challenge's or the order's `error`), if any.
    Invalid(String, Option<Box<Problem>>),
    /// Polling gave up before the object reached the wanted state.
    Timeout(String),
    /// No offered challenge matches the enabled types.
    NoChallenge(String),
    /// The caller failed to publish a challenge.
    Publish(String),
    /// The operation was misused (e.g. no account URL yet).
    State(String),
    Crypto(CryptoError),
    /// The caller could not sign a request handed out as `Action::Sign`.
    Sign(String),
    /// The directory could not be read (§7.1.1); the text is the original library's, the
    /// problem document the CA answered with (e.g. rateLimited), if it sent one.
    Directory(String, Option<Box<Problem>>),
}

impl AcmeError {
    /// The CA's problem document behind the error: the answer's own, or the one an invalid
    /// authorization or order carried.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Problem(p) => Some(p),
            AcmeError::Invalid(_, p) | AcmeError::Directory(_, p) => p.as_deref(),
            _ => None,
        }
    }

    /// Whether trying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AcmeError::Problem(p) => p.is_retryable(),
            AcmeError::Transport(_) | AcmeError::Timeout(_) => true,
            _ => false,
        }
    }
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcmeError::Problem(p) => write!(f, "acme problem: {p}"),
            AcmeError::Transport(m) => write!(f, "transport error: {m}"),
            AcmeError::Malformed(m) => write!(f, "malformed response: {m}"),
            AcmeError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            AcmeError::Invalid(m, _) => write!(f, "{m}"),
            AcmeError::Timeout(m) => write!(f, "timeout: {m}"),
            AcmeError::NoChallenge(m) => write!(f, "no usable challenge: {m}"),
            AcmeError::Publish(m) => write!(f, "publishing challenge failed: {m}"),
            AcmeError::State(m) => write!(f, "{m}"),
            AcmeError::Crypto(e) => write!(f, "{e}"),
            AcmeError::Sign(m) => write!(f, "signing the request failed: {m}"),
            AcmeError::Directory(m, _) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for AcmeError {}

impl From<CryptoError> for AcmeError {
    fn from(e: CryptoError) -> Self {
        AcmeError::Crypto(e)
    }
}
