//! The driver-facing state machine: one [`Operation`] per protocol operation.
//!
//! An operation is a *flow* (what the operation is about: an order, an account, ...) plus the
//! machinery every flow shares: fetching the directory when the client has none (§7.1.1),
//! obtaining a nonce (§7.2), signing (§6.2) or handing the signature out as `Action::Sign`,
//! retrying after `badNonce` (§6.5), and classifying replies (§6.7). Flows only see replies that passed that classification.
use super::jws::{post_request, Signer};
use super::nonce;
use super::problem::{check_response, check_size};
use super::{
    AcmeError, Action, ChallengeTask, Client, Directory, Method, Outcome, Request, Response,
    SignJob,
};
use crate::crypto::jws::JwsInput;

/// What a flow wants next.
pub(crate) enum Step {
    /// Refetch the directory, whether or not the client has one (`Operation::directory`).
    FetchDirectory,
    Call(Call),
    Sleep(f64),
    Publish(ChallengeTask),
    Unpublish(ChallengeTask),
    Done(Outcome),
    Fail(AcmeError),
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
    /// Whether the directory must be known before the first step.
    fn needs_directory(&self) -> bool {
        true
    }
    /// The next step. Called again (and must answer the same) until a handle_* moves the flow.
    fn step(&mut self, client: &mut Client, now: f64) -> Step;
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
pub struct Operation {
    flow: Box<dyn Flow>,
    exchange: Option<Exchange>,
    in_flight: Option<(Awaiting, Request)>,
    signature: Option<AwaitingSignature>,
    end: Option<End>,
}

/// Flows never need this many steps without any input; a bound against a looping flow.
const MAX_STEPS_WITHOUT_INPUT: usize = 64;

impl Operation {
    pub(crate) fn from_flow(flow: Box<dyn Flow>) -> Operation {
        Operation {
            flow,
            exchange: None,
            in_flight: None,
            signature: None,
            end: None,
        }
    }

    /// Whether the operation has returned `Done` or `Failed`.
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }

    /// What the caller must do next. See the type docs for repeated calls.
    pub fn next_action(&mut self, client: &mut Client, now: f64) -> Action {
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
                    Step::Done(outcome) => {
                        self.end = Some(End::Done);
                        return Action::Done(outcome);
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

    fn send(&mut self, awaiting: Awaiting, req: Request) -> Action {
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
    pub fn handle_signature(&mut self, client: &mut Client, result: Result<Vec<u8>, String>) {
        let _ = client;
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
    pub fn handle_transport_error(&mut self, client: &mut Client, err: String) {
        let _ = client;
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
    pub fn handle_published(&mut self, client: &mut Client, result: Result<(), String>) {
        let _ = client;
        if self.end.is_some() {
            return;
        }
        if let Err(e) = self.flow.on_published(result) {
            self.fail(e);
        }
    }

    /// The challenge of the last `Action::Unpublish` was removed (or removal was attempted).
    pub fn handle_unpublished(&mut self, client: &mut Client) {
        let _ = client;
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

/// `Operation::post`: one signed POST whose reply is handed back as is.
pub(crate) struct PostFlow {
    pub url: String,
    pub payload: Option<String>,
    pub nonce: Option<String>,
    pub result: Option<Response>,
}

impl Flow for PostFlow {
    fn needs_directory(&self) -> bool {
        false
    }

    fn step(&mut self, _client: &mut Client, _now: f64) -> Step {
        if let Some(resp) = self.result.take() {
            return Step::Done(Outcome::Response(resp));
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
