//! The issuance flow (RFC 8555 §7.4): newOrder, authorizations and challenges (§7.5),
//! finalization, certificate download (§7.4.2). The objects it reads are in `types`.
use super::certificate::{chain_from_reply, root_is};
use super::{Call, Flow, Step};
use crate::acme::authorization::PendingAuthz;
use crate::acme::jws::{no_account_key, Signer, PEM_CHAIN};
use crate::acme::link::links;
use crate::acme::poll::{retry_after, Poll, FIRST_POLL, MAX_DELAY, MIN_DELAY};
use crate::acme::types::{
    Authorization, AuthorizationStatus, Challenge, ChallengeStatus, Order, OrderStatus,
};
use crate::acme::{
    AcmeError, ChallengeTask, ChallengeType, Client, Identifier, Operation, Response,
};
use crate::crypto::encoding::b64url;

/// newOrder input and what to do with the result (§7.4).
#[derive(Debug, Clone, Default)]
pub struct OrderRequest {
    pub identifiers: Vec<Identifier>,
    /// Preferred challenge types, most preferred first.
    pub challenge_types: Vec<ChallengeType>,
    /// The CSR (DER) sent at finalization.
    pub csr_der: Vec<u8>,
    /// Issuer CN of the top certificate of the wanted chain.
    pub preferred_chain: Option<String>,
    /// ACME profile name.
    pub profile: Option<String>,
    /// RFC 9773 §5: the ARI CertID of the certificate this order replaces.
    pub replaces: Option<String>,
    /// dns-persist-01 is chosen only for authorizations of these names (as the order names
    /// them, `*.example.com` for a wildcard): those whose record is in place or will be
    /// published; the others take the next type of `challenge_types`. `None`: every name.
    pub persist_names: Option<Vec<String>>,
}

/// The certificate an order ended with.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The PEM chain chosen: the default, or the preferred alternate.
    pub pem: String,
    /// The URL it was downloaded from.
    pub url: String,
    pub order_url: String,
}

impl Operation<IssuedCertificate> {
    /// The whole issuance (§7.4): newOrder, authorizations, finalize, download.
    pub fn order(req: OrderRequest) -> Operation<IssuedCertificate> {
        Operation::from_flow(Box::new(OrderFlow::new(req)))
    }

    /// Only the end of an issuance, for an order whose authorizations are done: POST the CSR
    /// (DER) to `finalize_url`, poll `order_url` until it is valid, download the default chain.
    pub fn finalize(
        order_url: String,
        finalize_url: String,
        csr_der: Vec<u8>,
    ) -> Operation<IssuedCertificate> {
        let mut flow = OrderFlow::new(OrderRequest {
            csr_der,
            ..OrderRequest::default()
        });
        flow.order_url = order_url;
        flow.finalize_url = finalize_url;
        flow.stage = Stage::AwaitingFinalize;
        Operation::from_flow(Box::new(flow))
    }
}

impl Order {
    /// The text of an `invalid` order: its error when it has one.
    pub fn invalid_reason(&self, url: &str) -> String {
        match &self.error {
            Some(p) => format!("order {url} is invalid: {p}"),
            None => format!("order {url} is invalid"),
        }
    }
}

impl OrderRequest {
    /// The newOrder payload (§7.4): identifiers, and the optional `profile`
    /// (draft-ietf-acme-profiles) and `replaces` (RFC 9773 §5).
    pub(crate) fn payload(&self) -> serde_json::Value {
        let mut p = serde_json::json!({
            "identifiers": self.identifiers.iter().map(|i| i.to_json()).collect::<Vec<_>>(),
        });
        if let Some(profile) = &self.profile {
            p["profile"] = profile.clone().into();
        }
        if let Some(replaces) = &self.replaces {
            p["replaces"] = replaces.clone().into();
        }
        p
    }

