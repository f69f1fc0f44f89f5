//! `Link` headers (RFC 8288) as ACME uses them: `rel="alternate"` certificate chains (RFC 8555
//! §7.4.2), `rel="up"` issuers, `rel="index"` the directory (§7.1).
use super::Response;

/// Targets of every link whose `rel` includes `rel`, across all `Link` header fields, in order,
/// resolved against `base` (the request URL).
pub fn links(resp: &Response, rel: &str, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for field in resp.header_all("link") {
        for (target, rels) in parse_field(field) {
            if rels.iter().any(|r| r.eq_ignore_ascii_case(rel)) {
                out.push(resolve(base, &target));
            }
        }
    }
    out
}

/// One `Link` field value: `<uri>; param=value; param="quoted", <uri2>; ...`. Returns each link's
/// target and its `rel` values (RFC 8288 §3.3: a space-separated list). Unparsable parts are
/// skipped rather than failing the response.
pub fn parse_field(field: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = field;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let target = rest[open + 1..open + close].trim().to_string();
        rest = &rest[open + close + 1..];
        // Parameters run to the next comma outside quotes.
        let mut rels = Vec::new();
        let end = unquoted(rest, ',').next().unwrap_or(rest.len());
        for param in split_params(&rest[..end]) {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("rel") {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                rels.extend(value.split_ascii_whitespace().map(str::to_string));
            }
        }
        out.push((target, rels));
        rest = &rest[end..];
    }
    out
}

/// Byte offsets of `sep` in `s` outside double-quoted strings (with `\\` escapes inside them).
fn unquoted(s: &str, sep: char) -> impl Iterator<Item = usize> + '_ {
    let (mut in_quotes, mut escaped) = (false, false);
    s.char_indices().filter_map(move |(i, c)| {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == sep {
            return Some(i);
        }
        None
    })
}

/// Splits link parameters at `;` outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in unquoted(s, ';') {
        out.push(&s[start..i]);
        start = i + 1;
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Resolves a link target against the request URL (RFC 3986 §5.2). A base that is no URL, or
/// a target that cannot be joined to it, leaves the target as it is.
pub fn resolve(base: &str, target: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(target))
        .map(String::from)
        .unwrap_or_else(|_| target.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(links: &[&str]) -> Response {
        Response {
            status: 200,
            headers: links
                .iter()
                .map(|l| ("Link".to_string(), l.to_string()))
                .collect(),
            body: vec![],
        }
    }

    const BASE: &str = "https://ca.test/acme/cert/1";

    #[test]
    fn alternates_across_fields_and_lists() {
        let r = resp(&[
            r#"<https://ca.test/acme/cert/1/1>;rel="alternate""#,
            r#"<https://ca.test/dir>;rel="index""#,
            r#"<https://ca.test/acme/cert/1/2>; rel=alternate, <https://ca.test/issuer>;rel="up", <https://ca.test/acme/cert/1/3> ; title="a, b; c" ; REL="alternate up""#,
        ]);
        assert_eq!(
            links(&r, "alternate", BASE),
            [
                "https://ca.test/acme/cert/1/1",
                "https://ca.test/acme/cert/1/2",
                "https://ca.test/acme/cert/1/3"
            ]
        );
        assert_eq!(
            links(&r, "up", BASE),
            ["https://ca.test/issuer", "https://ca.test/acme/cert/1/3"]
        );
        assert_eq!(links(&r, "index", BASE), ["https://ca.test/dir"]);
        assert!(links(&resp(&[]), "alternate", BASE).is_empty());
    }

    #[test]
    fn garbage_is_skipped() {
        let r = resp(&[
            "rel=alternate",
            "<https://ca.test/unterminated;rel=alternate",
            r#"<https://ca.test/ok>;rel="alternate";broken"#,
        ]);
        assert_eq!(links(&r, "alternate", BASE), ["https://ca.test/ok"]);
    }

    #[test]
    fn relative_targets() {
        assert_eq!(resolve(BASE, "/x/y"), "https://ca.test/x/y");
        assert_eq!(resolve(BASE, "2"), "https://ca.test/acme/cert/2");
        assert_eq!(resolve(BASE, "//other.test/z"), "https://other.test/z");
        assert_eq!(resolve("https://ca.test", "a"), "https://ca.test/a");
        assert_eq!(
            resolve("https://ca.test:14000/a?q=/b", "c"),
            "https://ca.test:14000/c"
        );
        assert_eq!(resolve(BASE, "http://x.test/"), "http://x.test/");
        // RFC 3986 §5.4.1: dot segments and query-only references.
        assert_eq!(resolve(BASE, "../chain/2"), "https://ca.test/acme/chain/2");
        assert_eq!(resolve(BASE, "../../../x"), "https://ca.test/x");
        assert_eq!(resolve(BASE, "./3"), "https://ca.test/acme/cert/3");
        assert_eq!(resolve(BASE, "?alt=1"), "https://ca.test/acme/cert/1?alt=1");
        assert_eq!(
            resolve("https://ca.test/acme/cert/1?alt=0", "?alt=1"),
            "https://ca.test/acme/cert/1?alt=1"
        );
        assert_eq!(resolve("not a url", "x"), "x");
    }
}
