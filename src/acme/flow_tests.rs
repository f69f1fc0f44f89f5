//! Flow tests against a scripted mock CA.
//!
//! The mock answers each request with the next canned response of its script, after checking
//! method and URL and, for POSTs, the JWS: protected header (`alg`, `url`, `nonce`, exactly one
//! of `kid`/`jwk`), the signature (verified with the account key or the embedded JWK's key), and
//! that the nonce is one the mock issued and nobody used before. Every response carries a fresh
//! `Replay-Nonce` unless the script says otherwise. The clock is simulated: `Sleep` advances it.
use super::*;
use crate::crypto::encoding::{b64url, b64url_decode};
use crate::crypto::key::verify_jws_signature;
use crate::crypto::{KeyType, PrivateKey};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};

const DIR: &str = "https://ca.test/dir";
const NONCE_URL: &str = "https://ca.test/nonce";
const ACCT_URL: &str = "https://ca.test/acct/1";
const NEW_ACCT: &str = "https://ca.test/new-acct";
const NEW_ORDER: &str = "https://ca.test/new-order";
const REVOKE: &str = "https://ca.test/revoke";
const KEY_CHANGE: &str = "https://ca.test/key-change";
const ARI: &str = "https://ca.test/ari";
const ORDER: &str = "https://ca.test/order/1";
const FINALIZE: &str = "https://ca.test/order/1/finalize";
const CERT: &str = "https://ca.test/cert/1";
const T0: f64 = 1_000_000.0;
const TOKEN1: &str = "token1_AAAAAAAAAAAAAAAAAAAAAAAAA";
const TOKEN2: &str = "token2_BBBBBBBBBBBBBBBBBBBBBBBBB";

// ---------------------------------------------------------------------------------------------
// Responses

fn resp(status: u16, ct: &str, body: &[u8]) -> Response {
    let mut headers = Vec::new();
    if !ct.is_empty() {
        headers.push(("Content-Type".to_string(), ct.to_string()));
    }
    Response {
        status,
        headers,
        body: body.to_vec(),
    }
}

fn json_resp(status: u16, v: Value) -> Response {
    resp(status, "application/json", v.to_string().as_bytes())
}

fn problem(status: u16, kind: &str, detail: &str) -> Response {
    resp(
        status,
        "application/problem+json",
        json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail})
            .to_string()
            .as_bytes(),
    )
}

fn with(mut r: Response, name: &str, value: &str) -> Response {
    r.headers.push((name.to_string(), value.to_string()));
    r
}

fn directory_json(eab_required: bool) -> Value {
    json!({
        "newNonce": NONCE_URL,
        "newAccount": NEW_ACCT,
        "newOrder": NEW_ORDER,
        "revokeCert": REVOKE,
        "keyChange": KEY_CHANGE,
        "renewalInfo": ARI,
        "meta": {"externalAccountRequired": eab_required, "website": "https://ca.test"}
    })
}

fn order_json(status: &str, authz: &[&str], cert: Option<&str>) -> Value {
    let mut o = json!({
        "status": status,
        "identifiers": [{"type": "dns", "value": "example.com"}],
        "authorizations": authz,
        "finalize": FINALIZE,
    });
    if let Some(c) = cert {
        o["certificate"] = c.into();
    }
    o
}

fn challenge_json(kind: &str, n: u32, status: &str, token: &str) -> Value {
    json!({"type": kind, "url": format!("https://ca.test/chall/{n}/{kind}"), "status": status, "token": token})
}

fn authz_json(name: &str, status: &str, challenges: Vec<Value>) -> Value {
    json!({
        "identifier": {"type": "dns", "value": name},
        "status": status,
        "challenges": challenges,
    })
}

/// A two-certificate PEM chain whose last certificate's issuer CN is `root_cn`.
fn chain(root_cn: &str) -> String {
    let (leaf, _) = crate::crypto::challenge::tls_alpn01_certificate("leaf.test", "x").unwrap();
    let (root, _) = crate::crypto::challenge::tls_alpn01_certificate(root_cn, "x").unwrap();
    format!("{leaf}{root}")
}

