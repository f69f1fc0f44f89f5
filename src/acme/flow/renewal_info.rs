//! ACME Renewal Information (RFC 9773 §4.2): the CA's suggested renewal window.
use super::{Call, Flow, Step};
use crate::acme::poll::retry_after;
use crate::acme::timestamp::parse_rfc3339;
use crate::acme::{AcmeError, Client, Operation, Response};

/// The suggested renewal window (§4.2) in Unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalWindow {
    pub start: i64,
    pub end: i64,
    pub explanation_url: Option<String>,
    /// From the reply's Retry-After, as an absolute Unix time: when to ask again.
    pub retry_after: Option<f64>,
}

impl Operation<RenewalWindow> {
    /// ACME Renewal Information for a CertID (§4.1) → its window.
    pub fn renewal_info(ari_cert_id: String) -> Operation<RenewalWindow> {
        Operation::from_flow(Box::new(RenewalInfoFlow {
            cert_id: ari_cert_id,
            result: None,
        }))
    }
}

/// Waits for the renewalInfo reply, an unauthenticated GET of `<renewalInfo>/<CertID>`.
struct RenewalInfoFlow {
    cert_id: String,
    result: Option<RenewalWindow>,
}

/// RFC 9773 §4.1: a CertID is two base64url strings joined by `.`; anything else would change
/// the URL path.
fn cert_id_is_valid(id: &str) -> bool {
    let mut parts = id.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Reads a renewalInfo object: `suggestedWindow {start, end}` (RFC 3339), `explanationURL`.
pub(crate) fn parse_renewal_info(resp: &Response, now: f64) -> Result<RenewalWindow, AcmeError> {
    resp.expect_status(&[200], "renewalInfo")?;
    let body = resp.json("renewalInfo")?;
    let window = body.get("suggestedWindow");
    let time = |k: &str| {
        window
            .and_then(|w| w.get(k))
            .and_then(|v| v.as_str())
            .and_then(parse_rfc3339)
            .ok_or_else(|| {
                AcmeError::Malformed(format!(
                    "renewalInfo: suggestedWindow.{k} is missing or not an RFC 3339 time"
                ))
            })
    };
    let (start, end) = (time("start")?, time("end")?);
    // §4.2: a window whose end is not after its start is invalid.
    if end <= start {
        return Err(AcmeError::Malformed(
            "renewalInfo: suggestedWindow ends before it starts".into(),
        ));
    }
    Ok(RenewalWindow {
        start,
        end,
        explanation_url: body
            .get("explanationURL")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        retry_after: retry_after(resp, now),
    })
}

impl Flow for RenewalInfoFlow {
    type Output = RenewalWindow;

    fn step(&mut self, client: &mut Client, _now: f64) -> Step<RenewalWindow> {
        if let Some(o) = self.result.take() {
            return Step::Done(o);
        }
        let Some(base) = client
            .directory
            .as_ref()
            .and_then(|d| d.renewal_info.clone())
        else {
            return Step::Fail(AcmeError::State(
                "the CA's directory has no renewalInfo resource (RFC 9773)".into(),
            ));
        };
        if !cert_id_is_valid(&self.cert_id) {
            return Step::Fail(AcmeError::InvalidInput(format!(
                "invalid ARI certificate identifier \"{}\"",
                self.cert_id.escape_default()
            )));
        }
        Step::Call(Call::Get {
            url: format!("{}/{}", base.trim_end_matches('/'), self.cert_id),
        })
    }

    fn on_reply(
        &mut self,
        _client: &mut Client,
        resp: Response,
        now: f64,
    ) -> Result<(), AcmeError> {
        self.result = Some(parse_renewal_info(&resp, now)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_ids() {
        assert!(cert_id_is_valid("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
        for bad in ["", "a", "a.", ".b", "a.b.c", "a/b.c", "a.b?x"] {
            assert!(!cert_id_is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn parse_window() {
        let resp = Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Retry-After".into(), "21600".into()),
            ],
            body: br#"{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"},
                       "explanationURL":"https://ca.test/why"}"#
                .to_vec(),
        };
        let w = parse_renewal_info(&resp, 1000.0).unwrap();
        assert_eq!(w.start, 1_735_790_400);
        assert_eq!(w.end, 1_735_790_400 + 86_400);
        assert_eq!(w.explanation_url.as_deref(), Some("https://ca.test/why"));
        assert_eq!(w.retry_after, Some(22_600.0));
        let mut bad = resp.clone();
        bad.body =
            br#"{"suggestedWindow":{"start":"2025-01-02","end":"2025-01-03T04:00:00Z"}}"#.to_vec();
        assert!(parse_renewal_info(&bad, 0.0).is_err());
        bad.body =
            br#"{"suggestedWindow":{"start":"2025-01-03T04:00:00Z","end":"2025-01-02T04:00:00Z"}}"#
                .to_vec();
        assert!(parse_renewal_info(&bad, 0.0).is_err());
    }
}
