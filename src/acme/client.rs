//! The account context and the operations that drive the protocol.
use super::{AcmeError, Request, Response};
use crate::crypto::PrivateKey;

/// Limits and timings of the state machine.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The directory URL (RFC 8555 §7.1.1).
    pub directory_url: String,
    /// How long an order may poll (authorizations, order readiness, finalization), seconds.
    pub poll_timeout: f64,
    /// How many times a request is re-sent after `badNonce` (§6.5).
    pub bad_nonce_retries: u32,
    /// Largest response body accepted, bytes.
    pub max_body: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            directory_url: String::new(),
            poll_timeout: 120.0,
            bad_nonce_retries: 5,
            max_body: 1024 * 1024,
        }
    }
}

/// The directory object (RFC 8555 §7.1.1).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    pub revoke_cert: String,
    pub key_change: Option<String>,
    /// RFC 9773 §4.
    pub renewal_info: Option<String>,
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    pub external_account_required: bool,
    /// ACME profiles (draft-ietf-acme-profiles): name → description.
    pub profiles: Vec<(String, String)>,
    /// The directory as received.
    pub raw: serde_json::Value,
}

/// Challenge types (RFC 8555 §8.3, §8.4; RFC 8737).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeType {
    Http01,
    Dns01,
    TlsAlpn01,
}

impl ChallengeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
        }
    }

    pub fn parse(s: &str) -> Option<ChallengeType> {
        match s {
            "http-01" => Some(ChallengeType::Http01),
            "dns-01" => Some(ChallengeType::Dns01),
            "tls-alpn-01" => Some(ChallengeType::TlsAlpn01),
            _ => None,
        }
    }
}

/// An order identifier (RFC 8555 §9.7.7 `dns`, RFC 8738 `ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// `dns` or `ip`.
    pub kind: String,
    pub value: String,
}

/// What the caller must publish so that the CA can validate one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeTask {
    pub kind: ChallengeType,
    /// The authorization's identifier; for a wildcard authorization the base name.
    pub identifier: Identifier,
    /// The authorization was for `*.` + identifier (§7.1.4 `wildcard`).
    pub wildcard: bool,
    pub token: String,
    pub key_authorization: String,
    pub url: String,
    pub authz_url: String,
}

/// External account binding credentials (§7.3.4).
#[derive(Debug, Clone)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

/// newAccount input (§7.3).
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// Contact URLs, e.g. `mailto:ops@example.com`.
    pub contact: Vec<String>,
    pub terms_of_service_agreed: bool,
    pub only_return_existing: bool,
    pub eab: Option<Eab>,
}

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
}

/// What the caller should do next.
#[derive(Debug)]
pub enum Action {
    /// Perform the request, then `handle_response` or `handle_transport_error`.
    Http(Request),
    /// Sleep until this Unix time, then ask again.
    Sleep {
        until: f64,
    },
    /// Make the challenge answerable, then `handle_published`.
    Publish(ChallengeTask),
    /// Remove a published challenge (best effort), then `handle_unpublished`.
    Unpublish(ChallengeTask),
    Done(Outcome),
    Failed(AcmeError),
}

/// The result of a finished operation.
#[derive(Debug, Clone)]
pub enum Outcome {
    Directory,
    Nonce(String),
    Account {
        url: String,
        status: String,
        created: bool,
        body: serde_json::Value,
    },
    Certificate {
        pem: String,
        url: String,
        order_url: String,
    },
    Revoked,
    KeyChanged,
    Deactivated,
    Response(Response),
    RenewalInfo {
        start: i64,
        end: i64,
        explanation_url: Option<String>,
        retry_after: Option<f64>,
    },
}

/// The account context shared by operations.
pub struct Client {
    pub config: ClientConfig,
    pub directory: Option<Directory>,
    pub account_key: Option<PrivateKey>,
    pub account_url: Option<String>,
    pub(crate) nonces: Vec<String>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        Client {
            config,
            directory: None,
            account_key: None,
            account_url: None,
            nonces: Vec::new(),
        }
    }
}

/// One protocol operation in progress.
pub struct Operation {
    _private: (),
}

impl Operation {
    pub fn directory() -> Operation {
        Operation { _private: () }
    }
    pub fn next_action(&mut self, client: &mut Client, now: f64) -> Action {
        let _ = (client, now);
        Action::Failed(AcmeError::State("not implemented".into()))
    }
    pub fn handle_response(&mut self, client: &mut Client, resp: Response, now: f64) {
        let _ = (client, resp, now);
    }
    pub fn handle_transport_error(&mut self, client: &mut Client, err: String) {
        let _ = (client, err);
    }
}
