//! The protocol operations: one flow each, with the constructor of its [`Operation`] and the
//! type of its result. A flow is only the operation's own logic; `operation` adds what every
//! one shares (directory, nonces, signing, `badNonce` retries, problem documents).
//!
//! [`Operation`]: super::Operation
mod account;
mod certificate;
mod directory;
mod nonce;
mod order;
mod post;
pub(crate) mod renewal_info;

pub use account::{AccountInfo, Eab, NewAccount};
pub use order::{IssuedCertificate, OrderRequest};
pub use renewal_info::RenewalWindow;

use super::jws::Signer;
use super::{AcmeError, ChallengeTask, Client, Response};

/// What a flow wants next.
pub(crate) enum Step<T> {
    /// Refetch the directory, whether or not the client has one (`Operation::directory`).
    FetchDirectory,
    Call(Call),
    Sleep(f64),
    Publish(ChallengeTask),
    Unpublish(ChallengeTask),
    Done(T),
    Fail(AcmeError),
}

impl<T> Step<T> {
    /// The same step, or for a result the step `f` makes of it.
    pub fn then<U>(self, f: impl FnOnce(T) -> Step<U>) -> Step<U> {
        match self {
            Step::FetchDirectory => Step::FetchDirectory,
            Step::Call(call) => Step::Call(call),
            Step::Sleep(until) => Step::Sleep(until),
            Step::Publish(task) => Step::Publish(task),
            Step::Unpublish(task) => Step::Unpublish(task),
            Step::Done(result) => f(result),
            Step::Fail(err) => Step::Fail(err),
        }
    }
}

/// An HTTP exchange a flow asks for, before nonce and signature.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    /// Unauthenticated GET (directory, RFC 9773 renewalInfo).
    Get { url: String },
    /// HEAD (newNonce, §7.2).
    Head { url: String },
    /// A JWS-signed POST (§6.2); `payload` `None` is POST-as-GET (§6.3).
    Post {
        url: String,
        payload: Option<String>,
        signer: Signer,
        accept: Option<&'static str>,
        /// A caller-chosen nonce: used once, and `badNonce` is then not retried.
        nonce: Option<String>,
    },
}

impl Call {
    /// A POST signed with the account key and `kid`.
    pub fn post(url: &str, payload: Option<String>) -> Call {
        Call::Post {
            url: url.to_string(),
            payload,
            signer: Signer::AccountKid,
            accept: None,
            nonce: None,
        }
    }
}

/// A protocol operation's own logic. Every method may fail; the failure goes through
/// [`Flow::on_error`], which may recover (e.g. clean up published challenges first).
pub(crate) trait Flow: Send {
    /// What the operation yields when it succeeds.
    type Output;
    /// Whether the directory must be known before the first step.
    fn needs_directory(&self) -> bool {
        true
    }
    /// The next step. Called again (and must answer the same) until a handle_* moves the flow.
    fn step(&mut self, client: &mut Client, now: f64) -> Step<Self::Output>;
    /// A reply to the last `Call`, already checked: not oversize, not a problem, status < 400.
    fn on_reply(&mut self, client: &mut Client, resp: Response, now: f64) -> Result<(), AcmeError>;
    /// Any failure of the flow. `Ok` means the flow took it over (and will report it itself).
    fn on_error(&mut self, err: AcmeError) -> Result<(), AcmeError> {
        Err(err)
    }
    fn on_published(&mut self, result: Result<(), String>) -> Result<(), AcmeError> {
        let _ = result;
        Err(AcmeError::State(
            "handle_published called but no challenge is being published".into(),
        ))
    }
    fn on_unpublished(&mut self) -> Result<(), AcmeError> {
        Err(AcmeError::State(
            "handle_unpublished called but no challenge is being unpublished".into(),
        ))
    }
}