    /// The challenge types for the authorization of `name`, most preferred first.
    pub(crate) fn prefs_for(&self, name: &str) -> Vec<ChallengeType> {
        self.challenge_types
            .iter()
            .copied()
            .filter(|t| {
                *t != ChallengeType::DnsPersist01
                    || self
                        .persist_names
                        .as_ref()
                        .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            })
            .collect()
    }

    pub(crate) fn validate(&self) -> Result<(), AcmeError> {
        if self.identifiers.is_empty() {
            return Err(AcmeError::InvalidInput(
                "the order has no identifiers".into(),
            ));
        }
        if self.challenge_types.is_empty() {
            return Err(AcmeError::InvalidInput(
                "at least one challenge type is needed".into(),
            ));
        }
        if self.csr_der.is_empty() {
            return Err(AcmeError::InvalidInput("the order has no CSR".into()));
        }
        Ok(())
    }
}

/// Where the issuance stands; each stage is named after what it waits for.
#[derive(Debug)]
enum Stage {
    /// The newOrder reply (§7.4).
    AwaitingOrder,
    /// The authorization at this index of the order's list (§7.5).
    AwaitingAuthorization(usize),
    /// The caller publishing the challenge of `pending[i]`.
    AwaitingPublish(usize),
    /// The reply to starting the challenge of `pending[i]` (§7.5.1).
    AwaitingChallengeStart(usize),
    /// `pending[i]` becoming valid (polled).
    AwaitingAuthorizationValid(usize),
    /// The order becoming `ready` (polled).
    AwaitingOrderReady,
    /// The finalize reply (§7.4).
    AwaitingFinalize,
    /// The order becoming `valid` with a certificate URL (polled).
    AwaitingOrderValid,
    /// The default certificate chain (§7.4.2).
    AwaitingCertificate,
    /// The alternate chain at this index.
    AwaitingAlternate(usize),
    /// The caller removing `published[i]`; then the result is reported.
    AwaitingUnpublish(usize),
    /// The result was reported.
    Finished,
}

/// `Operation::order`: newOrder, authorizations, challenges, finalize, download (§7.4).
struct OrderFlow {
    req: OrderRequest,
    stage: Stage,
    order_url: String,
    finalize_url: String,
    cert_url: String,
    authz_urls: Vec<String>,
    pending: Vec<PendingAuthz>,
    /// Everything handed to the caller for publishing, removed again at the end.
    published: Vec<ChallengeTask>,
    thumbprint: Option<String>,
    /// The current polling phase; created at its first poll.
    poll: Option<Poll>,
    /// Delay before the first poll of the next phase.
    first_delay: f64,
    /// The default chain and its URL while alternates are tried.
    default_chain: Option<(String, String)>,
    alternates: Vec<String>,
    /// The result once known, reported after unpublishing.
    result: Option<Result<IssuedCertificate, AcmeError>>,
}

impl OrderFlow {
    fn new(req: OrderRequest) -> OrderFlow {
        OrderFlow {
            req,
            stage: Stage::AwaitingOrder,
            order_url: String::new(),
            finalize_url: String::new(),
            cert_url: String::new(),
            authz_urls: Vec::new(),
            pending: Vec::new(),
            published: Vec::new(),
            thumbprint: None,
            poll: None,
            first_delay: 0.0,
            default_chain: None,
            alternates: Vec::new(),
            result: None,
        }
    }

    /// Ends with `result`, after removing every published challenge.
    fn finish(&mut self, result: Result<IssuedCertificate, AcmeError>) {
        self.result = Some(result);
        self.stage = if self.published.is_empty() {
            Stage::Finished
        } else {
            Stage::AwaitingUnpublish(0)
        };
    }

    /// Starts a polling phase; its deadline is fixed at its first poll.
    fn enter_poll(&mut self, stage: Stage, first_delay: f64) {
        self.poll = None;
        self.first_delay = first_delay;
        self.stage = stage;
    }

    /// The poll of the current phase, created at `now` on first use.
    fn poll_step(&mut self, client: &Client, now: f64, url: &str) -> Step<IssuedCertificate> {
        let timeout = client.config.poll_timeout;
        let first = self.first_delay;
        let poll = self
            .poll
            .get_or_insert_with(|| Poll::start(now, timeout, first));
        if poll.due(now) {
            Step::Call(Call::post(url, None))
        } else {
            Step::Sleep(poll.next_at)
        }
    }

