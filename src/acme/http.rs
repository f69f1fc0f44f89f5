//! The HTTP exchanges the core asks for and the responses it is fed.

/// HTTP methods the protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

/// An HTTP request for the caller to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Extra headers (`Content-Type` for JWS posts); the transport adds Host, User-Agent, etc.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A complete HTTP response as the transport received it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names as received; lookups are case-insensitive.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Response {
    /// Fails with a clear error unless the status is one of `ok`; `what` names the request.
    pub(crate) fn expect_status(&self, ok: &[u16], what: &str) -> Result<(), super::AcmeError> {
        if ok.contains(&self.status) {
            Ok(())
        } else {
            Err(super::problem::unexpected(self, what))
        }
    }

    /// The body as a JSON object; `what` names the request in the error.
    pub(crate) fn json(&self, what: &str) -> Result<serde_json::Value, super::AcmeError> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                super::AcmeError::Malformed(format!(
                    "{what}: the reply (status {}, content-type {}) is not a JSON object: {}",
                    self.status,
                    super::problem::quote_body(
                        self.header("content-type").unwrap_or("none").as_bytes()
                    ),
                    super::problem::quote_body(&self.body)
                ))
            })
    }
}
