//! Certificates: downloading a chain and choosing among alternates (RFC 8555 §7.4.2), and
//! revocation (§7.6).
use super::{Call, Flow, Step};
use crate::acme::jws::{Signer, PEM_CHAIN};
use crate::acme::problem::media_type;
use crate::acme::{AcmeError, Client, Operation, Response};
use crate::crypto::cert::root_issuer_cn;
use crate::crypto::encoding::b64url;
use crate::crypto::PrivateKey;
use std::sync::Arc;

/// The PEM chain of a certificate download (§7.4.2), which must be
/// `application/pem-certificate-chain`.
pub(crate) fn chain_from_reply(resp: &Response) -> Result<String, AcmeError> {
    resp.expect_status(&[200], "certificate download")?;
    let ct = media_type(resp);
    if ct != PEM_CHAIN {
        return Err(AcmeError::Malformed(format!(
            "wrong content type, got {}",
            resp.header("content-type").unwrap_or("none")
        )));
    }
    let pem = String::from_utf8(resp.body.clone())
        .map_err(|_| AcmeError::Malformed("the certificate chain is not UTF-8 text".into()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(AcmeError::Malformed(
            "the certificate reply has no PEM certificate".into(),
        ));
    }
    Ok(pem)
}

/// Whether the issuer CN of the chain's last certificate is `preferred` (the original's
/// `check_chain_root_issuer`).
pub(crate) fn root_is(pem: &str, preferred: &str) -> Result<bool, AcmeError> {
    Ok(root_issuer_cn(pem.as_bytes())?.as_deref() == Some(preferred))
}

impl Operation<()> {
    /// revokeCert (§7.6). `reason` is an RFC 5280 §5.3.1 code; with `cert_key` the request is
    /// signed by the certificate's key (`jwk`) instead of the account.
    pub fn revoke(
        cert_der: Vec<u8>,
        reason: Option<u32>,
        cert_key: Option<PrivateKey>,
    ) -> Operation<()> {
        Operation::from_flow(Box::new(RevokeFlow {
            cert_der,
            reason,
            cert_key: cert_key.map(Arc::new),
            done: false,
        }))
    }
}

/// Waits for the revokeCert reply (§7.6).
struct RevokeFlow {
    cert_der: Vec<u8>,
    reason: Option<u32>,
    /// §7.6: revocation may be signed by the certificate's key instead of the account's.
    cert_key: Option<Arc<PrivateKey>>,
    done: bool,
}

impl Flow for RevokeFlow {
    type Output = ();

    fn step(&mut self, client: &mut Client, _now: f64) -> Step<()> {
        if self.done {
            return Step::Done(());
        }
        let Some(dir) = &client.directory else {
            return Step::Fail(AcmeError::State("the directory is not known".into()));
        };
        if self.cert_der.is_empty() {
            return Step::Fail(AcmeError::InvalidInput("no certificate to revoke".into()));
        }
        let mut payload = serde_json::json!({ "certificate": b64url(&self.cert_der) });
        if let Some(r) = self.reason {
            // RFC 5280 §5.3.1 reason codes.
            payload["reason"] = r.into();
        }
        let signer = match &self.cert_key {
            Some(k) => Signer::Key(Arc::clone(k)),
            None => Signer::AccountKid,
        };
        Step::Call(Call::Post {
            url: dir.revoke_cert.clone(),
            payload: Some(payload.to_string()),
            signer,
            accept: None,
            nonce: None,
        })
    }

    fn on_reply(
        &mut self,
        _client: &mut Client,
        resp: Response,
        _now: f64,
    ) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "revokeCert")?;
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(ct: &str, body: &str) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn chain_reply_checks() {
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        assert_eq!(chain_from_reply(&resp(PEM_CHAIN, pem)).unwrap(), pem);
        assert_eq!(
            chain_from_reply(&resp(
                "application/pem-certificate-chain; charset=utf-8",
                pem
            ))
            .unwrap(),
            pem
        );
        let e = chain_from_reply(&resp("application/json", "{}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed response: wrong content type, got application/json"
        );
        assert!(chain_from_reply(&resp(PEM_CHAIN, "hello")).is_err());
    }
}