fn pem_resp(pem: &str) -> Response {
    resp(200, "application/pem-certificate-chain", pem.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The mock CA

/// A POST as the mock saw it.
struct Sent {
    header: Value,
    /// The decoded payload: JSON, or `Value::Null` for POST-as-GET.
    payload: Value,
    /// The payload text as signed.
    payload_text: String,
}

type Check = Box<dyn Fn(&Sent)>;

enum Ev {
    Http {
        method: Method,
        url: String,
        resp: Response,
        nonce: bool,
        check: Option<Check>,
    },
    TransportError {
        url: String,
        msg: String,
    },
    Publish(Result<(), String>),
    Unpublish,
}

fn get(url: &str, r: Response) -> Ev {
    Ev::Http {
        method: Method::Get,
        url: url.into(),
        resp: r,
        nonce: true,
        check: None,
    }
}

fn head_nonce() -> Ev {
    Ev::Http {
        method: Method::Head,
        url: NONCE_URL.into(),
        resp: resp(200, "", b""),
        nonce: true,
        check: None,
    }
}

fn post(url: &str, r: Response) -> Ev {
    Ev::Http {
        method: Method::Post,
        url: url.into(),
        resp: r,
        nonce: true,
        check: None,
    }
}

fn post_check(url: &str, r: Response, check: impl Fn(&Sent) + 'static) -> Ev {
    Ev::Http {
        method: Method::Post,
        url: url.into(),
        resp: r,
        nonce: true,
        check: Some(Box::new(check)),
    }
}

/// Drops the automatic Replay-Nonce from an `Ev::Http`.
fn no_nonce(ev: Ev) -> Ev {
    match ev {
        Ev::Http {
            method,
            url,
            resp,
            check,
            ..
        } => Ev::Http {
            method,
            url,
            resp,
            nonce: false,
            check,
        },
        other => other,
    }
}

fn post_as_get(url: &str, r: Response) -> Ev {
    post_check(url, r, |s| {
        assert_eq!(s.payload_text, "", "POST-as-GET must have an empty payload");
    })
}

struct Mock {
    now: f64,
    script: VecDeque<Ev>,
    counter: u32,
    issued: HashSet<String>,
    used: HashSet<String>,
    /// Keys other than the account key that may sign with `jwk`.
    other_keys: Vec<PrivateKey>,
    /// Accept any nonce (the caller chose it).
    foreign_nonces: bool,
    /// What happened: `GET url`, `POST url`, `sleep 2`, `publish token`, `unpublish token`.
    trace: Vec<String>,
    published: Vec<ChallengeTask>,
    /// Every request as it was sent.
    requests: Vec<Request>,
    /// How many `Action::Sign` were answered.
    signed: usize,
    /// `Some((n, err))`: the n-th signature (from 0) fails with `err`.
    sign_failure: Option<(usize, String)>,
}

impl Mock {
    fn new(script: Vec<Ev>) -> Mock {
        Mock {
            now: T0,
            script: script.into(),
            counter: 0,
            issued: HashSet::new(),
            used: HashSet::new(),
            other_keys: Vec::new(),
            foreign_nonces: false,
            trace: Vec::new(),
            published: Vec::new(),
            requests: Vec::new(),
            signed: 0,
            sign_failure: None,
        }
    }

    fn next_nonce(&mut self) -> String {
        self.counter += 1;
        let n = format!("nonce{}", self.counter);
        self.issued.insert(n.clone());
        n
    }

    /// Checks a POST's JWS and returns what it carried.
    fn verify_post(&mut self, client: &Client, req: &Request) -> Sent {
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "Content-Type" && v == "application/jose+json"),
            "POST without application/jose+json: {:?}",
            req.headers
        );
        let body: Value = serde_json::from_slice(&req.body).expect("JWS body is JSON");
        let obj = body.as_object().unwrap();
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort();
        assert_eq!(keys, ["payload", "protected", "signature"]);
        let protected = body["protected"].as_str().unwrap();
        let payload_b64 = body["payload"].as_str().unwrap();
        let header: Value =
            serde_json::from_slice(&b64url_decode(protected).unwrap()).expect("header JSON");
        assert_eq!(
            header["url"],
            req.url.as_str(),
            "JWS url must be the request URL"
        );
        let nonce = header["nonce"].as_str().expect("JWS nonce");
        if !self.foreign_nonces {
            assert!(
                self.issued.contains(nonce),
                "nonce {nonce} was never issued"
            );
        }
        assert!(self.used.insert(nonce.to_string()), "nonce {nonce} reused");
        let has_kid = header.get("kid").is_some();
        let has_jwk = header.get("jwk").is_some();
        assert!(has_kid != has_jwk, "exactly one of kid/jwk: {header}");
        let account_key = client.account_key.as_ref();
        let key: &PrivateKey = if has_kid {
            assert_eq!(
                header["kid"].as_str(),
                client.account_url.as_deref(),
                "kid must be the account URL"
            );
            account_key.expect("kid without account key")
        } else {
            account_key
                .into_iter()
                .chain(self.other_keys.iter())
                .find(|k| k.jwk().unwrap() == header["jwk"])
                .expect("jwk of an unknown key")
        };
        assert_eq!(header["alg"], key.jws_alg());
        let sig = b64url_decode(body["signature"].as_str().unwrap()).unwrap();
        assert!(
            verify_jws_signature(key, format!("{protected}.{payload_b64}").as_bytes(), &sig),
            "bad JWS signature"
        );
        let payload_text = String::from_utf8(b64url_decode(payload_b64).unwrap()).unwrap();
        let payload = if payload_text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&payload_text).expect("payload JSON")
        };
        Sent {
            header,
            payload,
            payload_text,
        }
    }

    /// Runs `op` to the end against the script; every script entry must be consumed.
    fn run<T: 'static + std::fmt::Debug>(
        &mut self,
        client: &mut Client,
        op: &mut Operation<T>,
    ) -> Result<T, AcmeError> {
        for _ in 0..1000 {
            match op.next_action(client, self.now) {
                Action::Http(req) => {
                    // next_action is idempotent while the request is pending.
                    match op.next_action(client, self.now) {
                        Action::Http(again) => assert_eq!(again, req),
                        other => panic!("second next_action gave {other:?}"),
                    }
                    self.trace
                        .push(format!("{} {}", req.method.as_str(), req.url));
                    self.requests.push(req.clone());
                    match self.script.pop_front() {
                        Some(Ev::Http {
                            method,
                            url,
                            resp,
                            nonce,
                            check,
                        }) => {
                            assert_eq!(
                                (req.method, req.url.as_str()),
                                (method, url.as_str()),
                                "unexpected request; trace {:?}",
                                self.trace
                            );
                            if method == Method::Post {
                                let sent = self.verify_post(client, &req);
                                if let Some(check) = check {
                                    check(&sent);
                                }
                            } else {
                                assert!(req.body.is_empty());
                            }
                            let mut resp = resp;
                            if nonce {
                                let n = self.next_nonce();
                                resp.headers.push(("Replay-Nonce".into(), n));
                            }
                            op.handle_response(client, resp, self.now);
                        }
                        Some(Ev::TransportError { url, msg }) => {
                            assert_eq!(req.url, url);
                            op.handle_transport_error(client, msg);
                        }
                        _ => panic!(
                            "unexpected request {} {}; trace {:?}",
                            req.method.as_str(),
                            req.url,
                            self.trace
                        ),
                    }
                }
                Action::Sign(job) => {
                    // next_action is idempotent while the signature is pending.
                    match op.next_action(client, self.now) {
                        Action::Sign(again) => {
                            assert_eq!(again.signing_input(), job.signing_input())
                        }
                        other => panic!("second next_action gave {other:?}"),
                    }
                    let n = self.signed;
                    self.signed += 1;
                    let result = match &self.sign_failure {
                        Some((i, e)) if *i == n => Err(e.clone()),
                        _ => Ok(job.sign().unwrap()),
                    };
                    op.handle_signature(client, result);
                }
                Action::Sleep { until } => {
                    assert!(until > self.now, "sleep into the past");
                    self.trace.push(format!("sleep {}", until - self.now));
                    self.now = until;
                }
                Action::Publish(task) => {
                    match op.next_action(client, self.now) {
                        Action::Publish(again) => assert_eq!(again, task),
                        other => panic!("second next_action gave {other:?}"),
                    }
                    self.trace.push(format!("publish {}", task.token));
                    let Some(Ev::Publish(r)) = self.script.pop_front() else {
                        panic!("unexpected publish {task:?}; trace {:?}", self.trace)
                    };
                    self.published.push(task);
                    op.handle_published(client, r);
                }
                Action::Unpublish(task) => {
                    self.trace.push(format!("unpublish {}", task.token));
                    let Some(Ev::Unpublish) = self.script.pop_front() else {
                        panic!("unexpected unpublish {task:?}; trace {:?}", self.trace)
                    };
                    op.handle_unpublished(client);
                }
                Action::Done(o) => {
                    assert!(
                        self.script.is_empty(),
                        "script left over; trace {:?}",
                        self.trace
                    );
                    assert!(op.is_finished());
                    // After Done: a State error, never a panic or a second Done.
                    match op.next_action(client, self.now) {
                        Action::Failed(AcmeError::State(_)) => {}
                        other => panic!("after Done: {other:?}"),
                    }
                    return Ok(o);
                }
                Action::Failed(e) => {
                    assert!(
                        self.script.is_empty(),
                        "script left over; trace {:?}",
                        self.trace
                    );
                    // After Failed: the same error again.
                    match op.next_action(client, self.now) {
                        Action::Failed(again) => assert_eq!(again, e),
                        other => panic!("after Failed: {other:?}"),
                    }
                    return Err(e);
                }
            }
        }
        panic!("operation did not end; trace {:?}", self.trace)
    }
}

fn account_key() -> PrivateKey {
    PrivateKey::generate(KeyType::EcP256).unwrap()
}

/// A client with an account key and URL and the directory already known.
fn client() -> Client {
    let mut c = Client::new(ClientConfig {
        directory_url: DIR.into(),
        ..Default::default()
    });
    c.account_key = Some(account_key());
    c.account_url = Some(ACCT_URL.into());
    c.directory = Some(Directory::from_json(directory_json(false)).unwrap());
    c
}

