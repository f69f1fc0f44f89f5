//! The driver-facing state machine: one [`Operation`] per protocol operation.
//!
//! An operation is a *flow* (what the operation is about: an order, an account, ...) plus the
//! machinery every flow shares: fetching the directory when the client has none (§7.1.1),
//! obtaining a nonce (§7.2), signing (§6.2) or handing the signature out as `Action::Sign`,
//! retrying after `badNonce` (§6.5), and classifying replies (§6.7). Flows only see replies that passed that classification.
use super::flow::{Call, Flow, Step};
use super::jws::post_request;
use super::nonce;
use super::problem::{check_response, check_size};
use super::{AcmeError, ChallengeTask, Client, Directory, Method, Request, Response};
use crate::crypto::jws::JwsInput;
use crate::crypto::PrivateKey;

/// A JWS signature the caller computes (`ClientConfig::deferred_signing`): `Send`, so it may
/// run on another thread. Its result goes back through `Operation::handle_signature`.
#[derive(Debug, Clone)]
pub struct SignJob {
    /// A handle on the signing key (shared, not copied; its Debug output is redacted).
    pub(crate) key: PrivateKey,
    /// RFC 7515 §5.1: the JWS signing input.
    pub(crate) input: Vec<u8>,
}

impl SignJob {
    /// The key the request must be signed with.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The bytes to sign (`BASE64URL(protected) '.' BASE64URL(payload)`).
    pub fn signing_input(&self) -> &[u8] {
        &self.input
    }

    /// Computes the signature as `handle_signature` expects it (`PrivateKey::sign_jws`).
    pub fn sign(&self) -> Result<Vec<u8>, crate::crypto::CryptoError> {
        self.key.sign_jws(&self.input)
    }
}

/// What the caller should do next.
#[derive(Debug)]
pub enum Action<T> {
    /// Perform the request, then `handle_response` or `handle_transport_error`.
    Http(Request),
    /// Sign (only with `ClientConfig::deferred_signing`), then `handle_signature`; the signed
    /// request follows as `Http`.
    Sign(SignJob),
    /// Sleep until this Unix time (absolute, the same clock as `now`), then ask again.
    Sleep { until: f64 },
    /// Make the challenge answerable, then `handle_published`.
    Publish(ChallengeTask),
    /// Remove a published challenge (best effort), then `handle_unpublished`.
    Unpublish(ChallengeTask),
    /// The operation succeeded; further `next_action` calls return a `State` error.
    Done(T),
    /// The operation failed; further `next_action` calls return the same error.
    Failed(AcmeError),
}

/// What the request handed to the caller is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// The directory (§7.1.1), before the flow or the nonce can go on.
    Directory,
    /// A fresh nonce from HEAD newNonce (§7.2).
    Nonce,
    /// The reply to the flow's call.
    Reply,
}

/// A signed POST waiting for its signature (`ClientConfig::deferred_signing`).
struct AwaitingSignature {
    job: SignJob,
    input: JwsInput,
    url: String,
    accept: Option<&'static str>,
}

/// What `prepare` produced: a request to send, or a signature to ask for first.
enum Prepared {
    Send(Awaiting, Request),
    Sign(AwaitingSignature),
}

/// A call in progress, kept across nonce fetches and `badNonce` retries.
struct Exchange {
    call: Call,
    bad_nonce_retries: u32,
    /// False when the caller chose the nonce: it then sees `badNonce` itself.
    retry_bad_nonce: bool,
}

enum End {
    Done,
    Failed(AcmeError),
}

