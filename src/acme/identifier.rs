//! Order identifiers: `dns` (RFC 8555 §9.7.7) and `ip` (RFC 8738).
use super::AcmeError;
use crate::hostname;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An order identifier: `{"type": "dns"|"ip", "value": ...}` (RFC 8555 §9.7.7 `dns`,
/// RFC 8738 `ip`); any other type is refused when read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Identifier {
    Dns(String),
    /// Written in its canonical text form (RFC 8738 §3, RFC 5952).
    Ip(IpAddr),
}

impl Identifier {
    /// A `dns` identifier taken as is (no validation; see [`Identifier::parse`]).
    pub fn dns(value: impl Into<String>) -> Identifier {
        Identifier::Dns(value.into())
    }

    /// `dns` or `ip`, the identifier's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::Dns(_) => "dns",
            Identifier::Ip(_) => "ip",
        }
    }

    /// The identifier's `value`: the name, or the address in canonical form.
    pub fn value(&self) -> Cow<'_, str> {
        match self {
            Identifier::Dns(name) => Cow::Borrowed(name),
            Identifier::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }

    /// Validates and normalises a name as an operator would write it.
    ///
    /// IPv4 and IPv6 literals (IPv6 optionally in brackets) become `ip` identifiers in their
    /// canonical text form (RFC 8738 §3, RFC 5952); anything else must be a DNS name made of
    /// host name (`crate::hostname`) once lower-cased, optionally starting with `*.` (RFC 8555
    /// §7.1.3).
    pub fn parse(name: &str) -> Result<Identifier, AcmeError> {
        let bad = |why: &str| {
            AcmeError::InvalidInput(format!(
                "invalid identifier \"{}\": {why}",
                name.escape_default()
            ))
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
            return Err(bad(&format!(
                "non-ASCII character '{}' (use the A-label form)",
                c.escape_default()
            )));
        }
        for (c, what) in [('\0', "NUL"), ('/', "'/'"), ('\\', "'\\'")] {
            if name.contains(c) {
                return Err(bad(&format!("contains {what}")));
            }
        }
        if let Ok(v4) = name.parse::<Ipv4Addr>() {
            return Ok(Identifier::Ip(IpAddr::V4(v4)));
        }
        let unbracketed = name
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(v6) = unbracketed.parse::<Ipv6Addr>() {
            return Ok(Identifier::Ip(IpAddr::V6(v6)));
        }
        if unbracketed != name || name.contains(':') {
            return Err(bad("not a valid IP address"));
        }
        let lower = name.to_ascii_lowercase();
        // §7.1.3: a wildcard is `*.` followed by a host name; `*` appears nowhere else.
        let base = lower.strip_prefix("*.").unwrap_or(&lower);
        // The limit is on the name as written, `*.` included.
        if name.len() > hostname::MAX_NAME {
            return Err(bad(&hostname::Invalid::TooLong.to_string()));
        }
        hostname::check(base.as_bytes()).map_err(|why| bad(&why.to_string()))?;
        Ok(Identifier::dns(lower))
    }

    /// Whether this is a wildcard `dns` identifier (`*.example.com`, RFC 8555 §7.1.3).
    pub fn wildcard(&self) -> bool {
        matches!(self, Identifier::Dns(name) if name.starts_with("*."))
    }

    /// The value without a leading `*.`: the name an authorization is about (§7.1.4).
    pub fn base(&self) -> Cow<'_, str> {
        match self {
            Identifier::Dns(name) => Cow::Borrowed(name.strip_prefix("*.").unwrap_or(name)),
            Identifier::Ip(_) => self.value(),
        }
    }

    /// Whether this is an `ip` identifier (RFC 8738).
    pub fn is_ip(&self) -> bool {
        matches!(self, Identifier::Ip(_))
    }

    /// The JSON object of §7.1.3/§7.1.4: `{"type": ..., "value": ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "type": self.kind(), "value": self.value() })
    }
}

