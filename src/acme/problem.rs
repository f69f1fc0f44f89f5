//! Problem documents (RFC 7807, RFC 8555 §6.7).

/// A problem document returned by the CA.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Problem {
    /// The full type URI, e.g. `urn:ietf:params:acme:error:badNonce`.
    pub kind: String,
    pub detail: Option<String>,
    pub status: u16,
    /// RFC 8555 §6.7.1 subproblems, each with its identifier when present.
    pub subproblems: Vec<Problem>,
    /// The identifier a subproblem is about (`dns:example.com`).
    pub identifier: Option<String>,
    /// From the response's Retry-After header, as an absolute Unix time.
    pub retry_after: Option<f64>,
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
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(
                f,
                "{} ({}): {}",
                self.acme_type().unwrap_or(&self.kind),
                self.status,
                d
            )?,
            None => write!(
                f,
                "{} ({})",
                self.acme_type().unwrap_or(&self.kind),
                self.status
            )?,
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
