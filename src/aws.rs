//! AWS Signature Version 4 (the request signing of every AWS API, route53 included), without
//! I/O and without a clock: the caller passes the time as `YYYYMMDDTHHMMSSZ`.
//!
//! Steps (AWS "Create a signed AWS API request"): the canonical request (method, URI, sorted
//! query, sorted lower-case headers, signed header names, hex SHA-256 of the payload), the
//! string to sign (`AWS4-HMAC-SHA256`, the time, the scope `<date>/<region>/<service>/
//! aws4_request`, the hex SHA-256 of the canonical request), the signing key (HMAC-SHA256
//! chain from `"AWS4" + secret` over date, region, service, `aws4_request`) and the
//! `Authorization` header. The secret key never leaves this module.
use crate::crypto::digest::{hmac, sha256};

/// Credentials; `Debug` hides the secret and the token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One request to sign.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The path as sent (already percent-encoded where needed), e.g. `/2013-04-01/hostedzone`.
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(String, String)],
    /// Further headers to sign (e.g. content-type); host and x-amz-date are added.
    pub headers: &'a [(String, String)],
    pub payload: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ` (UTC).
    pub amz_date: &'a str,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (SigV4's rule for
/// query names and values).
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string in canonical form (also what is sent).
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn amz_date_ok(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

fn mac(key: &[u8], data: &str) -> Result<Vec<u8>, String> {
    hmac("sha256", key, data.as_bytes()).map_err(|e| e.to_string())
}

/// The headers to add to the request: `x-amz-date`, `x-amz-security-token` (with a session
/// token) and `authorization`.
pub fn sign(creds: &Credentials, req: &SignRequest) -> Result<Vec<(String, String)>, String> {
    if !amz_date_ok(req.amz_date) {
        return Err(format!("invalid amz date {:?}", req.amz_date));
    }
    if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
        return Err("access key id and secret access key are required".into());
    }
    let date = &req.amz_date[..8];
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), req.host.to_string()),
        ("x-amz-date".into(), req.amz_date.to_string()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token".into(), t.clone()));
    }
    for (k, v) in req.headers {
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        headers.push((k.to_ascii_lowercase(), v));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        path,
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        hex(&sha256(req.payload))
    );
    let scope = format!("{date}/{}/{}/aws4_request", req.region, req.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        req.amz_date,
        hex(&sha256(canonical_request.as_bytes()))
    );
    let k_date = mac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date)?;
    let k_region = mac(&k_date, req.region)?;
    let k_service = mac(&k_region, req.service)?;
    let k_signing = mac(&k_service, "aws4_request")?;
    let signature = hex(&mac(&k_signing, &string_to_sign)?);
    let mut out = vec![("x-amz-date".to_string(), req.amz_date.to_string())];
    if let Some(t) = &creds.session_token {
        out.push(("x-amz-security-token".into(), t.clone()));
    }
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    // The "get-vanilla" case of AWS's SigV4 test suite.
    #[test]
    fn get_vanilla() {
        let out = sign(
            &creds(),
            &SignRequest {
                method: "GET",
                host: "example.amazonaws.com",
                path: "/",
                query: &[],
                headers: &[],
                payload: b"",
                region: "us-east-1",
                service: "service",
                amz_date: "20150830T123600Z",
            },
        )
        .unwrap();
        let auth = &out.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(!format!("{:?}", creds()).contains("EXAMPLEKEY"));
    }

    #[test]
    fn query_and_errors() {
        let q = vec![
            ("dnsname".to_string(), "example.com.".to_string()),
            ("a b".to_string(), "x/y".to_string()),
        ];
        assert_eq!(canonical_query(&q), "a%20b=x%2Fy&dnsname=example.com.");
        let mut r = SignRequest {
            method: "GET",
            host: "h",
            path: "/",
            query: &[],
            headers: &[],
            payload: b"",
            region: "us-east-1",
            service: "route53",
            amz_date: "2015-08-30",
        };
        assert!(sign(&creds(), &r).is_err());
        r.amz_date = "20150830T123600Z";
        let mut c = creds();
        c.session_token = Some("tok".into());
        let out = sign(&c, &r).unwrap();
        assert!(out
            .iter()
            .any(|(k, v)| k == "x-amz-security-token" && v == "tok"));
        assert!(out[out.len() - 1]
            .1
            .contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
    }
}
