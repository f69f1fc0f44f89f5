use std::fmt;

/// Errors of the DNS area. Messages are lower case and name the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsError {
    /// A domain name that cannot be put on the wire.
    InvalidName(String),
    /// Any other caller-supplied value that was rejected (key, algorithm, record value).
    InvalidInput(String),
    /// hickory-proto could not encode the message.
    Encode(String),
    /// The reply could not be decoded, or is not a reply to the request.
    Malformed(String),
    /// The reply's TSIG is missing or does not verify (RFC 8945 §5.3).
    Tsig(String),
    /// The server answered the update with an error RCODE (RFC 2136 §2.2, RFC 8945 §3).
    Rejected {
        /// Mnemonic of the header RCODE, e.g. `NOTAUTH`.
        rcode: String,
        /// Mnemonic of the TSIG error, e.g. `BADSIG`, when the TSIG RR carried one.
        tsig_error: Option<String>,
        /// What the code means for the operator.
        meaning: String,
    },
    /// The HMAC could not be computed.
    Crypto(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::InvalidName(m) => write!(f, "invalid domain name: {m}"),
            DnsError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            DnsError::Encode(m) => write!(f, "cannot encode dns message: {m}"),
            DnsError::Malformed(m) => write!(f, "malformed dns reply: {m}"),
            DnsError::Tsig(m) => write!(f, "tsig verification failed: {m}"),
            DnsError::Rejected {
                rcode,
                tsig_error: Some(t),
                meaning,
            } => write!(f, "{rcode}/{t}: {meaning}"),
            DnsError::Rejected {
                rcode,
                tsig_error: None,
                meaning,
            } => write!(f, "{rcode}: {meaning}"),
            DnsError::Crypto(m) => write!(f, "tsig: {m}"),
        }
    }
}

impl std::error::Error for DnsError {}