    /// After a reply that is not final yet: when to poll again, or a timeout naming `what`.
    fn repoll(&mut self, resp: &Response, now: f64, what: String) -> Result<(), AcmeError> {
        let Some(poll) = self.poll.as_mut() else {
            return Err(AcmeError::State("no polling in progress".into()));
        };
        poll.reschedule(resp, now).map_err(|_| {
            AcmeError::Timeout(format!(
                "{what} after polling for {:.0}s",
                now - poll.started
            ))
        })
    }

    /// After every authorization was fetched: publish, start, poll, in that order.
    fn after_authorizations(&mut self) {
        if let Some(i) = self.pending.iter().position(|p| p.task.is_some()) {
            self.stage = Stage::AwaitingPublish(i);
        } else {
            self.after_publishing();
        }
    }

    fn after_publishing(&mut self) {
        match self.pending.iter().position(|p| p.start) {
            Some(i) => self.stage = Stage::AwaitingChallengeStart(i),
            None => self.after_starting(false),
        }
    }

    fn after_starting(&mut self, started: bool) {
        if self.pending.is_empty() {
            self.enter_poll(Stage::AwaitingOrderReady, 0.0);
        } else {
            // Give the CA a moment to validate what was just started.
            let first = if started { FIRST_POLL } else { 0.0 };
            self.enter_poll(Stage::AwaitingAuthorizationValid(0), first);
        }
    }