fn order_req(types: &[ChallengeType]) -> OrderRequest {
    OrderRequest {
        identifiers: vec![Identifier::parse("example.com").unwrap()],
        challenge_types: types.to_vec(),
        csr_der: vec![0x30, 0x03, 0x02, 0x01, 0x00],
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Orders

#[test]
fn full_order_flow_http01() {
    let mut c = client();
    c.directory = None;
    let thumb = c.account_key.as_ref().unwrap().thumbprint().unwrap();
    let pem = chain("root-a.test");
    let a1 = "https://ca.test/authz/1";
    let a2 = "https://ca.test/authz/2";
    let mut req = order_req(&[ChallengeType::Http01, ChallengeType::Dns01]);
    req.identifiers
        .push(Identifier::parse("www.example.com").unwrap());
    let csr_b64 = b64url(&req.csr_der);
    let mut m = Mock::new(vec![
        // No directory yet, and its reply has no nonce: HEAD newNonce follows.
        no_nonce(get(DIR, json_resp(200, directory_json(false)))),
        head_nonce(),
        post_check(
            NEW_ORDER,
            with(
                json_resp(201, order_json("pending", &[a1, a2], None)),
                "Location",
                ORDER,
            ),
            |s| {
                assert_eq!(
                    s.payload,
                    json!({"identifiers": [{"type": "dns", "value": "example.com"},
                                           {"type": "dns", "value": "www.example.com"}]})
                );
                assert_eq!(s.header["kid"], ACCT_URL);
            },
        ),
        post_as_get(
            a1,
            json_resp(
                200,
                authz_json(
                    "example.com",
                    "pending",
                    vec![
                        challenge_json("dns-01", 1, "pending", TOKEN1),
                        challenge_json("http-01", 1, "pending", TOKEN1),
                    ],
                ),
            ),
        ),
        post_as_get(
            a2,
            json_resp(
                200,
                authz_json(
                    "www.example.com",
                    "pending",
                    vec![challenge_json("http-01", 2, "pending", TOKEN2)],
                ),
            ),
        ),
        Ev::Publish(Ok(())),
        Ev::Publish(Ok(())),
        post_check(
            "https://ca.test/chall/1/http-01",
            json_resp(200, challenge_json("http-01", 1, "processing", TOKEN1)),
            |s| assert_eq!(s.payload_text, "{}"),
        ),
        post(
            "https://ca.test/chall/2/http-01",
            json_resp(200, challenge_json("http-01", 2, "processing", TOKEN2)),
        ),
        post_as_get(
            a1,
            with(
                json_resp(200, authz_json("example.com", "pending", vec![])),
                "Retry-After",
                "3",
            ),
        ),
        post_as_get(
            a1,
            json_resp(200, authz_json("example.com", "valid", vec![])),
        ),
        post_as_get(
            a2,
            json_resp(200, authz_json("www.example.com", "valid", vec![])),
        ),
        post_as_get(ORDER, json_resp(200, order_json("ready", &[a1, a2], None))),
        post_check(
            FINALIZE,
            with(
                json_resp(200, order_json("processing", &[a1, a2], None)),
                "Retry-After",
                "2",
            ),
            move |s| assert_eq!(s.payload, json!({ "csr": csr_b64 })),
        ),
        post_as_get(
            ORDER,
            json_resp(200, order_json("processing", &[a1, a2], None)),
        ),
        post_as_get(
            ORDER,
            json_resp(200, order_json("valid", &[a1, a2], Some(CERT))),
        ),
        post_as_get(CERT, pem_resp(&pem)),
        Ev::Unpublish,
        Ev::Unpublish,
    ]);
    let mut op = Operation::order(req);
    let out = m.run(&mut c, &mut op).unwrap();
    assert_eq!(out.pem, pem);
    assert_eq!(out.url, CERT);
    assert_eq!(out.order_url, ORDER);
    assert_eq!(
        m.trace,
        [
            "GET https://ca.test/dir",
            "HEAD https://ca.test/nonce",
            "POST https://ca.test/new-order",
            "POST https://ca.test/authz/1",
            "POST https://ca.test/authz/2",
            &format!("publish {TOKEN1}"),
            &format!("publish {TOKEN2}"),
            "POST https://ca.test/chall/1/http-01",
            "POST https://ca.test/chall/2/http-01",
            "sleep 0.25",
            "POST https://ca.test/authz/1",
            "sleep 3",
            "POST https://ca.test/authz/1",
            "POST https://ca.test/authz/2",
            "POST https://ca.test/order/1",
            "POST https://ca.test/order/1/finalize",
            "sleep 2",
            "POST https://ca.test/order/1",
            "sleep 1",
            "POST https://ca.test/order/1",
            "POST https://ca.test/cert/1",
            &format!("unpublish {TOKEN1}"),
            &format!("unpublish {TOKEN2}"),
        ]
    );
    let t = &m.published[0];
    assert_eq!(t.kind, ChallengeType::Http01);
    assert_eq!(t.identifier, Identifier::dns("example.com"));
    assert!(!t.wildcard);
    assert_eq!(t.token, TOKEN1);
    assert_eq!(t.key_authorization, format!("{TOKEN1}.{thumb}"));
    assert_eq!(t.url, "https://ca.test/chall/1/http-01");
    assert_eq!(t.authz_url, a1);
    assert_eq!(
        t.http_path(),
        format!("/.well-known/acme-challenge/{TOKEN1}")
    );
    assert_eq!(
        m.published[1].identifier,
        Identifier::dns("www.example.com")
    );
    // Only the last reply's nonce is left (every other one was used).
    assert_eq!(c.nonce_count(), 1);
}

#[test]
fn certificate_download_sends_accept_header() {
    let mut c = client();
    let mut op = Operation::order(order_req(&[ChallengeType::Http01]));
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("valid", &[], Some(CERT))),
                "Location",
                ORDER,
            ),
        ),
    ]);
    // Drive by hand up to the certificate request.
    for _ in 0..2 {
        let Action::Http(req) = op.next_action(&mut c, T0) else {
            panic!()
        };
        let Some(Ev::Http { resp, .. }) = m.script.pop_front() else {
            panic!()
        };
        let mut resp = resp;
        resp.headers.push(("Replay-Nonce".into(), m.next_nonce()));
        let _ = req;
        op.handle_response(&mut c, resp, T0);
    }
    let Action::Http(req) = op.next_action(&mut c, T0) else {
        panic!()
    };
    assert_eq!(req.url, CERT);
    assert!(req
        .headers
        .contains(&("Accept".into(), "application/pem-certificate-chain".into())));
}

#[test]
fn wildcard_takes_dns01_and_reused_valid_authz_is_skipped() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let a2 = "https://ca.test/authz/2";
    let mut wild = authz_json(
        "example.com",
        "pending",
        vec![challenge_json("dns-01", 1, "pending", TOKEN1)],
    );
    wild["wildcard"] = true.into();
    let mut req = order_req(&[ChallengeType::Http01, ChallengeType::Dns01]);
    req.identifiers = vec![
        Identifier::parse("*.example.com").unwrap(),
        Identifier::parse("example.com").unwrap(),
    ];
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("pending", &[a1, a2], None)),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(a1, json_resp(200, wild)),
        post_as_get(
            a2,
            json_resp(200, authz_json("example.com", "valid", vec![])),
        ),
        Ev::Publish(Ok(())),
        post("https://ca.test/chall/1/dns-01", json_resp(200, json!({}))),
        post_as_get(
            a1,
            json_resp(200, authz_json("example.com", "valid", vec![])),
        ),
        post_as_get(
            ORDER,
            json_resp(200, order_json("valid", &[a1, a2], Some(CERT))),
        ),
        post_as_get(CERT, pem_resp(&chain("root-a.test"))),
        Ev::Unpublish,
    ]);
    let mut op = Operation::order(req);
    m.run(&mut c, &mut op).unwrap();
    let t = &m.published[0];
    assert_eq!(t.kind, ChallengeType::Dns01);
    assert!(t.wildcard);
    assert_eq!(t.identifier.value(), "example.com");
    assert_eq!(t.dns_record_name(), "_acme-challenge.example.com");
    assert_eq!(
        t.dns_txt_value(),
        crate::crypto::challenge::dns01_txt_value(&t.key_authorization)
    );
}

#[test]
fn processing_challenge_is_published_but_not_started() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("pending", &[a1], None)),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(
            a1,
            json_resp(
                200,
                authz_json(
                    "example.com",
                    "pending",
                    vec![challenge_json("http-01", 1, "processing", TOKEN1)],
                ),
            ),
        ),
        Ev::Publish(Ok(())),
        // Not started, so the first poll is immediate.
        post_as_get(
            a1,
            json_resp(200, authz_json("example.com", "valid", vec![])),
        ),
        post_as_get(
            ORDER,
            json_resp(200, order_json("valid", &[a1], Some(CERT))),
        ),
        post_as_get(CERT, pem_resp(&chain("root-a.test"))),
        Ev::Unpublish,
    ]);
    m.run(
        &mut c,
        &mut Operation::order(order_req(&[ChallengeType::Http01])),
    )
    .unwrap();
    assert!(
        !m.trace.iter().any(|t| t.starts_with("sleep")),
        "{:?}",
        m.trace
    );
}

/// newOrder → one pending authz with http-01 → publish → start: the common prefix.
fn order_prefix(a1: &str) -> Vec<Ev> {
    vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("pending", &[a1], None)),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(
            a1,
            json_resp(
                200,
                authz_json(
                    "example.com",
                    "pending",
                    vec![challenge_json("http-01", 1, "pending", TOKEN1)],
                ),
            ),
        ),
        Ev::Publish(Ok(())),
        post(
            "https://ca.test/chall/1/http-01",
            json_resp(200, challenge_json("http-01", 1, "processing", TOKEN1)),
        ),
    ]
}

#[test]
fn invalid_authorization_fails_and_unpublishes() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    let mut ch = challenge_json("http-01", 1, "invalid", TOKEN1);
    ch["error"] = json!({"type": "urn:ietf:params:acme:error:connection",
                         "detail": "127.0.0.1: Connection refused"});
    script.push(post_as_get(
        a1,
        json_resp(200, authz_json("example.com", "invalid", vec![ch])),
    ));
    script.push(Ev::Unpublish);
    let mut m = Mock::new(script);
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert!(matches!(e, AcmeError::Invalid(..)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "challenge invalid: http-01: invalid: 127.0.0.1: Connection refused"
    );
    // the challenge's problem document travels with the error (the admin view shows it)
    let p = e.problem().expect("the challenge's problem document");
    assert_eq!(p.kind, "urn:ietf:params:acme:error:connection");
    assert_eq!(p.detail.as_deref(), Some("127.0.0.1: Connection refused"));
    assert_eq!(m.trace.last().unwrap(), &format!("unpublish {TOKEN1}"));
}

#[test]
fn authorization_poll_times_out() {
    let mut c = client();
    c.config.poll_timeout = 120.0;
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    let pending = || {
        post_as_get(
            a1,
            with(
                json_resp(200, authz_json("example.com", "pending", vec![])),
                "Retry-After",
                "3600",
            ),
        )
    };
    // Polls 1 s after the start, then +60 (Retry-After clamped), then at the deadline → timeout.
    script.extend([pending(), pending(), pending(), Ev::Unpublish]);
    let mut m = Mock::new(script);
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert!(matches!(e, AcmeError::Timeout(_)), "{e:?}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(
        msg.contains("authorization https://ca.test/authz/1 for example.com is still pending"),
        "{msg}"
    );
    assert!(msg.contains("120s"), "{msg}");
    let sleeps: Vec<&String> = m.trace.iter().filter(|t| t.starts_with("sleep")).collect();
    assert_eq!(sleeps, ["sleep 0.25", "sleep 60", "sleep 59.75"]);
}

