use std::fmt;

/// Errors of the HTTP/1.1 framing area. Messages are lower case and name the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL could not be used: the URL and what is wrong with it.
    InvalidUrl { url: String, reason: String },
    /// The request method is not an HTTP token.
    InvalidMethod(String),
    /// A request header name or value was refused (header injection, bad token, reserved name).
    InvalidHeader { name: String, reason: String },
    /// The response head (status line or a header) is not valid HTTP/1.x.
    MalformedResponse(String),
    /// The response head is larger than the configured limit.
    HeadersTooLarge(usize),
    /// The response has more header fields than the parser accepts.
    TooManyHeaders(usize),
    /// The response carries Content-Length values that disagree (RFC 9112 section 6.3).
    ConflictingContentLength,
    /// The response body is larger than the configured limit.
    BodyTooLarge(usize),
    /// The connection closed before the response was complete; the text says where
    /// (`"before any response bytes"`, ...).
    Truncated(String),
    /// The response was asked for before it was complete.
    Incomplete,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidUrl { url, reason } => write!(f, "invalid url {url:?}: {reason}"),
            HttpError::InvalidMethod(m) => write!(f, "invalid request method {m:?}"),
            HttpError::InvalidHeader { name, reason } => {
                write!(f, "invalid request header {name:?}: {reason}")
            }
            HttpError::MalformedResponse(m) => write!(f, "malformed response: {m}"),
            HttpError::HeadersTooLarge(n) => write!(f, "response header section exceeds {n} bytes"),
            HttpError::TooManyHeaders(n) => write!(f, "response has more than {n} header fields"),
            HttpError::ConflictingContentLength => {
                write!(f, "malformed response: conflicting content-length headers")
            }
            HttpError::BodyTooLarge(n) => write!(f, "response body exceeds {n} bytes"),
            HttpError::Truncated(m) => write!(f, "connection closed {m}"),
            HttpError::Incomplete => write!(f, "response is not complete"),
        }
    }
}

impl std::error::Error for HttpError {}