    /// Moves on from an order object according to its status (§7.1.6).
    fn follow_order(&mut self, order: &Order, resp: &Response, now: f64) -> Result<(), AcmeError> {
        match order.status {
            OrderStatus::Ready => self.stage = Stage::AwaitingFinalize,
            OrderStatus::Valid => match &order.certificate {
                Some(url) => {
                    self.cert_url = url.clone();
                    self.stage = Stage::AwaitingCertificate;
                }
                None => {
                    return Err(AcmeError::Malformed(format!(
                        "order {} is valid but has no certificate URL",
                        self.order_url
                    )))
                }
            },
            OrderStatus::Invalid => {
                return Err(AcmeError::Invalid(
                    order.invalid_reason(&self.order_url),
                    order.error.clone().map(Box::new),
                ))
            }
            OrderStatus::Processing => {
                if !matches!(self.stage, Stage::AwaitingOrderValid) {
                    let first = retry_after(resp, now)
                        .map_or(FIRST_POLL, |at| (at - now).clamp(MIN_DELAY, MAX_DELAY));
                    self.enter_poll(Stage::AwaitingOrderValid, first);
                } else {
                    self.repoll(
                        resp,
                        now,
                        format!("order {} is still processing", self.order_url),
                    )?;
                }
            }
            OrderStatus::Pending => {
                if matches!(self.stage, Stage::AwaitingOrderReady) {
                    self.repoll(
                        resp,
                        now,
                        format!("order {} is still pending", self.order_url),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// A chain was chosen: the certificate is done (unpublishing follows).
    fn chain_chosen(&mut self, pem: String, url: String) {
        let cert = IssuedCertificate {
            pem,
            url,
            order_url: self.order_url.clone(),
        };
        self.finish(Ok(cert));
    }

    /// Tries the next alternate chain, or settles for the default.
    fn next_alternate(&mut self, i: usize) {
        if i < self.alternates.len() {
            self.stage = Stage::AwaitingAlternate(i);
        } else if let Some((pem, url)) = self.default_chain.take() {
            self.chain_chosen(pem, url);
        } else {
            self.finish(Err(AcmeError::State("no certificate chain".into())));
        }
    }

    /// The newOrder reply (§7.4): 201 Created with the order URL in Location.
    fn on_new_order(&mut self, resp: Response, now: f64) -> Result<(), AcmeError> {
        resp.expect_status(&[200, 201], "newOrder")?;
        self.order_url = resp
            .header("location")
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                AcmeError::Malformed(format!(
                    "newOrder reply (status {}) has no Location header",
                    resp.status
                ))
            })?
            .to_string();
        let order = Order::from_json(&resp.json("newOrder")?, &self.order_url)?;
        self.finalize_url = order.finalize.clone();
        self.authz_urls = order.authorizations.clone();
        if order.status == OrderStatus::Pending {
            if self.authz_urls.is_empty() {
                self.enter_poll(Stage::AwaitingOrderReady, 0.0);
            } else {
                self.stage = Stage::AwaitingAuthorization(0);
            }
            Ok(())
        } else {
            // A reused order may be further along (§7.1.6).
            self.follow_order(&order, &resp, now)
        }
    }

    /// An authorization (§7.5): what it needs, if anything.
    fn on_authorization(
        &mut self,
        client: &mut Client,
        i: usize,
        resp: Response,
    ) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "authorization")?;
        let url = self.authz_urls.get(i).cloned().unwrap_or_default();
        let authz = Authorization::from_json(&resp.json("authorization")?, &url)?;
        let thumbprint = match &self.thumbprint {
            Some(t) => t.clone(),
            None => {
                let key = client.account_key.as_ref().ok_or_else(no_account_key)?;
                self.thumbprint.insert(key.thumbprint()?).clone()
            }
        };
        let prefs = self.req.prefs_for(&authz.name());
        if let Some(work) = authz.work(&url, &prefs, &thumbprint)? {
            self.pending.push(work);
        }
        if i + 1 < self.authz_urls.len() {
            self.stage = Stage::AwaitingAuthorization(i + 1);
        } else {
            self.after_authorizations();
        }
        Ok(())
    }

    /// The reply to starting a challenge (§7.5.1).
    fn on_challenge_started(&mut self, i: usize, resp: Response) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "challenge start")?;
        let url = current_authz(&self.pending, i)?
            .task
            .as_ref()
            .map(|t| t.url.clone())
            .unwrap_or_default();
        let ch = Challenge::from_reply(&resp.json("challenge start")?, &url)?;
        if let Some(ch) = ch.filter(|c| c.status == ChallengeStatus::Invalid) {
            return Err(AcmeError::Invalid(
                format!("challenge invalid: {}", ch.describe()),
                ch.error.clone().map(Box::new),
            ));
        }
        match (i + 1..self.pending.len()).find(|&j| self.pending[j].start) {
            Some(j) => self.stage = Stage::AwaitingChallengeStart(j),
            None => self.after_starting(true),
        }
        Ok(())
    }

    /// A polled authorization: valid, still pending, or failed.
    fn on_authorization_polled(
        &mut self,
        i: usize,
        resp: Response,
        now: f64,
    ) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "authorization")?;
        let p = current_authz(&self.pending, i)?.clone();
        let authz = Authorization::from_json(&resp.json("authorization")?, &p.url)?;
        match authz.status {
            AuthorizationStatus::Valid => {
                if i + 1 < self.pending.len() {
                    // Same phase and deadline; the next one was started as long ago.
                    if let Some(poll) = self.poll.as_mut() {
                        poll.next_at = now;
                        poll.attempts = 0;
                    }
                    self.stage = Stage::AwaitingAuthorizationValid(i + 1);
                } else {
                    self.enter_poll(Stage::AwaitingOrderReady, 0.0);
                }
                Ok(())
            }
            // §7.5.1: the server answers `pending` while validating.
            AuthorizationStatus::Pending => self.repoll(
                &resp,
                now,
                format!("authorization {} for {} is still pending", p.url, p.name),
            ),
            AuthorizationStatus::Invalid => Err(AcmeError::Invalid(
                format!("challenge invalid: {}", authz.describe_challenges()),
                authz.first_error(),
            )),
            AuthorizationStatus::Deactivated
            | AuthorizationStatus::Expired
            | AuthorizationStatus::Revoked => Err(AcmeError::Invalid(
                format!(
                    "authorization {} for {} is {}",
                    p.url,
                    p.name,
                    authz.status.as_str()
                ),
                None,
            )),
        }
    }

    /// A polled order, before or after finalization.
    fn on_order_polled(&mut self, resp: Response, now: f64) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "order")?;
        let order = Order::from_json(&resp.json("order")?, &self.order_url)?;
        let after_finalize = matches!(self.stage, Stage::AwaitingOrderValid);
        if after_finalize && matches!(order.status, OrderStatus::Ready | OrderStatus::Pending) {
            // Not issued yet whatever it says; the deadline ends the wait.
            return self.repoll(
                &resp,
                now,
                format!(
                    "order {} is still {} after finalization",
                    self.order_url,
                    order.status.as_str()
                ),
            );
        }
        self.follow_order(&order, &resp, now)
    }

    /// The finalize reply (§7.4).
    fn on_finalized(&mut self, resp: Response, now: f64) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "finalize")?;
        let order = Order::from_json(&resp.json("finalize")?, &self.order_url)?;
        match order.status {
            // §7.4: processing until issued; some servers answer still `ready`.
            OrderStatus::Ready | OrderStatus::Pending => {
                let first = retry_after(&resp, now)
                    .map_or(FIRST_POLL, |at| (at - now).clamp(MIN_DELAY, MAX_DELAY));
                self.enter_poll(Stage::AwaitingOrderValid, first);
                Ok(())
            }
            OrderStatus::Processing | OrderStatus::Valid | OrderStatus::Invalid => {
                self.follow_order(&order, &resp, now)
            }
        }
    }

    /// The default chain (§7.4.2); alternates are tried when another root is preferred.
    fn on_certificate(&mut self, resp: Response) -> Result<(), AcmeError> {
        let pem = chain_from_reply(&resp)?;
        let url = self.cert_url.clone();
        match &self.req.preferred_chain {
            Some(preferred) if !root_is(&pem, preferred)? => {
                // §7.4.2: other chains are offered as Link rel="alternate".
                self.alternates = links(&resp, "alternate", &url);
                self.default_chain = Some((pem, url));
                self.next_alternate(0);
            }
            _ => self.chain_chosen(pem, url),
        }
        Ok(())
    }

    /// An alternate chain: taken when its root is the preferred one.
    fn on_alternate(&mut self, i: usize, resp: Response) -> Result<(), AcmeError> {
        let pem = chain_from_reply(&resp)?;
        let preferred = self.req.preferred_chain.clone().unwrap_or_default();
        if root_is(&pem, &preferred)? {
            let url = self.alternates.get(i).cloned().unwrap_or_default();
            self.chain_chosen(pem, url);
        } else {
            self.next_alternate(i + 1);
        }
        Ok(())
    }
}