impl std::fmt::Display for Identifier {
    /// `dns:example.com`, the form problem subproblems are reported in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_names_table() {
        let ok = [
            ("example.com", "dns", "example.com"),
            ("Example.COM", "dns", "example.com"),
            ("*.example.com", "dns", "*.example.com"),
            ("*.EXAMPLE.com", "dns", "*.example.com"),
            ("localhost", "dns", "localhost"),
            ("a-b.c0.example", "dns", "a-b.c0.example"),
            ("xn--bcher-kva.example", "dns", "xn--bcher-kva.example"),
            ("1.2.3.4", "ip", "1.2.3.4"),
            ("127.0.0.1", "ip", "127.0.0.1"),
            ("::1", "ip", "::1"),
            ("[::1]", "ip", "::1"),
            ("2001:DB8:0:0:0:0:0:1", "ip", "2001:db8::1"),
            ("2001:0db8::0001", "ip", "2001:db8::1"),
            ("9.example", "dns", "9.example"),
        ];
        for (input, kind, value) in ok {
            let id = Identifier::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((id.kind(), id.value().as_ref()), (kind, value), "{input}");
        }
        let label63 = "a".repeat(63);
        assert!(Identifier::parse(&format!("{label63}.com")).is_ok());
        let long = format!("{0}.{0}.{0}.{1}.com", label63, "a".repeat(57));
        assert_eq!(long.len(), 253);
        assert!(Identifier::parse(&long).is_ok());
    }

    #[test]
    fn rejected_names_table() {
        let label64 = "a".repeat(64);
        let too_long = format!("{0}.{0}.{0}.{1}.com", "a".repeat(63), "a".repeat(58));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("a..b".into(), "empty label"),
            ("..".into(), "empty label"),
            (".example.com".into(), "empty label"),
            ("example.com.".into(), "trailing dot"),
            ("a/b".into(), "'/'"),
            ("a\\b".into(), "'\\'"),
            ("a\0b".into(), "NUL"),
            ("bücher.example".into(), "non-ASCII"),
            ("exa mple.com".into(), "' '"),
            ("under_score.com".into(), "'_'"),
            ("-a.com".into(), "'-'"),
            ("a-.com".into(), "'-'"),
            ("a.*.com".into(), "'*'"),
            ("*".into(), "'*'"),
            ("**.com".into(), "'*'"),
            ("*.1.2.3.4".into(), "all-numeric"),
            ("1.2.3".into(), "all-numeric"),
            ("256.1.1.1".into(), "all-numeric"),
            ("01.2.3.4".into(), "all-numeric"),
            ("[1.2.3.4]".into(), "IP"),
            ("::g".into(), "IP"),
            ("[::1".into(), "IP"),
            (format!("{label64}.com"), "label longer"),
            (too_long, "longer than 253"),
        ];
        for (input, want) in cases {
            match Identifier::parse(&input) {
                Ok(id) => panic!("{input:?} accepted as {id:?}"),
                Err(AcmeError::InvalidInput(m)) => {
                    assert!(m.contains(want), "{input:?}: {m}");
                    assert!(m.starts_with("invalid identifier \""), "{m}");
                }
                Err(e) => panic!("{input:?}: wrong error {e:?}"),
            }
        }
        // The input is named escaped, never raw.
        let Err(e) = Identifier::parse("a\0b\n") else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("a\\u{0}b\\n"), "{e}");
    }

    #[test]
    fn wildcard_and_base() {
        let w = Identifier::parse("*.example.com").unwrap();
        assert!(w.wildcard());
        assert_eq!(w.base(), "example.com");
        let n = Identifier::parse("example.com").unwrap();
        assert!(!n.wildcard());
        assert_eq!(n.base(), "example.com");
        assert!(!Identifier::parse("::1").unwrap().wildcard());
        assert!(Identifier::parse("::1").unwrap().is_ip());
        assert_eq!(n.to_string(), "dns:example.com");
        assert_eq!(
            n.to_json(),
            serde_json::json!({"type": "dns", "value": "example.com"})
        );
        let back: Identifier = serde_json::from_value(n.to_json()).unwrap();
        assert_eq!(back, n);
        let ip: Identifier =
            serde_json::from_value(serde_json::json!({"type": "ip", "value": "2001:db8::1"}))
                .unwrap();
        assert_eq!(ip.base(), "2001:db8::1");
        let e = serde_json::from_value::<Identifier>(
            serde_json::json!({"type": "email", "value": "a@b.test"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `email`"), "{e}");
    }
}
