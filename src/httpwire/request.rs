//! Encoding an HTTP/1.1 request (RFC 9112 sections 3 and 5).

use super::{HttpError, Target};

/// The default `User-Agent` (RFC 8555 section 6.1: ACME clients must send one).
pub const USER_AGENT: &str = concat!("lua-resty-acme-rs/", env!("CARGO_PKG_VERSION"));

/// RFC 9110 section 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Checks one caller header. Names must be tokens; values must not carry CR, LF or NUL, which
/// would end the field early and let a value inject headers or a second request.
fn check_header(name: &str, value: &str) -> Result<(), HttpError> {
    let bad = |reason: &str| HttpError::InvalidHeader {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if !is_token(name) {
        return Err(bad("name is not an http token"));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad("value contains cr, lf or nul"));
    }
    // Message framing is the transport's job: a caller value here would desynchronise it.
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(bad("set by the transport"));
    }
    Ok(())
}

/// Builds the bytes of one HTTP/1.1 request.
///
/// Added unless the caller gives them (names compared case-insensitively): `Host` (the target's
/// authority), `User-Agent` (`user_agent`), `Accept: */*` and `Connection: keep-alive`.
/// `Content-Length` is always set by this function when there is a body, and for POST, PUT and
/// PATCH also when the body is empty (RFC 9110 section 8.6); callers may not set it or
/// `Transfer-Encoding`.
pub fn encode_request(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    body: &[u8],
    user_agent: &str,
) -> Result<Vec<u8>, HttpError> {
    if !is_token(method) {
        return Err(HttpError::InvalidMethod(method.to_string()));
    }
    for (name, value) in headers {
        check_header(name, value)?;
    }
    check_header("user-agent", user_agent)?;
    let given = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));

    // Request line first, then Host (RFC 9112 section 3.2: a client must send Host).
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {} HTTP/1.1\r\n", target.path_and_query).as_bytes());
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    if !given("host") {
        line("Host", &target.authority);
    }
    if !given("user-agent") {
        line("User-Agent", user_agent);
    }
    if !given("accept") {
        line("Accept", "*/*");
    }
    if !given("connection") {
        line("Connection", "keep-alive");
    }
    for (name, value) in headers {
        line(name, value);
    }
    let needs_length = !body.is_empty()
        || ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method));
    if needs_length {
        line("Content-Length", &body.len().to_string());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    fn enc(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        String::from_utf8(encode_request(method, &target(url), &h, body, USER_AGENT).unwrap())
            .unwrap()
    }

    #[test]
    fn get_has_defaults_and_no_length() {
        let r = enc("GET", "https://ca.example/dir", &[], b"");
        assert_eq!(
            r,
            format!(
                "GET /dir HTTP/1.1\r\nHost: ca.example\r\nUser-Agent: {USER_AGENT}\r\n\
                 Accept: */*\r\nConnection: keep-alive\r\n\r\n"
            )
        );
        assert!(USER_AGENT.starts_with("lua-resty-acme-rs/"));
    }

    #[test]
    fn post_with_body() {
        let body = br#"{"protected":"x"}"#;
        let r = enc(
            "POST",
            "https://localhost:14000/new-acct",
            &[("Content-Type", "application/jose+json")],
            body,
        );
        assert!(r.starts_with("POST /new-acct HTTP/1.1\r\nHost: localhost:14000\r\n"));
        assert!(r.contains("\r\nContent-Type: application/jose+json\r\n"));
        assert!(r.ends_with(&format!(
            "Content-Length: {}\r\n\r\n{}",
            body.len(),
            std::str::from_utf8(body).unwrap()
        )));
    }

    #[test]
    fn post_empty_body_sends_zero_length() {
        let r = enc("POST", "http://a.example/", &[], b"");
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
        let r = enc("HEAD", "http://a.example/", &[], b"");
        assert!(!r.contains("Content-Length"));
    }

    #[test]
    fn caller_overrides_defaults() {
        let r = enc(
            "GET",
            "https://[::1]:8443/x",
            &[
                ("accept", "application/json"),
                ("User-Agent", "other/1"),
                ("Connection", "close"),
            ],
            b"",
        );
        assert!(r.contains("Host: [::1]:8443\r\n"));
        assert!(!r.contains("Accept: */*"));
        assert!(r.contains("accept: application/json\r\n"));
        assert!(!r.contains("lua-resty-acme-rs"));
        assert!(!r.contains("keep-alive"));
        assert!(r.contains("Connection: close\r\n"));
        let r = enc(
            "GET",
            "https://v.example/",
            &[("Host", "vault.internal")],
            b"",
        );
        assert!(r.contains("Host: vault.internal\r\n"));
        assert!(!r.contains("Host: v.example"));
    }

    #[test]
    fn header_injection_refused() {
        let t = target("https://ca.example/");
        for (n, v) in [
            ("X-A", "1\r\nX-Injected: 1"),
            ("X-A", "1\nX"),
            ("X-A", "1\rX"),
            ("X-A", "a\0b"),
            ("X-A\r\nX-B", "1"),
            ("X A", "1"),
            ("X-A:", "1"),
            ("", "1"),
        ] {
            let e =
                encode_request("GET", &t, &[(n.into(), v.into())], b"", USER_AGENT).unwrap_err();
            assert!(matches!(e, HttpError::InvalidHeader { .. }), "{n:?}: {e}");
        }
        let e = encode_request("GET", &t, &[], b"", "ua\r\nX: y").unwrap_err();
        assert!(e.to_string().contains("cr, lf or nul"), "{e}");
    }

    #[test]
    fn framing_headers_refused() {
        let t = target("https://ca.example/");
        for n in ["Content-Length", "transfer-encoding"] {
            let e = encode_request("POST", &t, &[(n.into(), "5".into())], b"x", USER_AGENT)
                .unwrap_err();
            assert!(e.to_string().contains("set by the transport"), "{e}");
        }
    }

    #[test]
    fn bad_method_refused() {
        let t = target("https://ca.example/");
        for m in ["", "GET /x HTTP/1.1\r\n", "G T"] {
            let e = encode_request(m, &t, &[], b"", USER_AGENT).unwrap_err();
            assert!(matches!(e, HttpError::InvalidMethod(_)));
        }
    }
}
