//! The one host-name rule of the library: what a certificate may name, an order may ask for
//! and a handshake's server name is looked up as. ACME identifiers, CSRs, the SNI check of
//! autossl and the admin and order endpoints all use it.
//!
//! A host name is letter-digit-hyphen labels (RFC 1123 §2.1) of 1 to 63 octets, at most 253
//! octets in all (RFC 1035 §2.3.4), in lower case, without a trailing dot, and its last label
//! is not all digits (RFC 3696 §2: such a name is a mistyped IPv4 address). Wildcards and IP
//! literals are the callers' business (`acme::Identifier::parse`).
use std::fmt;

pub const MAX_LABEL: usize = 63;
pub const MAX_NAME: usize = 253;

/// Why a name is not a host name; the texts name the rule broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    Empty,
    EmptyLabel,
    TrailingDot,
    TooLong,
    LabelTooLong,
    /// A byte outside lower-case LDH.
    Char(u8),
    Hyphen,
    NumericLast,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Empty => write!(f, "empty"),
            Invalid::EmptyLabel => write!(f, "empty label"),
            Invalid::TrailingDot => write!(f, "trailing dot"),
            Invalid::TooLong => write!(f, "longer than {MAX_NAME} characters"),
            Invalid::LabelTooLong => write!(f, "label longer than {MAX_LABEL} characters"),
            Invalid::Char(c) => write!(
                f,
                "character '{}' not allowed",
                (*c as char).escape_default()
            ),
            Invalid::Hyphen => write!(f, "label starts or ends with '-'"),
            Invalid::NumericLast => {
                write!(f, "all-numeric last label (not a valid IP address either)")
            }
        }
    }
}

/// Checks `name` against the rule above.
pub fn check(name: &[u8]) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::Empty);
    }
    if name.windows(2).any(|w| w == b"..") {
        return Err(Invalid::EmptyLabel);
    }
    if name.ends_with(b".") {
        return Err(Invalid::TrailingDot);
    }
    if name.len() > MAX_NAME {
        return Err(Invalid::TooLong);
    }
    let mut last: &[u8] = &[];
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(Invalid::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(Invalid::LabelTooLong);
        }
        if let Some(&c) = label
            .iter()
            .find(|&&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'))
        {
            return Err(Invalid::Char(c));
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Err(Invalid::Hyphen);
        }
        last = label;
    }
    if last.iter().all(u8::is_ascii_digit) {
        return Err(Invalid::NumericLast);
    }
    Ok(())
}

/// Whether `name` is a host name.
pub fn is_valid(name: &[u8]) -> bool {
    check(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let label63 = "a".repeat(63);
        let name253 = format!("{0}.{0}.{0}.{1}.com", label63, "a".repeat(57));
        for ok in [
            "a",
            "example.com",
            "a-b.c0.example",
            "xn--bcher-kva.example",
            "9.example",
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        assert!(is_valid(name253.as_bytes()));
        let cases: Vec<(String, Invalid)> = vec![
            ("".into(), Invalid::Empty),
            ("a..b".into(), Invalid::EmptyLabel),
            (".a".into(), Invalid::EmptyLabel),
            ("a.".into(), Invalid::TrailingDot),
            (format!("{name253}a"), Invalid::TooLong),
            (format!("{label63}a.com"), Invalid::LabelTooLong),
            ("Example.com".into(), Invalid::Char(b'E')),
            ("under_score.com".into(), Invalid::Char(b'_')),
            ("*.a.com".into(), Invalid::Char(b'*')),
            ("-a.com".into(), Invalid::Hyphen),
            ("a-.com".into(), Invalid::Hyphen),
            ("1.2.3.4".into(), Invalid::NumericLast),
            ("a.123".into(), Invalid::NumericLast),
        ];
        for (name, want) in cases {
            assert_eq!(check(name.as_bytes()), Err(want), "{name:?}");
        }
        assert_eq!(Invalid::Char(b' ').to_string(), "character ' ' not allowed");
    }
}
