//! Challenges (RFC 8555 §8): what the caller publishes for them.
use super::types::Challenge;
use super::Identifier;
use crate::crypto;

/// Challenge types (RFC 8555 §8.3, §8.4; RFC 8737).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeType {
    Http01,
    Dns01,
    TlsAlpn01,
    /// draft-ietf-acme-dns-persist-01: a standing TXT record naming the CA and the account.
    DnsPersist01,
}

impl ChallengeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
            ChallengeType::DnsPersist01 => "dns-persist-01",
        }
    }

    pub fn parse(s: &str) -> Option<ChallengeType> {
        match s {
            "http-01" => Some(ChallengeType::Http01),
            "dns-01" => Some(ChallengeType::Dns01),
            "tls-alpn-01" => Some(ChallengeType::TlsAlpn01),
            "dns-persist-01" => Some(ChallengeType::DnsPersist01),
            _ => None,
        }
    }
}

/// What the caller must publish so that the CA can validate one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeTask {
    pub kind: ChallengeType,
    /// The authorization's identifier; for a wildcard authorization the base name.
    pub identifier: Identifier,
    /// The authorization was for `*.` + identifier (§7.1.4 `wildcard`).
    pub wildcard: bool,
    /// Empty for dns-persist-01, which has no token.
    pub token: String,
    /// Empty for dns-persist-01.
    pub key_authorization: String,
    pub url: String,
    pub authz_url: String,
    /// dns-persist-01: the challenge's `issuer-domain-names` (the CA names a record may use).
    pub issuer_domain_names: Vec<String>,
    /// dns-persist-01: the challenge's `accounturi` when the CA sent one.
    pub account_uri: Option<String>,
}

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
