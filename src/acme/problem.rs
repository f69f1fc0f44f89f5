//! Problem documents (RFC 7807, RFC 8555 §6.7) and the classification of error replies.
use super::poll::retry_after;
use super::types::lenient;
use super::{AcmeError, Identifier, Response};
use serde::{Deserialize, Serialize};

/// A problem document returned by the CA. Serialized as a problem document again (absent fields
/// left out), for the admin view.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(from = "ProblemDoc")]
pub struct Problem {
    /// The full type URI, e.g. `urn:ietf:params:acme:error:badNonce`.
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub status: u16,
    /// RFC 8555 §6.7.1 subproblems, each with its identifier when present.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Problem>,
    /// The identifier a subproblem is about (`dns:example.com`).
    pub identifier: Option<String>,
    /// From the response's Retry-After header, as an absolute Unix time: not in the document.
    #[serde(skip_serializing)]
    pub retry_after: Option<f64>,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

impl Problem {
    /// The ACME error name without the `urn:ietf:params:acme:error:` prefix (`badNonce`).
    pub fn acme_type(&self) -> Option<&str> {
        self.kind.strip_prefix("urn:ietf:params:acme:error:")
    }

    /// Whether the same request may succeed later without any change by the caller:
    /// badNonce (a fresh nonce), rateLimited (after Retry-After), serverInternal and 5xx.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.acme_type(),
            Some("badNonce" | "rateLimited" | "serverInternal")
        ) || (500..600).contains(&self.status)
    }
}

impl std::fmt::Display for Problem {
    /// `<type> (<status>): <detail>; <subproblem> [<identifier>]...`; the status is left out
    /// for problems embedded in objects (status 0).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.acme_type().unwrap_or(&self.kind))?;
        if self.status != 0 {
            write!(f, " ({})", self.status)?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        for sp in &self.subproblems {
            write!(f, "; {}", sp)?;
            if let Some(id) = &sp.identifier {
                write!(f, " [{id}]")?;
            }
        }
        Ok(())
    }
}

/// The media type of a response (`Content-Type` without parameters, lower case), or "".
pub(crate) fn media_type(resp: &Response) -> String {
    resp.header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// How many bytes of an unexpected body an error message quotes.
const QUOTE_MAX: usize = 200;

/// The start of a body, printable ASCII only, whitespace runs folded: safe for a log line.
pub(crate) fn quote_body(body: &[u8]) -> String {
    let mut out = String::new();
    let mut space = false;
    for &b in body.iter().take(QUOTE_MAX) {
        if b.is_ascii_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(if b.is_ascii_graphic() { b as char } else { '?' });
    }
    if body.len() > QUOTE_MAX {
        out.push_str("...");
    }
    out
}

/// A problem document as sent. Every member only informs, so one of an odd type is dropped
/// rather than the whole document.
#[derive(Deserialize)]
struct ProblemDoc {
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    detail: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<u16>,
    #[serde(default, deserialize_with = "lenient")]
    subproblems: Option<Vec<serde_json::Value>>,
    #[serde(default, deserialize_with = "lenient")]
    identifier: Option<Identifier>,
}

impl ProblemDoc {
    /// The problem with `status`; subproblems (§6.7.1) keep their own, or 0 for none.
    fn into_problem(self, status: u16) -> Problem {
        let subproblems = self
            .subproblems
            .unwrap_or_default()
            .iter()
            .filter(|sp| sp.is_object())
            .filter_map(|sp| ProblemDoc::deserialize(sp).ok())
            .map(|sp| {
                let own = sp.status.unwrap_or(0);
                sp.into_problem(own)
            })
            .collect();
        Problem {
            // RFC 7807 §4.2: a missing type means "about:blank".
            kind: self.kind.unwrap_or_else(|| "about:blank".into()),
            detail: self.detail,
            status,
            subproblems,
            identifier: self.identifier.map(|id| id.to_string()),
            retry_after: None,
        }
    }
}

impl From<ProblemDoc> for Problem {
    /// A problem embedded in an object (an order's or a challenge's `error`) has no HTTP
    /// status: 0, which Display leaves out.
    fn from(doc: ProblemDoc) -> Problem {
        doc.into_problem(0)
    }
}

impl Problem {
    /// Reads a problem document (RFC 7807 §3.1, RFC 8555 §6.7). `status` is the HTTP status,
    /// which wins over the document's own `status` member; subproblems (§6.7.1) without one
    /// inherit it.
    pub fn from_json(doc: &serde_json::Value, status: u16, retry_after: Option<f64>) -> Problem {
        let mut p = Problem::deserialize(doc).unwrap_or_else(|_| Problem {
            kind: "about:blank".into(),
            ..Problem::default()
        });
        p.status = status;
        p.retry_after = retry_after;
        for sp in p.subproblems.iter_mut().filter(|sp| sp.status == 0) {
            sp.status = status;
        }
        p
    }

    /// Whether this is the ACME error `name` (`badNonce`, `rateLimited`, ...).
    pub fn is(&self, name: &str) -> bool {
        self.acme_type() == Some(name)
    }

    /// `detail`, or else `type`: the text the original client returned as its error.
    pub fn message(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.kind)
    }
}