fn current_authz(pending: &[PendingAuthz], i: usize) -> Result<&PendingAuthz, AcmeError> {
    pending
        .get(i)
        .ok_or_else(|| AcmeError::State("authorization index out of range".into()))
}

impl Flow for OrderFlow {
    type Output = IssuedCertificate;

    fn step(&mut self, client: &mut Client, now: f64) -> Step<IssuedCertificate> {
        let Some(dir) = &client.directory else {
            return Step::Fail(AcmeError::State("the directory is not known".into()));
        };
        match self.stage {
            Stage::AwaitingOrder => {
                if let Err(e) = self.req.validate() {
                    return Step::Fail(e);
                }
                if let Some(Err(e)) = self.req.profile.as_deref().map(|p| dir.check_profile(p)) {
                    return Step::Fail(AcmeError::InvalidInput(e));
                }
                Step::Call(Call::post(
                    &dir.new_order.clone(),
                    Some(self.req.payload().to_string()),
                ))
            }
            Stage::AwaitingAuthorization(i) => match self.authz_urls.get(i) {
                // §7.5: POST-as-GET the authorization.
                Some(url) => Step::Call(Call::post(url, None)),
                None => Step::Fail(AcmeError::State("authorization index out of range".into())),
            },
            Stage::AwaitingPublish(i) => match self.pending.get(i).and_then(|p| p.task.clone()) {
                Some(task) => Step::Publish(task),
                None => Step::Fail(AcmeError::State("no challenge to publish".into())),
            },
            Stage::AwaitingChallengeStart(i) => {
                match self.pending.get(i).and_then(|p| p.task.as_ref()) {
                    // §7.5.1: the client signals readiness by POSTing an empty object.
                    Some(task) => Step::Call(Call::post(&task.url, Some("{}".to_string()))),
                    None => Step::Fail(AcmeError::State("no challenge to start".into())),
                }
            }
            Stage::AwaitingAuthorizationValid(i) => match self.pending.get(i) {
                Some(p) => {
                    let url = p.url.clone();
                    self.poll_step(client, now, &url)
                }
                None => Step::Fail(AcmeError::State("authorization index out of range".into())),
            },
            Stage::AwaitingOrderReady | Stage::AwaitingOrderValid => {
                let url = self.order_url.clone();
                self.poll_step(client, now, &url)
            }
            Stage::AwaitingFinalize => {
                if self.req.csr_der.is_empty() {
                    return Step::Fail(AcmeError::InvalidInput("the order has no CSR".into()));
                }
                // §7.4: the CSR, DER in base64url.
                let payload = serde_json::json!({ "csr": b64url(&self.req.csr_der) });
                Step::Call(Call::post(&self.finalize_url, Some(payload.to_string())))
            }
            Stage::AwaitingCertificate => Step::Call(Call::Post {
                url: self.cert_url.clone(),
                payload: None,
                signer: Signer::AccountKid,
                accept: Some(PEM_CHAIN),
                nonce: None,
            }),
            Stage::AwaitingAlternate(i) => match self.alternates.get(i) {
                Some(url) => Step::Call(Call::Post {
                    url: url.clone(),
                    payload: None,
                    signer: Signer::AccountKid,
                    accept: Some(PEM_CHAIN),
                    nonce: None,
                }),
                None => Step::Fail(AcmeError::State("alternate index out of range".into())),
            },
            Stage::AwaitingUnpublish(i) => match self.published.get(i) {
                Some(task) => Step::Unpublish(task.clone()),
                None => Step::Fail(AcmeError::State("unpublish index out of range".into())),
            },
            Stage::Finished => match self.result.take() {
                Some(Ok(cert)) => Step::Done(cert),
                Some(Err(e)) => Step::Fail(e),
                None => Step::Fail(AcmeError::State("operation already finished".into())),
            },
        }
    }

