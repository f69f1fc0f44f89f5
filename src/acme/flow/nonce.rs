//! `Operation::new_nonce`: a nonce for the caller (RFC 8555 §7.2).
use super::{Call, Flow, Step};
use crate::acme::{nonce, AcmeError, Client, Operation, Response};

/// HEAD newNonce and hand the nonce to the caller (it is not kept in the pool, so the caller
/// may use it with `Operation::post`).
struct NonceFlow {
    nonce: Option<String>,
}

impl Flow for NonceFlow {
    type Output = String;

    fn step(&mut self, client: &mut Client, _now: f64) -> Step<String> {
        if let Some(n) = self.nonce.take() {
            return Step::Done(n);
        }
        match &client.directory {
            Some(d) => Step::Call(Call::Head {
                url: d.new_nonce.clone(),
            }),
            None => Step::Fail(AcmeError::State("the directory is not known".into())),
        }
    }

    fn on_reply(
        &mut self,
        client: &mut Client,
        resp: Response,
        _now: f64,
    ) -> Result<(), AcmeError> {
        // §7.2: 200 for HEAD, 204 for GET.
        resp.expect_status(&[200, 204], "newNonce")?;
        let n = nonce::from_response(&resp)
            .ok_or_else(|| {
                AcmeError::Malformed(format!(
                    "newNonce reply (status {}) has no valid Replay-Nonce header",
                    resp.status
                ))
            })?
            .to_string();
        client.nonces.forget(&n);
        self.nonce = Some(n);
        Ok(())
    }
}

impl Operation<String> {
    /// HEAD newNonce → the nonce; it is not pooled.
    pub fn new_nonce() -> Operation<String> {
        Operation::from_flow(Box::new(NonceFlow { nonce: None }))
    }
}
