//! The directory object (RFC 8555 §7.1.1).
use super::operation::{Flow, Step};
use super::problem::quote_body;
use super::{AcmeError, Client, Directory, Outcome, Response};

/// `Operation::directory`: refetches the directory whether or not the client has one.
pub(crate) struct DirectoryFlow {
    pub requested: bool,
}

impl Flow for DirectoryFlow {
    fn needs_directory(&self) -> bool {
        false
    }

    fn step(&mut self, _client: &mut Client, _now: f64) -> Step {
        if self.requested {
            Step::Done(Outcome::Directory)
        } else {
            self.requested = true;
            Step::FetchDirectory
        }
    }

    fn on_reply(&mut self, _: &mut Client, _: Response, _: f64) -> Result<(), AcmeError> {
        Err(AcmeError::State(
            "unexpected reply for the directory operation".into(),
        ))
    }
}

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
        let url = |k: &str| {
            raw.get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let required = ["newNonce", "newAccount", "newOrder", "revokeCert"];
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| url(k).is_none())
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
        let meta = raw.get("meta");
        let meta_text = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        // draft-ietf-acme-profiles: meta.profiles maps a name to a description.
        let profiles = meta
            .and_then(|m| m.get("profiles"))
            .and_then(|p| p.as_object())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Directory {
            new_nonce: url("newNonce").unwrap_or_default(),
            new_account: url("newAccount").unwrap_or_default(),
            new_order: url("newOrder").unwrap_or_default(),
            revoke_cert: url("revokeCert").unwrap_or_default(),
            key_change: url("keyChange"),
            renewal_info: url("renewalInfo"),
            terms_of_service: meta_text("termsOfService"),
            website: meta_text("website"),
            external_account_required: meta
                .and_then(|m| m.get("externalAccountRequired"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            profiles,
            raw,
        })
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
    }
}