#[test]
fn order_ready_poll_times_out_naming_status() {
    let mut c = client();
    c.config.poll_timeout = 3.0;
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    script.push(post_as_get(
        a1,
        json_resp(200, authz_json("example.com", "valid", vec![])),
    ));
    // Polls at +0, +1, +2 (backoff 1, 1) and +3 (backoff 2, cut to the deadline).
    for _ in 0..4 {
        script.push(post_as_get(
            ORDER,
            json_resp(200, order_json("pending", &[a1], None)),
        ));
    }
    script.push(Ev::Unpublish);
    let mut m = Mock::new(script);
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "timeout: order https://ca.test/order/1 is still pending after polling for 3s"
    );
}

#[test]
fn invalid_order_carries_its_error() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    script.push(post_as_get(
        a1,
        json_resp(200, authz_json("example.com", "valid", vec![])),
    ));
    let mut bad = order_json("invalid", &[a1], None);
    bad["error"] = json!({"type": "urn:ietf:params:acme:error:badCSR", "detail": "bad key"});
    script.push(post_as_get(ORDER, json_resp(200, bad)));
    script.push(Ev::Unpublish);
    let e = Mock::new(script)
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "order https://ca.test/order/1 is invalid: badCSR: bad key"
    );
}

#[test]
fn no_matching_challenge_names_identifier_and_offers() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("pending", &[a1], None)),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(
            a1,
            json_resp(
                200,
                authz_json(
                    "example.com",
                    "pending",
                    vec![
                        challenge_json("dns-01", 1, "pending", TOKEN1),
                        challenge_json("tls-alpn-01", 1, "pending", TOKEN1),
                    ],
                ),
            ),
        ),
    ]);
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert!(matches!(e, AcmeError::NoChallenge(_)));
    assert_eq!(
        e.to_string(),
        "no usable challenge: example.com: the CA offers [dns-01, tls-alpn-01], enabled are [http-01]"
    );
}

#[test]
fn publish_failure_unpublishes_everything_handed_out() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let a2 = "https://ca.test/authz/2";
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("pending", &[a1, a2], None)),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(
            a1,
            json_resp(
                200,
                authz_json(
                    "example.com",
                    "pending",
                    vec![challenge_json("http-01", 1, "pending", TOKEN1)],
                ),
            ),
        ),
        post_as_get(
            a2,
            json_resp(
                200,
                authz_json(
                    "www.example.com",
                    "pending",
                    vec![challenge_json("http-01", 2, "pending", TOKEN2)],
                ),
            ),
        ),
        Ev::Publish(Ok(())),
        Ev::Publish(Err("storage is down".into())),
        Ev::Unpublish,
        Ev::Unpublish,
    ]);
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert_eq!(e, AcmeError::Publish("storage is down".into()));
    assert_eq!(
        &m.trace[m.trace.len() - 2..],
        [format!("unpublish {TOKEN1}"), format!("unpublish {TOKEN2}")]
    );
}

#[test]
fn transport_error_after_publishing_unpublishes() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    script.push(Ev::TransportError {
        url: a1.into(),
        msg: "connection reset".into(),
    });
    script.push(Ev::Unpublish);
    let e = Mock::new(script)
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert_eq!(e, AcmeError::Transport("connection reset".into()));
    assert!(e.is_retryable());
}

#[test]
fn missing_location_on_new_order() {
    let mut c = client();
    let e = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            json_resp(201, order_json("pending", &["https://a"], None)),
        ),
    ])
    .run(
        &mut c,
        &mut Operation::order(order_req(&[ChallengeType::Http01])),
    )
    .unwrap_err();
    assert_eq!(
        e,
        AcmeError::Malformed("newOrder reply (status 201) has no Location header".into())
    );
}

#[test]
fn wrong_certificate_content_type() {
    let mut c = client();
    let e = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("valid", &[], Some(CERT))),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(CERT, resp(200, "text/html", b"<html>")),
    ])
    .run(
        &mut c,
        &mut Operation::order(order_req(&[ChallengeType::Http01])),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed response: wrong content type, got text/html"
    );
}

#[test]
fn preferred_chain_picks_matching_alternate() {
    let mut c = client();
    let default = chain("root-a.test");
    let alt1 = chain("root-b.test");
    let alt2 = chain("isrg-root-x1.test");
    let mut req = order_req(&[ChallengeType::Http01]);
    req.preferred_chain = Some("isrg-root-x1.test".into());
    let cert_resp = with(
        with(
            pem_resp(&default),
            "Link",
            r#"<https://ca.test/cert/1/1>;rel="alternate", <https://ca.test/dir>;rel="index""#,
        ),
        "Link",
        r#"</cert/1/2>; rel="alternate""#,
    );
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("valid", &[], Some(CERT))),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(CERT, cert_resp),
        post_as_get("https://ca.test/cert/1/1", pem_resp(&alt1)),
        post_as_get("https://ca.test/cert/1/2", pem_resp(&alt2)),
    ]);
    let got = m.run(&mut c, &mut Operation::order(req)).unwrap();
    assert_eq!(got.pem, alt2);
    assert_eq!(got.url, "https://ca.test/cert/1/2");
}

#[test]
fn preferred_chain_keeps_default_when_nothing_matches() {
    let mut c = client();
    let default = chain("root-a.test");
    let mut req = order_req(&[ChallengeType::Http01]);
    req.preferred_chain = Some("nope-root.test".into());
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("valid", &[], Some(CERT))),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(
            CERT,
            with(
                pem_resp(&default),
                "Link",
                "<https://ca.test/cert/1/1>;rel=alternate",
            ),
        ),
        // A broken alternate is skipped, not fatal.
        post_as_get(
            "https://ca.test/cert/1/1",
            problem(404, "malformed", "gone"),
        ),
    ]);
    let got = m.run(&mut c, &mut Operation::order(req)).unwrap();
    assert_eq!(got.pem, default);
    assert_eq!(got.url, CERT);
}

#[test]
fn preferred_chain_matching_default_downloads_nothing_else() {
    let mut c = client();
    let default = chain("root-a.test");
    let mut req = order_req(&[ChallengeType::Http01]);
    req.preferred_chain = Some("root-a.test".into());
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                json_resp(201, order_json("valid", &[], Some(CERT))),
                "Location",
                ORDER,
            ),
        ),
        post_as_get(
            CERT,
            with(
                pem_resp(&default),
                "Link",
                "<https://ca.test/cert/1/1>;rel=alternate",
            ),
        ),
    ]);
    assert!(m.run(&mut c, &mut Operation::order(req)).is_ok());
}

#[test]
fn order_input_is_validated() {
    let mut c = client();
    let e = Mock::new(vec![])
        .run(&mut c, &mut Operation::order(OrderRequest::default()))
        .unwrap_err();
    assert!(matches!(e, AcmeError::InvalidInput(_)));
}

// ---------------------------------------------------------------------------------------------
// Nonces

#[test]
fn bad_nonce_is_retried_with_a_fresh_nonce() {
    let mut c = client();
    let mut m = Mock::new(vec![
        head_nonce(),
        post(
            ACCT_URL,
            problem(400, "badNonce", "JWS has an invalid anti-replay nonce"),
        ),
        post(ACCT_URL, problem(400, "badNonce", "again")),
        post_check(
            ACCT_URL,
            json_resp(200, json!({"status": "deactivated"})),
            |s| {
                assert_eq!(s.payload, json!({"status": "deactivated"}));
            },
        ),
    ]);
    m.run(&mut c, &mut Operation::deactivate_account()).unwrap();
}

