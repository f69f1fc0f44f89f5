//! Splitting a request URL into what the transport needs: where to connect and what to send.

use super::HttpError;
use std::net::IpAddr;
use ureq::http::Uri;

/// The two schemes the transport speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// RFC 9110 sections 4.2.1 and 4.2.2: 80 for http, 443 for https.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed request URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// Host to connect to and to use for SNI, lower-cased; IPv6 literals without brackets.
    pub host: String,
    /// Port to connect to (the scheme's default when the URL has none).
    pub port: u16,
    /// Request target in origin form (RFC 9112 section 3.2.1): path plus query, never empty.
    pub path_and_query: String,
    /// Value of the `Host` header (RFC 9110 section 7.2): host (IPv6 in brackets), plus
    /// `:port` when the port is not the scheme's default.
    pub authority: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL. The fragment, if any, is dropped (it is
    /// never sent, RFC 9110 section 4.2.5).
    pub fn parse(url: &str) -> Result<Target, HttpError> {
        let bad = |reason: &str| HttpError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
        let scheme = match uri.scheme_str() {
            None => return Err(bad("not an absolute url (no scheme)")),
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) => {
                return Err(bad(&format!(
                    "unsupported scheme {s:?} (only http and https)"
                )))
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?.as_str();
        // RFC 9110 section 4.2.4: userinfo is deprecated in http(s) URLs and must not be sent.
        if authority.contains('@') {
            return Err(bad("userinfo (user:password@) is not allowed"));
        }
        let raw_host = uri.host().unwrap_or("");
        if raw_host.is_empty() {
            return Err(bad("empty host"));
        }
        // What follows the host in the authority is either nothing or `:port`; an empty port
        // means the default (RFC 3986 section 3.2.3).
        let after_host = authority.get(raw_host.len()..).unwrap_or("");
        let port = match after_host.strip_prefix(':') {
            None if after_host.is_empty() => scheme.default_port(),
            None => return Err(bad("invalid authority")),
            Some("") => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err(bad(&format!("invalid port {p:?}"))),
            },
        };
        let host_for_header = raw_host.to_ascii_lowercase();
        let host = match host_for_header.strip_prefix('[') {
            Some(inner) => {
                let inner = inner
                    .strip_suffix(']')
                    .ok_or_else(|| bad("invalid ipv6 host"))?;
                if inner.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(bad(&format!("invalid ipv6 address {inner:?}")));
                }
                inner.to_string()
            }
            None => host_for_header.clone(),
        };
        let authority = if port == scheme.default_port() {
            host_for_header
        } else {
            format!("{host_for_header}:{port}")
        };
        let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('?') => format!("/{p}"),
            Some(p) => p.to_string(),
        };
        Ok(Target {
            scheme,
            host,
            port,
            path_and_query,
            authority,
        })
    }

    /// Whether the host is an IP literal (no SNI is sent for those, RFC 6066 section 3).
    pub fn is_ip_literal(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }

    /// Whether the host is an IPv6 literal.
    pub fn is_ipv6(&self) -> bool {
        self.host.parse::<std::net::Ipv6Addr>().is_ok()
    }

    /// `host:port` for connecting and for messages, with IPv6 literals in brackets.
    pub fn host_port(&self) -> String {
        if self.is_ipv6() {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host in the form nginx's `tcpsock:connect` accepts (IPv6 literals in brackets).
    ///
    /// `localhost` and names under it become `127.0.0.1` (RFC 6761 section 6.3 reserves them
    /// for loopback): nginx resolves names only through its `resolver`, which usually cannot
    /// answer for them, and a local test CA (Pebble) is commonly reached as `localhost`.
    pub fn connect_host(&self) -> String {
        if self.host == "localhost" || self.host.ends_with(".localhost") {
            "127.0.0.1".to_string()
        } else if self.is_ipv6() {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    fn err(url: &str) -> String {
        Target::parse(url).unwrap_err().to_string()
    }

    #[test]
    fn default_ports() {
        let a = t("https://ca.example/dir");
        assert_eq!(a.scheme, Scheme::Https);
        assert_eq!((a.host.as_str(), a.port), ("ca.example", 443));
        assert_eq!(a.authority, "ca.example");
        assert_eq!(a.path_and_query, "/dir");
        let b = t("http://ca.example");
        assert_eq!((b.scheme, b.port), (Scheme::Http, 80));
        assert_eq!(b.path_and_query, "/");
        assert_eq!(t("https://ca.example:/x").port, 443);
    }

    #[test]
    fn explicit_ports() {
        let a = t("https://localhost:14000/dir?x=1&y=%20");
        assert_eq!(a.port, 14000);
        assert_eq!(a.authority, "localhost:14000");
        assert_eq!(a.path_and_query, "/dir?x=1&y=%20");
        assert_eq!(a.host_port(), "localhost:14000");
        assert_eq!(a.connect_host(), "127.0.0.1");
        assert_eq!(t("https://ca.example/").connect_host(), "ca.example");
        // An explicit default port is left out of the Host header.
        assert_eq!(t("https://ca.example:443/").authority, "ca.example");
        assert_eq!(t("http://ca.example:443/").authority, "ca.example:443");
    }

    #[test]
    fn ipv6() {
        let a = t("https://[::1]:8443/acme");
        assert_eq!(a.host, "::1");
        assert_eq!(a.port, 8443);
        assert_eq!(a.authority, "[::1]:8443");
        assert_eq!(a.host_port(), "[::1]:8443");
        assert_eq!(a.connect_host(), "[::1]");
        assert!(a.is_ip_literal() && a.is_ipv6());
        let b = t("http://[2001:DB8::1]/");
        assert_eq!(b.host, "2001:db8::1");
        assert_eq!(b.authority, "[2001:db8::1]");
        assert!(Target::parse("http://[zz::1]/").is_err());
    }

    #[test]
    fn ip_and_case() {
        let a = t("HTTPS://CA.Example/Path");
        assert_eq!(a.scheme, Scheme::Https);
        assert_eq!(a.host, "ca.example");
        assert_eq!(a.path_and_query, "/Path");
        assert!(!a.is_ip_literal());
        assert!(t("http://127.0.0.1:8080/").is_ip_literal());
        assert!(!t("http://127.0.0.1:8080/").is_ipv6());
    }

    #[test]
    fn fragment_and_query_only() {
        assert_eq!(t("https://a.example/x?y#frag").path_and_query, "/x?y");
        assert_eq!(t("https://a.example?q=1").path_and_query, "/?q=1");
    }

    #[test]
    fn rejects() {
        assert!(err("ftp://a.example/").contains("unsupported scheme \"ftp\""));
        assert!(err("/relative").contains("no scheme"));
        assert!(err("https://user:pw@a.example/").contains("userinfo"));
        assert!(err("https://:443/").contains("empty host"));
        assert!(err("https:///p").starts_with("invalid url"));
        assert!(err("https://a.example:99999/").contains("invalid port"));
        assert!(err("https://a.example:0/").contains("invalid port"));
        assert!(err("https://a.example/\r\nX: y").starts_with("invalid url"));
        assert!(err("https://a b/").starts_with("invalid url"));
        assert!(err("").starts_with("invalid url"));
    }
}