/// One protocol operation in progress. See the module docs of [`crate::acme`] for the loop.
///
/// `next_action` is safe to call repeatedly: while a request is pending (no `handle_response`
/// or `handle_transport_error` yet) it returns the same request again; while a challenge is
/// being (un)published it returns the same `Publish`/`Unpublish`; while a signature is pending
/// (no `handle_signature` yet) the same `Sign`; `Sleep` is returned until
/// `now` reaches its time. After `Done`, it returns `Failed(State("operation already
/// finished"))`; after `Failed(e)`, `Failed(e)` again. `handle_*` calls after the end are
/// ignored; a `handle_*` call that does not match what the operation waits for fails it with a
/// `State` error (after cleaning up published challenges).
pub struct Operation<T> {
    flow: Box<dyn Flow<Output = T>>,
    exchange: Option<Exchange>,
    in_flight: Option<(Awaiting, Request)>,
    signature: Option<AwaitingSignature>,
    end: Option<End>,
}

/// Flows never need this many steps without any input; a bound against a looping flow.
const MAX_STEPS_WITHOUT_INPUT: usize = 64;

impl<T: 'static> Operation<T> {
    pub(crate) fn from_flow(flow: Box<dyn Flow<Output = T>>) -> Operation<T> {
        Operation {
            flow,
            exchange: None,
            in_flight: None,
            signature: None,
            end: None,
        }
    }

    /// The same operation yielding `f(result)`: for a caller that drives operations of several
    /// kinds through one type (the Lua glue).
    pub fn map<U: 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Operation<U> {
        Operation {
            flow: Box::new(Mapped {
                inner: self.flow,
                f: Some(Box::new(f)),
            }),
            exchange: self.exchange,
            in_flight: self.in_flight,
            signature: self.signature,
            end: self.end,
        }
    }

    /// Whether the operation has returned `Done` or `Failed`.
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }

    /// What the caller must do next. See the type docs for repeated calls.
    pub fn next_action(&mut self, client: &mut Client, now: f64) -> Action<T> {
        for _ in 0..MAX_STEPS_WITHOUT_INPUT {
            match &self.end {
                Some(End::Done) => {
                    return Action::Failed(AcmeError::State("operation already finished".into()))
                }
                Some(End::Failed(e)) => return Action::Failed(e.clone()),
                None => {}
            }
            if let Some((_, req)) = &self.in_flight {
                return Action::Http(req.clone());
            }
            if let Some(pending) = &self.signature {
                return Action::Sign(pending.job.clone());
            }
            if self.exchange.is_none() {
                if self.flow.needs_directory() && client.directory.is_none() {
                    return self.send(Awaiting::Directory, directory_request(client));
                }
                match self.flow.step(client, now) {
                    Step::FetchDirectory => {
                        return self.send(Awaiting::Directory, directory_request(client))
                    }
                    Step::Call(call) => {
                        let retry_bad_nonce = !matches!(&call, Call::Post { nonce: Some(_), .. });
                        self.exchange = Some(Exchange {
                            call,
                            bad_nonce_retries: 0,
                            retry_bad_nonce,
                        })
                    }
                    Step::Sleep(until) => return Action::Sleep { until },
                    Step::Publish(task) => return Action::Publish(task),
                    Step::Unpublish(task) => return Action::Unpublish(task),
                    Step::Done(result) => {
                        self.end = Some(End::Done);
                        return Action::Done(result);
                    }
                    // Through the flow, which may still have to clean up (or report it).
                    Step::Fail(err) => {
                        self.fail(err);
                        continue;
                    }
                }
            }
            match self.prepare(client) {
                Ok(Prepared::Send(awaiting, req)) => return self.send(awaiting, req),
                Ok(Prepared::Sign(pending)) => {
                    let job = pending.job.clone();
                    self.signature = Some(pending);
                    return Action::Sign(job);
                }
                Err(e) => self.fail(e),
            }
        }
        let err = AcmeError::State("the operation made no progress (internal error)".into());
        self.end = Some(End::Failed(err.clone()));
        Action::Failed(err)
    }

    fn send(&mut self, awaiting: Awaiting, req: Request) -> Action<T> {
        self.in_flight = Some((awaiting, req.clone()));
        Action::Http(req)
    }

    /// Turns the pending call into a request: the call itself (or, when signing is deferred, its
    /// signature first), or first the directory or a nonce it needs.
    fn prepare(&mut self, client: &mut Client) -> Result<Prepared, AcmeError> {
        let Some(ex) = self.exchange.as_mut() else {
            return Err(AcmeError::State("no call is pending".into()));
        };
        match &mut ex.call {
            Call::Get { url } => Ok(Prepared::Send(Awaiting::Reply, plain(Method::Get, url))),
            Call::Head { url } => Ok(Prepared::Send(Awaiting::Reply, plain(Method::Head, url))),
            Call::Post {
                url,
                payload,
                signer,
                accept,
                nonce,
            } => {
                signer.check(client)?;
                let nonce = match nonce.take().or_else(|| client.nonces.take()) {
                    Some(n) => n,
                    None => {
                        // §7.2: without a stored nonce, ask newNonce (which needs the directory).
                        return Ok(match &client.directory {
                            None => Prepared::Send(Awaiting::Directory, directory_request(client)),
                            Some(d) => {
                                Prepared::Send(Awaiting::Nonce, plain(Method::Head, &d.new_nonce))
                            }
                        });
                    }
                };
                if !client.config.deferred_signing {
                    let req = signer.post(client, url, &nonce, payload.as_deref(), *accept)?;
                    return Ok(Prepared::Send(Awaiting::Reply, req));
                }
                let (key, input) = signer.input(client, url, &nonce, payload.as_deref())?;
                Ok(Prepared::Sign(AwaitingSignature {
                    job: SignJob {
                        key: key.clone(),
                        input: input.signing_input(),
                    },
                    input,
                    url: url.clone(),
                    accept: *accept,
                }))
            }
        }
    }

    /// Sends a failure through the flow, which may take it over (cleanup) or end here.
    fn fail(&mut self, err: AcmeError) {
        self.exchange = None;
        self.in_flight = None;
        self.signature = None;
        if let Err(e) = self.flow.on_error(err) {
            self.end = Some(End::Failed(e));
        }
    }

    /// Feeds the response to the last `Action::Http`.
    pub fn handle_response(&mut self, client: &mut Client, resp: Response, now: f64) {
        if self.end.is_some() {
            return;
        }
        let Some((awaiting, _req)) = self.in_flight.take() else {
            self.fail(AcmeError::State(
                "handle_response called but no request is pending".into(),
            ));
            return;
        };
        // §6.5: every response may carry a fresh nonce; keep it for later requests.
        client.nonces.harvest(&resp);
        let max_body = client.config.max_body;
        match awaiting {
            Awaiting::Directory => {
                if let Err(e) = check_size(&resp, max_body)
                    .and_then(|()| Directory::from_response(&resp))
                    .map(|d| client.directory = Some(d))
                {
                    // the original's text, and the CA's problem document when it sent one
                    let e = match (e, check_response(&resp, max_body, now)) {
                        (AcmeError::Directory(m, None), Err(AcmeError::Problem(p))) => {
                            AcmeError::Directory(m, Some(Box::new(p)))
                        }
                        (e, _) => e,
                    };
                    self.fail(e);
                }
            }
            Awaiting::Nonce => {
                // §7.2: 200 to HEAD (204 to GET); the header is all that matters.
                let result = check_response(&resp, max_body, now).and_then(|()| {
                    if nonce::from_response(&resp).is_none() {
                        Err(AcmeError::Malformed(format!(
                            "newNonce reply (status {}) has no valid Replay-Nonce header",
                            resp.status
                        )))
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = result {
                    self.fail(e);
                }
            }
            Awaiting::Reply => {
                let Some(mut ex) = self.exchange.take() else {
                    self.fail(AcmeError::State("no call is pending".into()));
                    return;
                };
                match check_response(&resp, max_body, now) {
                    // §6.5: re-sign the same request with the nonce the error carried, unless
                    // the caller chose the nonce (it then sees the problem itself).
                    Err(AcmeError::Problem(p))
                        if p.is("badNonce")
                            && ex.retry_bad_nonce
                            && ex.bad_nonce_retries < client.config.bad_nonce_retries =>
                    {
                        ex.bad_nonce_retries += 1;
                        self.exchange = Some(ex);
                    }
                    Err(e) => self.fail(e),
                    Ok(()) => {
                        if let Err(e) = self.flow.on_reply(client, resp, now) {
                            self.fail(e);
                        }
                    }
                }
            }
        }
    }

    /// The signature asked for by the last `Action::Sign` (as `SignJob::sign` returns it), or
    /// why it could not be made; the signed request is then the next `Action::Http`. A failure
    /// ends the operation (after cleaning up published challenges) with `AcmeError::Sign`.
    pub fn handle_signature(&mut self, _client: &mut Client, result: Result<Vec<u8>, String>) {
        if self.end.is_some() {
            return;
        }
        let Some(pending) = self.signature.take() else {
            self.fail(AcmeError::State(
                "handle_signature called but no signature is pending".into(),
            ));
            return;
        };
        match result {
            Ok(sig) if !sig.is_empty() => {
                let body = pending.input.assemble(&sig);
                let req = post_request(&pending.url, body, pending.accept);
                self.in_flight = Some((Awaiting::Reply, req));
            }
            Ok(_) => self.fail(AcmeError::Sign("the signature is empty".into())),
            Err(e) => self.fail(AcmeError::Sign(e)),
        }
    }

    /// The transport failed for the last `Action::Http` (connect, TLS, timeout, ...).
    pub fn handle_transport_error(&mut self, _client: &mut Client, err: String) {
        if self.end.is_some() {
            return;
        }
        if self.in_flight.take().is_none() {
            self.fail(AcmeError::State(
                "handle_transport_error called but no request is pending".into(),
            ));
            return;
        }
        self.fail(AcmeError::Transport(err));
    }

    /// The result of publishing the challenge of the last `Action::Publish`.
    pub fn handle_published(&mut self, _client: &mut Client, result: Result<(), String>) {
        if self.end.is_some() {
            return;
        }
        if let Err(e) = self.flow.on_published(result) {
            self.fail(e);
        }
    }

    /// The challenge of the last `Action::Unpublish` was removed (or removal was attempted).
    pub fn handle_unpublished(&mut self, _client: &mut Client) {
        if self.end.is_some() {
            return;
        }
        if let Err(e) = self.flow.on_unpublished() {
            self.fail(e);
        }
    }
}

fn plain(method: Method, url: &str) -> Request {
    Request {
        method,
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn directory_request(client: &Client) -> Request {
    let mut req = plain(Method::Get, &client.config.directory_url);
    req.headers
        .push(("Accept".to_string(), "application/json".to_string()));
    req
}

/// A flow whose result is converted (`Operation::map`).
struct Mapped<T, U> {
    inner: Box<dyn Flow<Output = T>>,
    f: Option<Box<dyn FnOnce(T) -> U + Send>>,
}

impl<T, U> Flow for Mapped<T, U> {
    type Output = U;

    fn needs_directory(&self) -> bool {
        self.inner.needs_directory()
    }

    fn step(&mut self, client: &mut Client, now: f64) -> Step<U> {
        let f = &mut self.f;
        self.inner.step(client, now).then(|result| match f.take() {
            Some(f) => Step::Done(f(result)),
            None => Step::Fail(AcmeError::State("operation already finished".into())),
        })
    }

    fn on_reply(&mut self, client: &mut Client, resp: Response, now: f64) -> Result<(), AcmeError> {
        self.inner.on_reply(client, resp, now)
    }

    fn on_error(&mut self, err: AcmeError) -> Result<(), AcmeError> {
        self.inner.on_error(err)
    }

    fn on_published(&mut self, result: Result<(), String>) -> Result<(), AcmeError> {
        self.inner.on_published(result)
    }

    fn on_unpublished(&mut self) -> Result<(), AcmeError> {
        self.inner.on_unpublished()
    }
}