    fn on_reply(&mut self, client: &mut Client, resp: Response, now: f64) -> Result<(), AcmeError> {
        match self.stage {
            Stage::AwaitingOrder => self.on_new_order(resp, now),
            Stage::AwaitingAuthorization(i) => self.on_authorization(client, i, resp),
            Stage::AwaitingChallengeStart(i) => self.on_challenge_started(i, resp),
            Stage::AwaitingAuthorizationValid(i) => self.on_authorization_polled(i, resp, now),
            Stage::AwaitingOrderReady | Stage::AwaitingOrderValid => {
                self.on_order_polled(resp, now)
            }
            Stage::AwaitingFinalize => self.on_finalized(resp, now),
            Stage::AwaitingCertificate => self.on_certificate(resp),
            Stage::AwaitingAlternate(i) => self.on_alternate(i, resp),
            Stage::AwaitingPublish(_) | Stage::AwaitingUnpublish(_) | Stage::Finished => Err(
                AcmeError::State("a reply arrived while the order waited for no request".into()),
            ),
        }
    }

    fn on_error(&mut self, err: AcmeError) -> Result<(), AcmeError> {
        match self.stage {
            // An alternate chain that cannot be had is simply not chosen.
            Stage::AwaitingAlternate(i) => {
                self.next_alternate(i + 1);
                Ok(())
            }
            // Already reporting a result: keep the first error, finish cleaning up.
            Stage::AwaitingUnpublish(_) => Ok(()),
            Stage::Finished => Err(err),
            _ if self.published.is_empty() => Err(err),
            _ => {
                self.finish(Err(err));
                Ok(())
            }
        }
    }

