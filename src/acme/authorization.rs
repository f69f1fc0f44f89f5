//! What an authorization asks of the client: the choice of a challenge (RFC 8555 §7.5).
use super::challenge::token_is_valid;
use super::persist;
use super::types::{Authorization, AuthorizationStatus, Challenge, ChallengeStatus};
use super::{AcmeError, ChallengeTask, ChallengeType, Problem};
use crate::crypto::challenge::key_authorization;

/// An authorization that needs the client: a challenge to publish (and maybe start), or just
/// to be waited for.
#[derive(Debug, Clone)]
pub(crate) struct PendingAuthz {
    pub url: String,
    /// The order's name for it (`*.example.com` for a wildcard authorization).
    pub name: String,
    pub task: Option<ChallengeTask>,
    /// The challenge is `pending`: it must be started (§7.5.1); `processing` ones already are.
    pub start: bool,
}

impl Authorization {
    /// The identifier as the order named it: `*.example.com` for a wildcard authorization.
    pub fn name(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.identifier.value())
        } else {
            self.identifier.value().into_owned()
        }
    }

    /// §7.5: the client picks one of the offered challenges. Takes the first of `prefs` that the
    /// server offers (for a wildcard the server offers only dns-01, §7.1.3).
    pub fn choose(
        &self,
        prefs: &[ChallengeType],
    ) -> Result<(&Challenge, ChallengeType), AcmeError> {
        prefs
            .iter()
            .find_map(|t| {
                self.challenges
                    .iter()
                    .find(|c| c.challenge_type() == Some(*t))
                    .map(|c| (c, *t))
            })
            .ok_or_else(|| {
                let offered: Vec<&str> = self.challenges.iter().map(|c| c.kind.as_str()).collect();
                let enabled: Vec<&str> = prefs.iter().map(|t| t.as_str()).collect();
                AcmeError::NoChallenge(format!(
                    "{}: the CA offers [{}], enabled are [{}]",
                    self.name(),
                    offered.join(", "),
                    enabled.join(", ")
                ))
            })
    }

    /// What the client must do for this authorization (fetched from `url`): nothing when it is
    /// valid already (§7.1.6, e.g. reused from an earlier order); otherwise the chosen challenge
    /// as a task, with its key authorization (§8.1: token "." base64url(JWK thumbprint)).
    pub fn work(
        &self,
        url: &str,
        prefs: &[ChallengeType],
        thumbprint: &str,
    ) -> Result<Option<PendingAuthz>, AcmeError> {
        let invalid = || {
            AcmeError::Invalid(
                format!("challenge invalid: {}", self.describe_challenges()),
                self.first_error(),
            )
        };
        match self.status {
            AuthorizationStatus::Valid => return Ok(None),
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Invalid => return Err(invalid()),
            AuthorizationStatus::Deactivated
            | AuthorizationStatus::Expired
            | AuthorizationStatus::Revoked => {
                return Err(AcmeError::Invalid(
                    format!(
                        "authorization {url} for {} is {}",
                        self.name(),
                        self.status.as_str()
                    ),
                    None,
                ))
            }
        }
        let (chall, kind) = self.choose(prefs)?;
        let (task, start) = match chall.status {
            ChallengeStatus::Pending | ChallengeStatus::Processing
                if kind == ChallengeType::DnsPersist01 =>
            {
                // draft-ietf-acme-dns-persist-01: no token; the CA lists the issuer domain
                // names a record may name, and the client must use one of them.
                let issuers = &chall.issuer_domain_names;
                if issuers.is_empty() || !issuers.iter().all(|i| persist::issuer_is_valid(i)) {
                    return Err(AcmeError::Malformed(format!(
                        "dns-persist-01 challenge {} has no valid issuer-domain-names",
                        chall.url
                    )));
                }
                let task = ChallengeTask {
                    kind,
                    identifier: self.identifier.clone(),
                    wildcard: self.wildcard,
                    token: String::new(),
                    key_authorization: String::new(),
                    url: chall.url.clone(),
                    authz_url: url.to_string(),
                    issuer_domain_names: issuers.clone(),
                    account_uri: chall.account_uri.clone(),
                };
                (Some(task), chall.status == ChallengeStatus::Pending)
            }
            ChallengeStatus::Pending | ChallengeStatus::Processing => {
                let token = chall.token.as_deref().unwrap_or_default();
                if !token_is_valid(token) {
                    return Err(AcmeError::Malformed(format!(
                        "challenge {} has an invalid token \"{}\"",
                        chall.url,
                        token.escape_default()
                    )));
                }
                let task = ChallengeTask {
                    kind,
                    identifier: self.identifier.clone(),
                    wildcard: self.wildcard,
                    token: token.to_string(),
                    key_authorization: key_authorization(token, thumbprint),
                    url: chall.url.clone(),
                    authz_url: url.to_string(),
                    issuer_domain_names: Vec::new(),
                    account_uri: None,
                };
                (Some(task), chall.status == ChallengeStatus::Pending)
            }
            // Validated already; the authorization will follow.
            ChallengeStatus::Valid => (None, false),
            ChallengeStatus::Invalid => return Err(invalid()),
        };
        Ok(Some(PendingAuthz {
            url: url.to_string(),
            name: self.name(),
            task,
            start,
        }))
    }

    /// The problem document of the first challenge that has one (why validation failed).
    pub fn first_error(&self) -> Option<Box<Problem>> {
        self.challenges
            .iter()
            .find_map(|c| c.error.clone())
            .map(Box::new)
    }

    /// Every challenge as `<type>: <status>[: <detail>]`, joined by `; ` (the original's text).
    pub fn describe_challenges(&self) -> String {
        self.challenges
            .iter()
            .map(Challenge::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn authz() -> Authorization {
        Authorization::from_json(
            &json!({
                "identifier": {"type": "dns", "value": "example.com"},
                "status": "pending",
                "wildcard": true,
                "challenges": [
                    {"type": "dns-01", "url": "https://ca.test/c/1", "status": "pending", "token": "t1"},
                    {"type": "tls-alpn-01", "url": "https://ca.test/c/2", "status": "pending", "token": "t2"},
                    {"type": "http-01", "url": "https://ca.test/c/3", "status": "pending", "token": "t3"},
                    {"type": "broken"}
                ]
            }),
            "https://ca.test/authz/1",
        )
        .unwrap()
    }

    #[test]
    fn choose_follows_preference_order() {
        let a = authz();
        assert_eq!(a.challenges.len(), 3);
        assert_eq!(a.name(), "*.example.com");
        let pick = |p: &[ChallengeType]| a.choose(p).map(|(c, _)| c.kind.clone());
        assert_eq!(
            pick(&[ChallengeType::Http01, ChallengeType::Dns01]).unwrap(),
            "http-01"
        );
        assert_eq!(
            pick(&[ChallengeType::TlsAlpn01, ChallengeType::Http01]).unwrap(),
            "tls-alpn-01"
        );
        let mut only_dns = a.clone();
        only_dns.challenges.retain(|c| c.kind == "dns-01");
        let e = only_dns.choose(&[ChallengeType::Http01]).unwrap_err();
        assert!(matches!(e, AcmeError::NoChallenge(_)));
        assert_eq!(
            e.to_string(),
            "no usable challenge: *.example.com: the CA offers [dns-01], enabled are [http-01]"
        );
    }

    #[test]
    fn malformed_authorizations() {
        let e = Authorization::from_json(&json!({"status": "pending"}), "https://a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed response: authorization https://a: missing field `identifier`"
        );
        let e = Authorization::from_json(
            &json!({"identifier": {"type": "dns", "value": "x"}}),
            "https://a",
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `status`"), "{e}");
        let e = Authorization::from_json(
            &json!({"identifier": {"type": "dns", "value": "x"}, "status": "paused"}),
            "https://a",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `paused`"), "{e}");
        let e = Authorization::from_json(
            &json!({"identifier": {"type": "email", "value": "x"}, "status": "valid"}),
            "https://a",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `email`"), "{e}");
        // Members this library does not know are ignored.
        let a = Authorization::from_json(
            &json!({"identifier": {"type": "ip", "value": "::1"}, "status": "valid",
                    "expires": "2030-01-01T00:00:00Z", "x-extra": [1]}),
            "https://a",
        )
        .unwrap();
        assert_eq!(a.name(), "::1");
    }

    #[test]
    fn dns_persist_task() {
        let a = Authorization::from_json(
            &json!({
                "identifier": {"type": "dns", "value": "example.com"},
                "status": "pending", "wildcard": true,
                "challenges": [{"type": "dns-persist-01", "url": "https://ca.test/c/9",
                    "status": "pending", "accounturi": "https://ca.test/acct/1",
                    "issuer-domain-names": ["CA.test", "other.test"]}]
            }),
            "https://ca.test/authz/9",
        )
        .unwrap();
        let w = a
            .work(
                "https://ca.test/authz/9",
                &[ChallengeType::DnsPersist01],
                "thumb",
            )
            .unwrap()
            .unwrap();
        let t = w.task.unwrap();
        assert_eq!(t.kind, ChallengeType::DnsPersist01);
        assert_eq!(t.token, "");
        assert_eq!(t.issuer_domain_names, vec!["ca.test", "other.test"]);
        assert_eq!(t.account_uri.as_deref(), Some("https://ca.test/acct/1"));
        assert!(w.start);
        let mut bad = a.clone();
        bad.challenges[0].issuer_domain_names.clear();
        let e = bad
            .work(
                "https://ca.test/authz/9",
                &[ChallengeType::DnsPersist01],
                "thumb",
            )
            .unwrap_err();
        assert!(e.to_string().contains("no valid issuer-domain-names"));
    }
}
