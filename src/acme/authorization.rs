//! Authorization objects (RFC 8555 §7.1.4) and the choice of a challenge (§7.5).
use super::challenge::Challenge;
use super::{AcmeError, ChallengeType, Identifier};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Authorization {
    pub identifier: Identifier,
    /// `pending`, `valid`, `invalid`, `deactivated`, `expired` or `revoked` (§7.1.6).
    pub status: String,
    /// §7.1.4: the authorization is for `*.` + identifier (the identifier has no `*.`).
    pub wildcard: bool,
    pub challenges: Vec<Challenge>,
}

impl Authorization {
    pub fn from_json(v: &serde_json::Value, url: &str) -> Result<Authorization, AcmeError> {
        let malformed = |what: &str| AcmeError::Malformed(format!("authorization {url}: {what}"));
        let identifier = v
            .get("identifier")
            .and_then(Identifier::from_json)
            .ok_or_else(|| malformed("no identifier"))?;
        let status = v
            .get("status")
            .and_then(|s| s.as_str())
            .ok_or_else(|| malformed("no status"))?
            .to_string();
        let challenges = v
            .get("challenges")
            .and_then(|c| c.as_array())
            .map(|list| list.iter().filter_map(Challenge::from_json).collect())
            .unwrap_or_default();
        Ok(Authorization {
            identifier,
            status,
            wildcard: v.get("wildcard").and_then(|w| w.as_bool()).unwrap_or(false),
            challenges,
        })
    }

    /// The identifier as the order named it: `*.example.com` for a wildcard authorization.
    pub fn name(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.identifier.value)
        } else {
            self.identifier.value.clone()
        }
    }

    /// §7.5: the client picks one of the offered challenges. Takes the first of `prefs` that the
    /// server offers (for a wildcard the server offers only dns-01, §7.1.3).
    pub fn choose(&self, prefs: &[ChallengeType]) -> Result<&Challenge, AcmeError> {
        prefs
            .iter()
            .find_map(|t| {
                self.challenges
                    .iter()
                    .find(|c| c.challenge_type() == Some(*t))
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
        let pick = |p: &[ChallengeType]| a.choose(p).map(|c| c.kind.clone());
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
            "malformed response: authorization https://a: no identifier"
        );
        let e = Authorization::from_json(
            &json!({"identifier": {"type": "dns", "value": "x"}}),
            "https://a",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no status"));
    }
}