    fn on_published(&mut self, result: Result<(), String>) -> Result<(), AcmeError> {
        let Stage::AwaitingPublish(i) = self.stage else {
            return Err(AcmeError::State(
                "handle_published called but no challenge is being published".into(),
            ));
        };
        let task = current_authz(&self.pending, i)?
            .task
            .clone()
            .ok_or_else(|| AcmeError::State("no challenge to publish".into()))?;
        // A failed publish may have left something behind: it is unpublished too.
        self.published.push(task);
        result.map_err(AcmeError::Publish)?;
        match (i + 1..self.pending.len()).find(|&j| self.pending[j].task.is_some()) {
            Some(j) => self.stage = Stage::AwaitingPublish(j),
            None => self.after_publishing(),
        }
        Ok(())
    }

    fn on_unpublished(&mut self) -> Result<(), AcmeError> {
        let Stage::AwaitingUnpublish(i) = self.stage else {
            return Err(AcmeError::State(
                "handle_unpublished called but no challenge is being unpublished".into(),
            ));
        };
        self.stage = if i + 1 < self.published.len() {
            Stage::AwaitingUnpublish(i + 1)
        } else {
            Stage::Finished
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::Identifier;
    use serde_json::json;

    #[test]
    fn parse_order() {
        let o = Order::from_json(
            &json!({
                "status": "invalid",
                "authorizations": ["https://ca.test/a/1"],
                "finalize": "https://ca.test/f/1",
                "error": {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "nope"}
            }),
            "https://ca.test/o/1",
        )
        .unwrap();
        assert_eq!(o.authorizations, ["https://ca.test/a/1"]);
        assert_eq!(o.certificate, None);
        assert_eq!(
            o.invalid_reason("https://ca.test/o/1"),
            "order https://ca.test/o/1 is invalid: unauthorized: nope"
        );
        let e = Order::from_json(&json!({"status": "pending"}), "u").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed response: order u: missing field `authorizations`"
        );
        let e = Order::from_json(
            &json!({"status": "on hold", "authorizations": [], "finalize": "f"}),
            "u",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `on hold`"), "{e}");
        // Unknown members are ignored; an `error` that is no problem document reads as none.
        let o = Order::from_json(
            &json!({"status": "ready", "authorizations": [], "finalize": "f",
                    "notBefore": "2030-01-01T00:00:00Z", "error": "oops"}),
            "u",
        )
        .unwrap();
        assert_eq!((o.status, o.error), (OrderStatus::Ready, None));
    }

    #[test]
    fn persist_only_for_listed_names() {
        let mut r = OrderRequest {
            challenge_types: vec![ChallengeType::DnsPersist01, ChallengeType::Dns01],
            ..Default::default()
        };
        assert_eq!(r.prefs_for("*.a.test"), r.challenge_types);
        r.persist_names = Some(vec!["*.A.test".into()]);
        assert_eq!(r.prefs_for("*.a.test"), r.challenge_types);
        assert_eq!(r.prefs_for("a.test"), vec![ChallengeType::Dns01]);
    }

    #[test]
    fn payload_fields() {
        let mut r = OrderRequest {
            identifiers: vec![
                Identifier::dns("*.example.com"),
                Identifier::Ip([0u16, 0, 0, 0, 0, 0, 0, 1].into()),
            ],
            ..Default::default()
        };
        assert_eq!(
            r.payload(),
            json!({"identifiers": [{"type": "dns", "value": "*.example.com"},
                                   {"type": "ip", "value": "::1"}]})
        );
        r.profile = Some("shortlived".into());
        r.replaces = Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into());
        let p = r.payload();
        assert_eq!(p["profile"], "shortlived");
        assert_eq!(p["replaces"], "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        assert!(r.validate().is_err());
    }
}
