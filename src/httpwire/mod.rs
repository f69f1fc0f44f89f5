//! HTTP/1.1 framing for the cosocket transport: Lua moves bytes, this module builds requests and
//! parses responses (status line, headers, Content-Length, chunked, close-delimited bodies).
//!
//! - [`Target::parse`] splits a URL into scheme, host, port, request target and `Host` value.
//! - [`encode_request`] builds the request bytes.
//! - [`ResponseParser`] parses the response incrementally from whatever pieces the socket
//!   returns, and says whether the connection may be reused.

mod error;
mod request;
mod response;
mod target;

pub use error::HttpError;
pub use request::{encode_request, USER_AGENT};
pub use response::{Progress, ResponseParser, MAX_HEADERS};
pub use target::{Scheme, Target};

/// Default limit on the response head (status line, headers, interim responses).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