/// Classifies a response before any protocol logic looks at it: oversize bodies, problem
/// documents (§6.7; `application/problem+json`, or any JSON error body with a `type`), and
/// other error statuses. `Ok` means the body may be used as the reply it claims to be.
pub fn check_response(resp: &Response, max_body: usize, now: f64) -> Result<(), AcmeError> {
    check_size(resp, max_body)?;
    let ct = media_type(resp);
    let is_problem = ct == "application/problem+json";
    if !is_problem && resp.status < 400 {
        return Ok(());
    }
    let doc = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .filter(|d| d.is_object() && (is_problem || d.get("type").is_some_and(|t| t.is_string())));
    match doc {
        Some(doc) => Err(AcmeError::Problem(Problem::from_json(
            &doc,
            resp.status,
            retry_after(resp, now),
        ))),
        None if is_problem => Err(AcmeError::Malformed(format!(
            "undecodable problem document (status {}): {}",
            resp.status,
            quote_body(&resp.body)
        ))),
        None => Err(unexpected(resp, "")),
    }
}

/// The error for a status the protocol step did not expect, naming status and content type and
/// quoting the start of the body.
pub(crate) fn unexpected(resp: &Response, context: &str) -> AcmeError {
    let ct = resp.header("content-type").unwrap_or("none");
    let sep = if context.is_empty() { "" } else { " " };
    let body = quote_body(&resp.body);
    AcmeError::Malformed(format!(
        "{context}{sep}unexpected status {} (content-type {}){}{}",
        resp.status,
        quote_body(ct.as_bytes()),
        if body.is_empty() { "" } else { ": " },
        body
    ))
}

/// Bodies larger than the configured limit are refused whatever they are.
pub(crate) fn check_size(resp: &Response, max_body: usize) -> Result<(), AcmeError> {
    if resp.body.len() > max_body {
        return Err(AcmeError::Malformed(format!(
            "response body of {} bytes (status {}) exceeds the limit of {} bytes",
            resp.body.len(),
            resp.status,
            max_body
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_the_document_it_was_read_from() {
        let doc = json!({
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "two names refused",
            "subproblems": [
                {"type": "urn:ietf:params:acme:error:caa",
                 "identifier": {"type": "dns", "value": "a.example"}},
                {"type": "urn:ietf:params:acme:error:malformed", "status": 403}
            ]
        });
        let p = Problem::from_json(&doc, 400, Some(1e9));
        // The HTTP status is kept and handed down; Retry-After is not part of the document;
        // absent members stay absent.
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({
                "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                "detail": "two names refused",
                "status": 400,
                "identifier": null,
                "subproblems": [
                    {"type": "urn:ietf:params:acme:error:caa", "detail": null, "status": 400,
                     "identifier": "dns:a.example"},
                    {"type": "urn:ietf:params:acme:error:malformed", "detail": null,
                     "status": 403, "identifier": null}
                ]
            })
        );
        let embedded = Problem::deserialize(&json!({"type": "about:blank"})).unwrap();
        assert_eq!(
            serde_json::to_value(&embedded).unwrap(),
            json!({"type": "about:blank", "detail": null, "identifier": null})
        );
    }
}
