//! Challenges (RFC 8555 §8): what the caller publishes for them.
use super::types::Challenge;
use super::{ChallengeTask, ChallengeType};
use crate::crypto;

impl Challenge {
    pub fn challenge_type(&self) -> Option<ChallengeType> {
        ChallengeType::parse(&self.kind)
    }

    /// `<type>: <status>[: <error.detail>]`, the original's per-challenge text.
    pub fn describe(&self) -> String {
        match &self.error {
            Some(p) => format!("{}: {}: {}", self.kind, self.status.as_str(), p.message()),
            None => format!("{}: {}", self.kind, self.status.as_str()),
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
    use crate::acme::types::ChallengeStatus;
    use serde_json::json;

    #[test]
    fn parse_and_describe() {
        let read = |v| Challenge::from_reply(&v, "u");
        let c = read(json!({
            "type": "http-01", "url": "https://ca.test/chall/1", "status": "invalid",
            "token": "tok", "error": {"type": "urn:ietf:params:acme:error:connection",
            "detail": "connection refused"}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(c.challenge_type(), Some(ChallengeType::Http01));
        assert_eq!(c.describe(), "http-01: invalid: connection refused");
        let c = read(json!({"type": "x-99", "url": "u", "error": "not a problem"}))
            .unwrap()
            .unwrap();
        assert_eq!(c.status, ChallengeStatus::Pending);
        assert_eq!(c.challenge_type(), None);
        assert_eq!(c.describe(), "x-99: pending");
        assert!(read(json!({"type": "http-01"})).unwrap().is_none());
        let e = read(json!({"type": "http-01", "url": "u", "status": "done"})).unwrap_err();
        assert!(e.to_string().contains("unknown variant `done`"), "{e}");
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
