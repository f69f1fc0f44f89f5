//! Challenge objects (RFC 8555 §7.1.5, §8) and what the caller publishes for them.
use super::{ChallengeTask, ChallengeType, Problem};
use crate::crypto;

/// A challenge object as listed in an authorization (§7.1.5).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Challenge {
    /// The type as sent, e.g. `http-01`; unknown types are kept for error messages.
    pub kind: String,
    pub url: String,
    /// `pending`, `processing`, `valid` or `invalid` (§7.1.6).
    pub status: String,
    /// §8.3, §8.4, RFC 8737 §3: the token of the three challenge types this library answers.
    pub token: Option<String>,
    pub error: Option<Problem>,
    /// dns-persist-01: `issuer-domain-names`, the CA's names a record may carry.
    pub issuer_domain_names: Vec<String>,
    /// dns-persist-01: `accounturi`, the account URL the record must name.
    pub account_uri: Option<String>,
}

impl Challenge {
    pub fn from_json(v: &serde_json::Value) -> Option<Challenge> {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(Challenge {
            kind: text("type")?,
            url: text("url")?,
            status: text("status").unwrap_or_else(|| "pending".into()),
            token: text("token"),
            error: v
                .get("error")
                .filter(|e| e.is_object())
                .map(|e| Problem::from_json(e, 0, None)),
            issuer_domain_names: v
                .get("issuer-domain-names")
                .and_then(|l| l.as_array())
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str())
                        .map(str::to_ascii_lowercase)
                        .collect()
                })
                .unwrap_or_default(),
            account_uri: text("accounturi"),
        })
    }

    pub fn challenge_type(&self) -> Option<ChallengeType> {
        ChallengeType::parse(&self.kind)
    }

    /// `<type>: <status>[: <error.detail>]`, the original's per-challenge text.
    pub fn describe(&self) -> String {
        match &self.error {
            Some(p) => format!("{}: {}: {}", self.kind, self.status, p.message()),
            None => format!("{}: {}", self.kind, self.status),
        }
    }
}

/// §8.1: a token is base64url; anything else could smuggle path or header syntax into what
/// the caller publishes. (Its length, ≥ 128 bits of entropy, is the CA's business.)
pub(crate) fn token_is_valid(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ChallengeTask {
    /// The dns-01 TXT record value: base64url(SHA-256(key authorization)) (§8.4).
    pub fn dns_txt_value(&self) -> String {
        crypto::challenge::dns01_txt_value(&self.key_authorization)
    }

    /// The dns-01 record name: `_acme-challenge.` + the base name (§8.4; wildcards drop `*.`).
    pub fn dns_record_name(&self) -> String {
        format!("_acme-challenge.{}", self.identifier.base())
    }

    /// The http-01 path: `/.well-known/acme-challenge/<token>` (§8.3).
    pub fn http_path(&self) -> String {
        format!("/.well-known/acme-challenge/{}", self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_and_describe() {
        let c = Challenge::from_json(&json!({
            "type": "http-01", "url": "https://ca.test/chall/1", "status": "invalid",
            "token": "tok", "error": {"type": "urn:ietf:params:acme:error:connection",
            "detail": "connection refused"}
        }))
        .unwrap();
        assert_eq!(c.challenge_type(), Some(ChallengeType::Http01));
        assert_eq!(c.describe(), "http-01: invalid: connection refused");
        let c = Challenge::from_json(&json!({"type": "x-99", "url": "u"})).unwrap();
        assert_eq!(c.status, "pending");
        assert_eq!(c.challenge_type(), None);
        assert_eq!(c.describe(), "x-99: pending");
        assert!(Challenge::from_json(&json!({"type": "http-01"})).is_none());
    }

    #[test]
    fn tokens() {
        assert!(token_is_valid(
            "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
        ));
        assert!(!token_is_valid(""));
        assert!(!token_is_valid("../../../../etc/passwd/aaaa"));
        assert!(!token_is_valid("abcdefghijklmnop\r\nX: y"));
    }
}
