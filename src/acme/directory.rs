//! Reading the directory (RFC 8555 §7.1.1).
use super::problem::quote_body;
use super::types::{Directory, DirectoryDoc};
use super::{AcmeError, Response};
use serde::Deserialize;

impl Directory {
    /// Reads a directory reply. Error texts are the original library's.
    pub fn from_response(resp: &Response) -> Result<Directory, AcmeError> {
        let ct = resp.header("content-type").unwrap_or("");
        if resp.status != 200 || !ct.to_ascii_lowercase().contains("application/json") {
            return Err(AcmeError::Directory(
                format!(
                    "acme directory listing failed: status code {}, content-type {}",
                    resp.status,
                    quote_body(ct.as_bytes())
                ),
                None,
            ));
        }
        let raw: serde_json::Value = serde_json::from_slice(&resp.body)
            .ok()
            .filter(|v: &serde_json::Value| v.is_object())
            .ok_or_else(|| {
                AcmeError::Directory("acme directory listing response malformed".into(), None)
            })?;
        Directory::from_json(raw)
    }

    /// Reads a directory object; the four resources every ACME server has must be present.
    pub fn from_json(raw: serde_json::Value) -> Result<Directory, AcmeError> {
        let doc = DirectoryDoc::deserialize(&raw).map_err(|e| {
            AcmeError::Directory(
                format!("acme directory listing response malformed: {e}"),
                None,
            )
        })?;
        let required = [
            ("newNonce", &doc.new_nonce),
            ("newAccount", &doc.new_account),
            ("newOrder", &doc.new_order),
            ("revokeCert", &doc.revoke_cert),
        ];
        let missing: Vec<&str> = required
            .iter()
            .filter(|(_, url)| url.as_deref().is_none_or(str::is_empty))
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(AcmeError::Directory(
                format!(
                    "acme directory listing is missing {} (newNonce, newAccount, newOrder and revokeCert are required)",
                    missing.join(", ")
                ),
                None,
            ));
        }
        let non_empty = |url: Option<String>| url.filter(|u| !u.is_empty());
        let meta = doc.meta;
        Ok(Directory {
            new_nonce: doc.new_nonce.unwrap_or_default(),
            new_account: doc.new_account.unwrap_or_default(),
            new_order: doc.new_order.unwrap_or_default(),
            revoke_cert: doc.revoke_cert.unwrap_or_default(),
            key_change: non_empty(doc.key_change),
            renewal_info: non_empty(doc.renewal_info),
            terms_of_service: meta.terms_of_service,
            website: meta.website,
            external_account_required: meta.external_account_required,
            profiles: meta
                .profiles
                .into_iter()
                .map(|(name, about)| (name, about.as_str().unwrap_or_default().to_string()))
                .collect(),
            raw,
        })
    }
}

impl Directory {
    /// draft-ietf-acme-profiles: `profile` must be one the directory's `meta.profiles` offers.
    /// The text (the original Lua client's) names what is offered.
    pub fn check_profile(&self, profile: &str) -> Result<(), String> {
        if self.profiles.iter().any(|(name, _)| name == profile) {
            return Ok(());
        }
        if self.profiles.is_empty() {
            return Err(format!(
                "profile {profile} is not offered: the CA's directory lists no profiles"
            ));
        }
        let names: Vec<&str> = self.profiles.iter().map(|(n, _)| n.as_str()).collect();
        Err(format!(
            "profile {profile} is not offered by the CA (it offers: {})",
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, ct: &str, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn full_directory() {
        let body = json!({
            "newNonce": "https://ca.test/nonce",
            "newAccount": "https://ca.test/acct",
            "newOrder": "https://ca.test/order",
            "revokeCert": "https://ca.test/revoke",
            "keyChange": "https://ca.test/kc",
            "renewalInfo": "https://ca.test/ari",
            "meta": {
                "termsOfService": "https://ca.test/tos",
                "website": "https://zerossl.com",
                "externalAccountRequired": true,
                "profiles": {"classic": "the default", "shortlived": "6 days"}
            }
        });
        let d = Directory::from_response(&resp(
            200,
            "application/json; charset=utf-8",
            &body.to_string(),
        ))
        .unwrap();
        assert_eq!(d.new_nonce, "https://ca.test/nonce");
        assert_eq!(d.new_account, "https://ca.test/acct");
        assert_eq!(d.new_order, "https://ca.test/order");
        assert_eq!(d.revoke_cert, "https://ca.test/revoke");
        assert_eq!(d.key_change.as_deref(), Some("https://ca.test/kc"));
        assert_eq!(d.renewal_info.as_deref(), Some("https://ca.test/ari"));
        assert_eq!(d.terms_of_service.as_deref(), Some("https://ca.test/tos"));
        assert_eq!(d.website.as_deref(), Some("https://zerossl.com"));
        assert!(d.external_account_required);
        assert_eq!(
            d.profiles,
            [
                ("classic".to_string(), "the default".to_string()),
                ("shortlived".to_string(), "6 days".to_string())
            ]
        );
        assert_eq!(d.raw, body);
        assert_eq!(d.check_profile("shortlived"), Ok(()));
        assert_eq!(
            d.check_profile("nope").unwrap_err(),
            "profile nope is not offered by the CA (it offers: classic, shortlived)"
        );
        let plain = Directory::default();
        assert_eq!(
            plain.check_profile("classic").unwrap_err(),
            "profile classic is not offered: the CA's directory lists no profiles"
        );
    }

    #[test]
    fn original_error_texts() {
        let e = Directory::from_response(&resp(503, "text/html", "<html>")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "acme directory listing failed: status code 503, content-type text/html"
        );
        let e = Directory::from_response(&resp(200, "text/plain", "{}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "acme directory listing failed: status code 200, content-type text/plain"
        );
        let e = Directory::from_response(&resp(200, "application/json", "{nope")).unwrap_err();
        assert_eq!(e.to_string(), "acme directory listing response malformed");
        let e = Directory::from_response(&resp(
            200,
            "application/json",
            r#"{"newNonce":"https://n","newOrder":"https://o"}"#,
        ))
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("missing newAccount, revokeCert"), "{m}");
        let e = Directory::from_json(json!({"newNonce": 7})).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("acme directory listing response malformed: invalid type: integer"),
            "{m}"
        );
    }
}