#[test]
fn bad_nonce_six_times_fails_with_the_problem() {
    let mut c = client();
    let mut script = vec![head_nonce()];
    for _ in 0..6 {
        script.push(post(ACCT_URL, problem(400, "badNonce", "stale")));
    }
    let e = Mock::new(script)
        .run(&mut c, &mut Operation::deactivate_account())
        .unwrap_err();
    match &e {
        AcmeError::Problem(p) => {
            assert!(p.is("badNonce"));
            assert_eq!(p.detail.as_deref(), Some("stale"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_retryable());
}

#[test]
fn bad_nonce_without_replay_nonce_falls_back_to_new_nonce() {
    let mut c = client();
    let mut m = Mock::new(vec![
        head_nonce(),
        no_nonce(post(ACCT_URL, problem(400, "badNonce", "stale"))),
        head_nonce(),
        post(ACCT_URL, json_resp(200, json!({}))),
    ]);
    m.run(&mut c, &mut Operation::deactivate_account()).unwrap();
}

#[test]
fn missing_replay_nonce_falls_back_to_head_new_nonce() {
    let mut c = client();
    // The first operation's reply carries no nonce, so the second one must HEAD newNonce.
    let mut m = Mock::new(vec![
        head_nonce(),
        no_nonce(post(ACCT_URL, json_resp(200, json!({})))),
    ]);
    m.run(&mut c, &mut Operation::deactivate_account()).unwrap();
    assert_eq!(c.nonce_count(), 0);
    let mut m = Mock::new(vec![
        head_nonce(),
        post(ACCT_URL, json_resp(200, json!({}))),
    ]);
    m.run(&mut c, &mut Operation::deactivate_account()).unwrap();
    assert_eq!(c.nonce_count(), 1);
}

#[test]
fn new_nonce_without_header_is_an_error() {
    let mut c = client();
    let e = Mock::new(vec![no_nonce(head_nonce())])
        .run(&mut c, &mut Operation::deactivate_account())
        .unwrap_err();
    assert_eq!(
        e,
        AcmeError::Malformed("newNonce reply (status 200) has no valid Replay-Nonce header".into())
    );
}

#[test]
fn new_nonce_operation_hands_the_nonce_out() {
    let mut c = client();
    let mut m = Mock::new(vec![head_nonce()]);
    let n = m.run(&mut c, &mut Operation::new_nonce()).unwrap();
    assert_eq!(n, "nonce1");
    assert_eq!(c.nonce_count(), 0, "the handed-out nonce is not pooled");
}

#[test]
fn explicit_nonce_is_used_and_bad_nonce_not_retried() {
    let mut c = client();
    let mut m = Mock::new(vec![post_check(
        "https://ca.test/x",
        problem(400, "badNonce", "nope"),
        |s| {
            assert_eq!(s.header["nonce"], "myNonce");
            assert_eq!(s.payload, json!({"a": 1}));
        },
    )]);
    m.foreign_nonces = true;
    let e = m
        .run(
            &mut c,
            &mut Operation::post(
                "https://ca.test/x".into(),
                Some(r#"{"a":1}"#.into()),
                Some("myNonce".into()),
            ),
        )
        .unwrap_err();
    assert!(matches!(e, AcmeError::Problem(ref p) if p.is("badNonce")));
}

#[test]
fn post_returns_the_response() {
    let mut c = client();
    c.add_nonce("pooled".into());
    let mut m = Mock::new(vec![post_as_get(
        "https://ca.test/x",
        with(json_resp(200, json!({"ok": true})), "Location", "https://l"),
    )]);
    m.foreign_nonces = true;
    let r = m
        .run(
            &mut c,
            &mut Operation::post("https://ca.test/x".into(), None, None),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("location"), Some("https://l"));
    assert_eq!(r.body, br#"{"ok":true}"#);
}

#[test]
fn interleaved_operations_share_the_pool() {
    let mut c = client();
    let mut a = Operation::deactivate_account();
    let mut b = Operation::new_nonce();
    let Action::Http(ra) = a.next_action(&mut c, T0) else {
        panic!()
    };
    assert_eq!(ra.method, Method::Head);
    let Action::Http(rb) = b.next_action(&mut c, T0) else {
        panic!()
    };
    assert_eq!(rb.method, Method::Head);
    let nonce_resp = |n: &str| with(resp(200, "", b""), "Replay-Nonce", n);
    b.handle_response(&mut c, nonce_resp("forB"), T0);
    a.handle_response(&mut c, nonce_resp("forA"), T0);
    // B hands its nonce out; A signs with what is left in the pool.
    assert!(matches!(b.next_action(&mut c, T0), Action::Done(n) if n == "forB"));
    let Action::Http(post) = a.next_action(&mut c, T0) else {
        panic!()
    };
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    let header: Value =
        serde_json::from_slice(&b64url_decode(body["protected"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(header["nonce"], "forA");
}

// ---------------------------------------------------------------------------------------------
// Misuse and terminal states

#[test]
fn missing_account_key_and_url_are_state_errors() {
    let mut c = client();
    c.account_url = None;
    let e = Mock::new(vec![])
        .run(&mut c, &mut Operation::deactivate_account())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "account_kid is not defined, provide via config or create account first"
    );
    let e = Mock::new(vec![])
        .run(
            &mut c,
            &mut Operation::post("https://ca.test/x".into(), None, None),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "account_kid is not defined, provide via config or create account first"
    );
    c.account_key = None;
    let e = Mock::new(vec![])
        .run(&mut c, &mut Operation::new_account(NewAccount::default()))
        .unwrap_err();
    assert_eq!(e, AcmeError::State("account key is not set".into()));
}

#[test]
fn unexpected_handle_calls_fail_cleanly() {
    let mut c = client();
    let mut op = Operation::deactivate_account();
    op.handle_published(&mut c, Ok(()));
    match op.next_action(&mut c, T0) {
        Action::Failed(AcmeError::State(m)) => assert!(m.contains("handle_published"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Ignored after the end, and the same error is repeated.
    op.handle_response(&mut c, Response::default(), T0);
    op.handle_unpublished(&mut c);
    assert!(matches!(
        op.next_action(&mut c, T0),
        Action::Failed(AcmeError::State(_))
    ));

    let mut op = Operation::deactivate_account();
    op.handle_response(&mut c, Response::default(), T0);
    match op.next_action(&mut c, T0) {
        Action::Failed(AcmeError::State(m)) => assert!(m.contains("no request is pending"), "{m}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Directory

#[test]
fn directory_operation_refetches_and_maps_errors() {
    let mut c = client();
    let mut m = Mock::new(vec![get(DIR, json_resp(200, directory_json(true)))]);
    m.run(&mut c, &mut Operation::directory()).unwrap();
    assert!(c.directory.as_ref().unwrap().external_account_required);
    assert_eq!(c.nonce_count(), 1, "the directory reply's nonce is pooled");

    let e = Mock::new(vec![get(DIR, resp(503, "text/html", b"<h1>down</h1>"))])
        .run(&mut c, &mut Operation::directory())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "acme directory listing failed: status code 503, content-type text/html"
    );
    let e = Mock::new(vec![get(DIR, resp(200, "application/json", b"[]"))])
        .run(&mut c, &mut Operation::directory())
        .unwrap_err();
    assert_eq!(e.to_string(), "acme directory listing response malformed");
    // a problem document keeps the original's text and travels with it (backoff by cause)
    let e = Mock::new(vec![get(
        DIR,
        with(problem(429, "rateLimited", "slow down"), "Retry-After", "7"),
    )])
    .run(&mut c, &mut Operation::directory())
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "acme directory listing failed: status code 429, content-type application/problem+json"
    );
    let p = e.problem().expect("the directory's problem document");
    assert_eq!(p.acme_type(), Some("rateLimited"));
    assert_eq!((p.status, p.detail.as_deref()), (429, Some("slow down")));
    assert!(p.retry_after.is_some(), "{p:?}");
    let e = Mock::new(vec![TransportErrorAt(DIR).ev()])
        .run(&mut c, &mut Operation::directory())
        .unwrap_err();
    assert_eq!(e, AcmeError::Transport("refused".into()));
}

struct TransportErrorAt(&'static str);
impl TransportErrorAt {
    fn ev(&self) -> Ev {
        Ev::TransportError {
            url: self.0.into(),
            msg: "refused".into(),
        }
    }
}

#[test]
fn oversize_body_is_refused() {
    let mut c = client();
    c.config.max_body = 64;
    let e = Mock::new(vec![
        head_nonce(),
        post(ACCT_URL, json_resp(200, json!({"pad": "x".repeat(100)}))),
    ])
    .run(&mut c, &mut Operation::deactivate_account())
    .unwrap_err();
    let len = json!({"pad": "x".repeat(100)}).to_string().len();
    assert_eq!(
        e,
        AcmeError::Malformed(format!(
            "response body of {len} bytes (status 200) exceeds the limit of 64 bytes"
        ))
    );
    c.directory = None;
    let e = Mock::new(vec![get(
        DIR,
        json_resp(200, json!({"pad": "x".repeat(100)})),
    )])
    .run(&mut c, &mut Operation::directory())
    .unwrap_err();
    assert!(
        e.to_string().contains("exceeds the limit of 64 bytes"),
        "{e}"
    );
}

#[test]
fn html_error_reply_is_malformed_with_a_sanitized_quote() {
    let mut c = client();
    let html = format!(
        "<html>\r\n  <body>\x1b[31mBad\tGateway</body>{}</html>",
        "x".repeat(300)
    );
    let e = Mock::new(vec![
        head_nonce(),
        post(
            ACCT_URL,
            resp(502, "text/html; charset=utf-8", html.as_bytes()),
        ),
    ])
    .run(&mut c, &mut Operation::deactivate_account())
    .unwrap_err();
    let AcmeError::Malformed(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.starts_with(
            "unexpected status 502 (content-type text/html; charset=utf-8): \
             <html> <body>?[31mBad Gateway</body>xxx"
        ),
        "{m}"
    );
    assert!(m.ends_with("..."), "{m}");
    assert!(m.len() < 300, "{m}");
    assert!(!m.contains('\x1b') && !m.contains('\n'));
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[test]
fn new_account_sends_jwk_and_stores_the_url() {
    let mut c = client();
    c.account_url = None;
    let req = NewAccount {
        contact: vec!["mailto:ops@example.com".into()],
        terms_of_service_agreed: true,
        only_return_existing: false,
        eab: None,
    };
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(
            NEW_ACCT,
            with(
                json_resp(
                    201,
                    json!({"status": "valid", "contact": ["mailto:ops@example.com"]}),
                ),
                "Location",
                ACCT_URL,
            ),
            |s| {
                assert!(s.header.get("kid").is_none());
                assert!(s.header["jwk"].is_object());
                assert_eq!(
                    s.payload,
                    json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.com"]})
                );
            },
        ),
    ]);
    let a = m.run(&mut c, &mut Operation::new_account(req)).unwrap();
    assert_eq!(a.url, ACCT_URL);
    assert_eq!(a.status, "valid");
    assert!(a.created);
    assert_eq!(a.body["contact"][0], "mailto:ops@example.com");
    assert_eq!(c.account_url.as_deref(), Some(ACCT_URL));
}

#[test]
fn existing_account_and_missing_location() {
    let mut c = client();
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(
            NEW_ACCT,
            with(
                json_resp(200, json!({"status": "valid"})),
                "Location",
                ACCT_URL,
            ),
            |s| assert_eq!(s.payload["onlyReturnExisting"], true),
        ),
    ]);
    let req = NewAccount {
        only_return_existing: true,
        ..Default::default()
    };
    let a = m.run(&mut c, &mut Operation::new_account(req)).unwrap();
    assert!(!a.created);
    // The pooled nonce came from the first mock.
    let mut m = Mock::new(vec![post(
        NEW_ACCT,
        json_resp(201, json!({"status": "valid"})),
    )]);
    m.foreign_nonces = true;
    let e = m
        .run(&mut c, &mut Operation::new_account(NewAccount::default()))
        .unwrap_err();
    assert_eq!(
        e,
        AcmeError::Malformed("newAccount reply (status 201) has no Location header".into())
    );
}

#[test]
fn eab_required_but_missing() {
    let mut c = client();
    c.directory = None;
    let e = Mock::new(vec![get(DIR, json_resp(200, directory_json(true)))])
        .run(&mut c, &mut Operation::new_account(NewAccount::default()))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("CA requires external account binding"),
        "{e}"
    );
}

#[test]
fn eab_binding_is_sent() {
    let mut c = client();
    c.directory = Some(Directory::from_json(directory_json(true)).unwrap());
    let jwk = c.account_key.as_ref().unwrap().jwk().unwrap();
    let hmac_key = b"0123456789abcdef0123456789abcdef".to_vec();
    let req = NewAccount {
        terms_of_service_agreed: true,
        eab: Some(Eab {
            kid: "kid-1".into(),
            hmac_key: hmac_key.clone(),
        }),
        ..Default::default()
    };
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(
            NEW_ACCT,
            with(
                json_resp(201, json!({"status": "valid"})),
                "Location",
                ACCT_URL,
            ),
            move |s| {
                let eab = &s.payload["externalAccountBinding"];
                let h: Value = serde_json::from_slice(
                    &b64url_decode(eab["protected"].as_str().unwrap()).unwrap(),
                )
                .unwrap();
                assert_eq!(h, json!({"alg": "HS256", "kid": "kid-1", "url": NEW_ACCT}));
                let p: Value = serde_json::from_slice(
                    &b64url_decode(eab["payload"].as_str().unwrap()).unwrap(),
                )
                .unwrap();
                assert_eq!(p, jwk);
                let mac = crate::crypto::digest::hmac(
                    "sha256",
                    &hmac_key,
                    format!(
                        "{}.{}",
                        eab["protected"].as_str().unwrap(),
                        eab["payload"].as_str().unwrap()
                    )
                    .as_bytes(),
                )
                .unwrap();
                assert_eq!(eab["signature"], b64url(&mac));
            },
        ),
    ]);
    m.run(&mut c, &mut Operation::new_account(req)).unwrap();
}

#[test]
fn key_change_payload_structure() {
    let mut c = client();
    let old_jwk = c.account_key.as_ref().unwrap().jwk().unwrap();
    let new_key = account_key();
    let new_pem = new_key.to_pem().unwrap();
    let new_jwk = new_key.jwk().unwrap();
    let verify_key = PrivateKey::from_pem(new_pem.as_bytes()).unwrap();
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(KEY_CHANGE, json_resp(200, json!({})), move |s| {
            // Outer: old key, kid (checked by the mock). Inner: a JWS by the new key.
            assert_eq!(s.header["kid"], ACCT_URL);
            let inner = &s.payload;
            let h: Value = serde_json::from_slice(
                &b64url_decode(inner["protected"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
            assert_eq!(h["url"], KEY_CHANGE);
            assert_eq!(h["jwk"], new_jwk);
            assert!(h.get("nonce").is_none(), "inner JWS has no nonce");
            assert!(h.get("kid").is_none());
            let p: Value =
                serde_json::from_slice(&b64url_decode(inner["payload"].as_str().unwrap()).unwrap())
                    .unwrap();
            assert_eq!(p, json!({"account": ACCT_URL, "oldKey": old_jwk}));
            let sig = b64url_decode(inner["signature"].as_str().unwrap()).unwrap();
            let input = format!(
                "{}.{}",
                inner["protected"].as_str().unwrap(),
                inner["payload"].as_str().unwrap()
            );
            assert!(verify_jws_signature(&verify_key, input.as_bytes(), &sig));
        }),
    ]);
    let check_key = PrivateKey::from_pem(new_pem.as_bytes()).unwrap();
    m.run(&mut c, &mut Operation::key_change(new_key)).unwrap();
    assert!(c.account_key.as_ref().unwrap().public_eq(&check_key));
}

#[test]
fn failed_key_change_keeps_the_old_key() {
    let mut c = client();
    let old = c.account_key.as_ref().unwrap().to_pem().unwrap();
    let e = Mock::new(vec![
        head_nonce(),
        post(KEY_CHANGE, problem(409, "malformed", "key in use")),
    ])
    .run(&mut c, &mut Operation::key_change(account_key()))
    .unwrap_err();
    assert!(matches!(e, AcmeError::Problem(ref p) if p.status == 409));
    assert_eq!(c.account_key.as_ref().unwrap().to_pem().unwrap(), old);
}

// ---------------------------------------------------------------------------------------------
// Revocation, ARI

#[test]
fn revoke_with_account_key() {
    let mut c = client();
    let der = vec![0x30, 0x82, 0x01, 0x00, 0xff];
    let want = json!({"certificate": b64url(&der), "reason": 4});
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(REVOKE, resp(200, "", b""), move |s| {
            assert_eq!(s.header["kid"], ACCT_URL);
            assert_eq!(s.payload, want);
        }),
    ]);
    m.run(&mut c, &mut Operation::revoke(der, Some(4), None))
        .unwrap();
}

#[test]
fn revoke_with_certificate_key_uses_jwk() {
    let mut c = client();
    c.account_url = None; // not needed with the certificate key
    let cert_key = account_key();
    let cert_jwk = cert_key.jwk().unwrap();
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(REVOKE, resp(200, "", b""), move |s| {
            assert_eq!(s.header["jwk"], cert_jwk);
            assert_eq!(s.payload, json!({"certificate": "AQI"}));
        }),
    ]);
    m.other_keys
        .push(PrivateKey::from_pem(cert_key.to_pem().unwrap().as_bytes()).unwrap());
    m.run(
        &mut c,
        &mut Operation::revoke(vec![1, 2], None, Some(cert_key)),
    )
    .unwrap();
}

#[test]
fn revoke_already_revoked_is_a_problem() {
    let mut c = client();
    let e = Mock::new(vec![
        head_nonce(),
        post(REVOKE, problem(400, "alreadyRevoked", "already revoked")),
    ])
    .run(&mut c, &mut Operation::revoke(vec![1], None, None))
    .unwrap_err();
    assert!(matches!(e, AcmeError::Problem(ref p) if p.is("alreadyRevoked")));
    assert!(!e.is_retryable());
}

#[test]
fn renewal_info_get() {
    let mut c = client();
    let id = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
    let mut m = Mock::new(vec![get(
        &format!("{ARI}/{id}"),
        with(
            json_resp(
                200,
                json!({"suggestedWindow": {"start": "2025-01-02T04:00:00Z",
                                           "end": "2025-01-03T04:00:00Z"}}),
            ),
            "Retry-After",
            "3600",
        ),
    )]);
    let w = m
        .run(&mut c, &mut Operation::renewal_info(id.into()))
        .unwrap();
    assert_eq!((w.start, w.end), (1_735_790_400, 1_735_876_800));
    assert_eq!(w.explanation_url, None);
    assert_eq!(w.retry_after, Some(T0 + 3600.0));
    let e = Mock::new(vec![])
        .run(&mut c, &mut Operation::renewal_info("../x".into()))
        .unwrap_err();
    assert!(matches!(e, AcmeError::InvalidInput(_)));
}

// ---------------------------------------------------------------------------------------------
// Problems

#[test]
fn problem_mapping() {
    use super::problem::check_response;
    let max = 1 << 20;
    for (kind, status, retryable) in [
        ("badNonce", 400, true),
        ("rateLimited", 429, true),
        ("serverInternal", 500, true),
        ("malformed", 400, false),
        ("unauthorized", 403, false),
        ("accountDoesNotExist", 400, false),
        ("rejectedIdentifier", 400, false),
        ("badCSR", 400, false),
        ("externalAccountRequired", 401, false),
        ("userActionRequired", 403, false),
        ("caa", 403, false),
        ("badSignatureAlgorithm", 400, false),
        ("unsupportedIdentifier", 400, false),
    ] {
        let Err(AcmeError::Problem(p)) = check_response(&problem(status, kind, "why"), max, T0)
        else {
            panic!("{kind}")
        };
        assert_eq!(p.kind, format!("urn:ietf:params:acme:error:{kind}"));
        assert_eq!(p.acme_type(), Some(kind));
        assert_eq!(p.status, status);
        assert_eq!(p.detail.as_deref(), Some("why"));
        assert_eq!(p.message(), "why");
        assert_eq!(AcmeError::Problem(p).is_retryable(), retryable, "{kind}");
    }

    // rateLimited keeps Retry-After as an absolute time.
    let r = with(
        problem(429, "rateLimited", "slow down"),
        "Retry-After",
        "120",
    );
    let Err(AcmeError::Problem(p)) = check_response(&r, max, T0) else {
        panic!()
    };
    assert_eq!(p.retry_after, Some(T0 + 120.0));
    assert_eq!(
        AcmeError::Problem(p).to_string(),
        "acme problem: rateLimited (429): slow down"
    );

    // Subproblems with identifiers (§6.7.1).
    let body = json!({
        "type": "urn:ietf:params:acme:error:malformed",
        "detail": "Some of the identifiers requested were rejected",
        "subproblems": [
            {"type": "urn:ietf:params:acme:error:malformed",
             "detail": "Invalid underscore in DNS name \"_example.org\"",
             "identifier": {"type": "dns", "value": "_example.org"}},
            {"type": "urn:ietf:params:acme:error:rejectedIdentifier",
             "detail": "This CA will not issue for \"example.net\"",
             "status": 403,
             "identifier": {"type": "dns", "value": "example.net"}}
        ]
    });
    let r = resp(400, "application/problem+json", body.to_string().as_bytes());
    let Err(AcmeError::Problem(p)) = check_response(&r, max, T0) else {
        panic!()
    };
    assert_eq!(p.subproblems.len(), 2);
    assert_eq!(
        p.subproblems[0].identifier.as_deref(),
        Some("dns:_example.org")
    );
    assert_eq!(p.subproblems[0].status, 400);
    assert_eq!(
        p.subproblems[1].identifier.as_deref(),
        Some("dns:example.net")
    );
    assert_eq!(p.subproblems[1].status, 403);
    assert!(p.subproblems[1].is("rejectedIdentifier"));
    let text = p.to_string();
    assert!(text.contains("[dns:example.net]"), "{text}");

    // A JSON error body with `type` but the wrong content type is still a problem.
    let r = resp(
        403,
        "application/json",
        br#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"no"}"#,
    );
    assert!(
        matches!(check_response(&r, max, T0), Err(AcmeError::Problem(p)) if p.is("unauthorized"))
    );
    // No type: about:blank (RFC 7807 §4.2).
    let r = resp(404, "application/problem+json", br#"{"detail":"gone"}"#);
    assert!(
        matches!(check_response(&r, max, T0), Err(AcmeError::Problem(p)) if p.kind == "about:blank")
    );
    // A 5xx problem of an unknown type is retryable by status.
    let r = resp(
        503,
        "application/problem+json",
        br#"{"type":"about:blank"}"#,
    );
    assert!(check_response(&r, max, T0).unwrap_err().is_retryable());
    // Undecodable problem document.
    let r = resp(400, "application/problem+json", b"{{");
    assert!(
        matches!(check_response(&r, max, T0), Err(AcmeError::Malformed(m)) if m.contains("undecodable problem document"))
    );
    // JSON error body without type: unexpected status.
    let r = resp(404, "application/json", br#"{"x":1}"#);
    assert!(
        matches!(check_response(&r, max, T0), Err(AcmeError::Malformed(m)) if m.starts_with("unexpected status 404"))
    );
    // Success passes.
    assert!(check_response(&json_resp(200, json!({})), max, T0).is_ok());
}

#[test]
fn problem_reply_fails_the_operation() {
    let mut c = client();
    let e = Mock::new(vec![
        head_nonce(),
        post(
            NEW_ORDER,
            with(
                problem(429, "rateLimited", "too many certificates"),
                "Retry-After",
                "60",
            ),
        ),
    ])
    .run(
        &mut c,
        &mut Operation::order(order_req(&[ChallengeType::Http01])),
    )
    .unwrap_err();
    let AcmeError::Problem(p) = &e else {
        panic!("{e:?}")
    };
    assert!(p.is("rateLimited"));
    assert_eq!(p.retry_after, Some(T0 + 60.0));
    assert!(e.is_retryable());
}

#[test]
fn debug_output_redacts_key_material() {
    let eab = Eab {
        kid: "kid-1".into(),
        hmac_key: b"supersecret".to_vec(),
    };
    let text = format!(
        "{:?}",
        NewAccount {
            eab: Some(eab),
            ..Default::default()
        }
    );
    assert!(
        text.contains("kid-1") && !text.contains("115, 117"),
        "{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");
    let c = client();
    let text = format!("{c:?}");
    assert!(!text.contains("BEGIN"), "{text}");
}

#[test]
fn order_poll_honours_http_date_retry_after() {
    let mut c = client();
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    script.push(post_as_get(
        a1,
        json_resp(200, authz_json("example.com", "valid", vec![])),
    ));
    // T0 + 1 s (first authz poll delay) is 1970-01-12 13:46:41; ask for 13:46:48: 7 s.
    script.push(post_as_get(
        ORDER,
        with(
            json_resp(200, order_json("pending", &[a1], None)),
            "Retry-After",
            "Mon, 12 Jan 1970 13:46:48 GMT",
        ),
    ));
    script.push(post_as_get(
        ORDER,
        json_resp(200, order_json("valid", &[a1], Some(CERT))),
    ));
    script.push(post_as_get(CERT, pem_resp(&chain("root-a.test"))));
    script.push(Ev::Unpublish);
    let mut m = Mock::new(script);
    m.run(
        &mut c,
        &mut Operation::order(order_req(&[ChallengeType::Http01])),
    )
    .unwrap();
    let sleeps: Vec<&String> = m.trace.iter().filter(|t| t.starts_with("sleep")).collect();
    assert_eq!(sleeps, ["sleep 0.25", "sleep 7.75"]);
}

// ---------------------------------------------------------------------------------------------
// Deferred signing (`ClientConfig::deferred_signing`)

/// One name, http-01, valid at once after the challenge: every request kind of an order.
fn simple_order_script(pem: &str) -> Vec<Ev> {
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    script.extend([
        post_as_get(
            a1,
            json_resp(200, authz_json("example.com", "valid", vec![])),
        ),
        post_as_get(ORDER, json_resp(200, order_json("ready", &[a1], None))),
        post(
            FINALIZE,
            json_resp(200, order_json("valid", &[a1], Some(CERT))),
        ),
        post_as_get(CERT, pem_resp(pem)),
        Ev::Unpublish,
    ]);
    script
}

/// Runs the simple order inline and deferred with `key`; the two mocks.
fn order_both_ways(key: &PrivateKey) -> (Mock, Mock) {
    let pem = chain("root-a.test");
    let mut mocks = Vec::new();
    for deferred in [false, true] {
        let mut c = client();
        c.account_key = Some(key.clone());
        c.config.deferred_signing = deferred;
        let mut m = Mock::new(simple_order_script(&pem));
        let out = m
            .run(
                &mut c,
                &mut Operation::order(order_req(&[ChallengeType::Http01])),
            )
            .unwrap();
        assert_eq!(out.pem, pem);
        mocks.push(m);
    }
    let deferred = mocks.pop().unwrap();
    let inline = mocks.pop().unwrap();
    assert_eq!(inline.signed, 0, "inline signing hands out no Sign action");
    let posts = deferred
        .requests
        .iter()
        .filter(|r| r.method == Method::Post)
        .count();
    assert_eq!(posts, 7);
    assert_eq!(deferred.signed, posts, "one Sign per POST");
    assert_eq!(inline.trace, deferred.trace);
    (inline, deferred)
}

#[test]
fn deferred_signing_sends_the_bytes_inline_signing_sends() {
    // RS256 (PKCS#1 v1.5) is deterministic: the same key, nonces and payloads give the same
    // requests byte for byte, headers included (the certificate's Accept, §7.4.2).
    let key = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
    let (inline, deferred) = order_both_ways(&key);
    assert_eq!(inline.requests, deferred.requests);
}

#[test]
fn deferred_signing_with_an_ec_key_has_the_same_structure() {
    // ECDSA signatures are randomized: the same protected header and payload, and a signature
    // that verifies (the mock checks every one).
    let (inline, deferred) = order_both_ways(&account_key());
    assert_eq!(inline.requests.len(), deferred.requests.len());
    for (a, b) in inline.requests.iter().zip(&deferred.requests) {
        assert_eq!(
            (a.method, &a.url, &a.headers),
            (b.method, &b.url, &b.headers)
        );
        if a.method != Method::Post {
            continue;
        }
        let ja: Value = serde_json::from_slice(&a.body).unwrap();
        let jb: Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(ja["protected"], jb["protected"]);
        assert_eq!(ja["payload"], jb["payload"]);
        assert_eq!(
            b64url_decode(jb["signature"].as_str().unwrap())
                .unwrap()
                .len(),
            64
        );
    }
}

#[test]
fn deferred_signing_signs_again_after_bad_nonce() {
    // §6.5: the retry carries the nonce of the badNonce reply, so it needs a new signature.
    let mut c = client();
    c.config.deferred_signing = true;
    let mut m = Mock::new(vec![
        head_nonce(),
        post(ACCT_URL, problem(400, "badNonce", "stale")),
        post(ACCT_URL, json_resp(200, json!({"status": "deactivated"}))),
    ]);
    m.run(&mut c, &mut Operation::deactivate_account()).unwrap();
    assert_eq!(m.signed, 2);
    assert_ne!(m.requests[1].body, m.requests[2].body);
}

#[test]
fn failed_signature_ends_the_operation() {
    // Before anything was published: the operation fails at once, nothing is sent.
    let mut c = client();
    c.config.deferred_signing = true;
    let mut m = Mock::new(vec![head_nonce()]);
    m.sign_failure = Some((0, "signing thread panicked".into()));
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert_eq!(e, AcmeError::Sign("signing thread panicked".into()));
    assert_eq!(
        e.to_string(),
        "signing the request failed: signing thread panicked"
    );
    assert!(!e.is_retryable());
    assert_eq!(m.trace, ["HEAD https://ca.test/nonce"]);

    // After publishing (the third signature is the challenge's): unpublished, then the error.
    let mut c = client();
    c.config.deferred_signing = true;
    let a1 = "https://ca.test/authz/1";
    let mut script = order_prefix(a1);
    script.pop(); // the challenge POST is never sent
    script.push(Ev::Unpublish);
    let mut m = Mock::new(script);
    m.sign_failure = Some((2, "rsa: out of memory".into()));
    let e = m
        .run(
            &mut c,
            &mut Operation::order(order_req(&[ChallengeType::Http01])),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "signing the request failed: rsa: out of memory"
    );
    assert_eq!(m.trace.last().unwrap(), &format!("unpublish {TOKEN1}"));
}

#[test]
fn unexpected_or_empty_signatures_fail_cleanly() {
    let mut c = client();
    c.config.deferred_signing = true;
    let mut op = Operation::deactivate_account();
    op.handle_signature(&mut c, Ok(vec![1, 2, 3]));
    match op.next_action(&mut c, T0) {
        Action::Failed(AcmeError::State(m)) => {
            assert_eq!(m, "handle_signature called but no signature is pending")
        }
        other => panic!("{other:?}"),
    }

    let mut c = client();
    c.config.deferred_signing = true;
    c.add_nonce("bm9uY2U".into());
    c.add_nonce("bm9uY2Uy".into());
    let mut op = Operation::deactivate_account();
    let Action::Sign(job) = op.next_action(&mut c, T0) else {
        panic!("expected a Sign action")
    };
    // The job is Send: it may be signed on another thread.
    let sig = std::thread::spawn(move || job.sign())
        .join()
        .unwrap()
        .unwrap();
    assert!(!sig.is_empty());
    // A response while the signature is pending is a misuse, as is an empty signature.
    let mut op2 = Operation::deactivate_account();
    let Action::Sign(_) = op2.next_action(&mut c, T0) else {
        panic!("expected a Sign action")
    };
    op2.handle_signature(&mut c, Ok(Vec::new()));
    match op2.next_action(&mut c, T0) {
        Action::Failed(AcmeError::Sign(m)) => assert_eq!(m, "the signature is empty"),
        other => panic!("{other:?}"),
    }
    op.handle_response(&mut c, resp(200, "", b""), T0);
    match op.next_action(&mut c, T0) {
        Action::Failed(AcmeError::State(m)) => {
            assert_eq!(m, "handle_response called but no request is pending")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn finalize_alone_polls_the_order_and_downloads_the_chain() {
    let mut c = client();
    let pem = chain("root.test");
    let csr = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    let csr_b64 = b64url(&csr);
    let a1 = "https://ca.test/authz/1";
    let mut m = Mock::new(vec![
        head_nonce(),
        post_check(
            FINALIZE,
            with(
                json_resp(200, order_json("processing", &[a1], None)),
                "Retry-After",
                "2",
            ),
            move |s| assert_eq!(s.payload, json!({ "csr": csr_b64 })),
        ),
        post_as_get(
            ORDER,
            json_resp(200, order_json("valid", &[a1], Some(CERT))),
        ),
        post_as_get(CERT, pem_resp(&pem)),
    ]);
    let op = &mut Operation::finalize(ORDER.into(), FINALIZE.into(), csr.clone());
    let out = m.run(&mut c, op).unwrap();
    assert_eq!(
        (out.pem.as_str(), out.url.as_str(), out.order_url.as_str()),
        (pem.as_str(), CERT, ORDER)
    );
    assert!(m.now >= T0 + 2.0, "the Retry-After was waited for");

    let mut invalid = order_json("invalid", &[a1], None);
    invalid["error"] = json!({"type": "urn:ietf:params:acme:error:badCSR", "detail": "no"});
    let mut m = Mock::new(vec![post(FINALIZE, json_resp(200, invalid))]);
    m.foreign_nonces = true;
    let e = m
        .run(
            &mut c,
            &mut Operation::finalize(ORDER.into(), FINALIZE.into(), csr),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("order {ORDER} is invalid: badCSR: no")
    );
    let e = Mock::new(vec![])
        .run(
            &mut c,
            &mut Operation::finalize(ORDER.into(), FINALIZE.into(), vec![]),
        )
        .unwrap_err();
    assert!(matches!(e, AcmeError::InvalidInput(_)), "{e:?}");
}

#[test]
fn a_profile_the_directory_does_not_offer_sends_nothing() {
    let mut c = client();
    let req = OrderRequest {
        profile: Some("shortlived".into()),
        ..order_req(&[ChallengeType::Http01])
    };
    let e = Mock::new(vec![])
        .run(&mut c, &mut Operation::order(req))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input: profile shortlived is not offered: the CA's directory lists no profiles"
    );
}
