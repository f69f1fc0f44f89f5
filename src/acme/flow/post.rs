//! `Operation::post`: one signed POST for the caller (RFC 8555 §6.2, §6.3).
use super::{Call, Flow, Step};
use crate::acme::jws::Signer;
use crate::acme::{AcmeError, Client, Operation, Response};

impl Operation<Response> {
    /// A signed POST (`kid`) of `payload_json` (`None` = POST-as-GET, §6.3) to `url` → the
    /// response, for any status below 400 that is not a problem document. With an explicit
    /// `nonce`, that nonce is used and `badNonce` is not retried.
    pub fn post(
        url: String,
        payload_json: Option<String>,
        nonce: Option<String>,
    ) -> Operation<Response> {
        Operation::from_flow(Box::new(PostFlow {
            url,
            payload: payload_json,
            nonce,
            result: None,
        }))
    }
}

/// One signed POST whose reply is handed back as is.
struct PostFlow {
    url: String,
    payload: Option<String>,
    nonce: Option<String>,
    result: Option<Response>,
}

impl Flow for PostFlow {
    type Output = Response;

    fn needs_directory(&self) -> bool {
        false
    }

    fn step(&mut self, _client: &mut Client, _now: f64) -> Step<Response> {
        if let Some(resp) = self.result.take() {
            return Step::Done(resp);
        }
        Step::Call(Call::Post {
            url: self.url.clone(),
            payload: self.payload.clone(),
            signer: Signer::AccountKid,
            accept: None,
            nonce: self.nonce.take(),
        })
    }

    fn on_reply(&mut self, _: &mut Client, resp: Response, _: f64) -> Result<(), AcmeError> {
        self.result = Some(resp);
        Ok(())
    }
}
