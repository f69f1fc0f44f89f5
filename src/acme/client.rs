//! The account context and the operations that drive the protocol.
pub use super::identifier::Identifier;
use super::nonce::NoncePool;
pub use super::operation::Operation;
pub use super::types::Directory;
use super::{AcmeError, Request, Response};
use crate::crypto::PrivateKey;
use std::sync::Arc;

/// Limits and timings of the state machine.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The directory URL (RFC 8555 §7.1.1).
    pub directory_url: String,
    /// How long one polling phase of an order may last, seconds, counted from its first poll:
    /// the authorizations (together), the order becoming ready, the order becoming valid.
    pub poll_timeout: f64,
    /// How many times a request is re-sent after `badNonce` (§6.5).
    pub bad_nonce_retries: u32,
    /// Largest response body accepted, bytes.
    pub max_body: usize,
    /// Hand every JWS signature (§6.2) to the caller as [`Action::Sign`] instead of signing
    /// inside `next_action`: an RSA-4096 signature costs about 3 ms, which a caller with an
    /// event loop computes on a thread. Off by default: the operation then signs itself.
    pub deferred_signing: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            directory_url: String::new(),
            poll_timeout: 120.0,
            bad_nonce_retries: 5,
            max_body: 1024 * 1024,
            deferred_signing: false,
        }
    }
}

/// Challenge types (RFC 8555 §8.3, §8.4; RFC 8737).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeType {
    Http01,
    Dns01,
    TlsAlpn01,
    /// draft-ietf-acme-dns-persist-01: a standing TXT record naming the CA and the account.
    DnsPersist01,
}

impl ChallengeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
            ChallengeType::DnsPersist01 => "dns-persist-01",
        }
    }

    pub fn parse(s: &str) -> Option<ChallengeType> {
        match s {
            "http-01" => Some(ChallengeType::Http01),
            "dns-01" => Some(ChallengeType::Dns01),
            "tls-alpn-01" => Some(ChallengeType::TlsAlpn01),
            "dns-persist-01" => Some(ChallengeType::DnsPersist01),
            _ => None,
        }
    }
}

/// What the caller must publish so that the CA can validate one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeTask {
    pub kind: ChallengeType,
    /// The authorization's identifier; for a wildcard authorization the base name.
    pub identifier: Identifier,
    /// The authorization was for `*.` + identifier (§7.1.4 `wildcard`).
    pub wildcard: bool,
    /// Empty for dns-persist-01, which has no token.
    pub token: String,
    /// Empty for dns-persist-01.
    pub key_authorization: String,
    pub url: String,
    pub authz_url: String,
    /// dns-persist-01: the challenge's `issuer-domain-names` (the CA names a record may use).
    pub issuer_domain_names: Vec<String>,
    /// dns-persist-01: the challenge's `accounturi` when the CA sent one.
    pub account_uri: Option<String>,
}

/// External account binding credentials (§7.3.4).
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    /// The MAC key, raw bytes (already base64url-decoded).
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
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
    /// dns-persist-01 is chosen only for authorizations of these names (as the order names
    /// them, `*.example.com` for a wildcard): those whose record is in place or will be
    /// published; the others take the next type of `challenge_types`. `None`: every name.
    pub persist_names: Option<Vec<String>>,
}

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
pub enum Action {
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
    Done(Outcome),
    /// The operation failed; further `next_action` calls return the same error.
    Failed(AcmeError),
}

/// The result of a finished operation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `Operation::directory`: `client.directory` is fresh.
    Directory,
    /// `Operation::new_nonce`: a nonce for the caller (not pooled).
    Nonce(String),
    /// `Operation::new_account`: the account URL (now `client.account_url`), its status, whether
    /// it was created (201) or already existed (200), and the account object.
    Account {
        url: String,
        status: String,
        created: bool,
        body: serde_json::Value,
    },
    /// `Operation::order`: the PEM chain chosen (default or preferred alternate), its URL, and
    /// the order URL.
    Certificate {
        pem: String,
        url: String,
        order_url: String,
    },
    Revoked,
    KeyChanged,
    Deactivated,
    Response(Response),
    /// RFC 9773 §4.2: the suggested window in Unix seconds; `retry_after` is an absolute Unix
    /// time from the reply's Retry-After.
    RenewalInfo {
        start: i64,
        end: i64,
        explanation_url: Option<String>,
        retry_after: Option<f64>,
    },
}

/// The account context shared by operations: the directory, the nonce pool, the account key
/// and URL. Several operations may run interleaved against one client.
pub struct Client {
    pub config: ClientConfig,
    pub directory: Option<Directory>,
    pub account_key: Option<PrivateKey>,
    /// The account URL (`kid`, RFC 8555 §6.2), set by newAccount or by the caller.
    pub account_url: Option<String>,
    pub(crate) nonces: NoncePool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("directory", &self.directory.is_some())
            .field("account_key", &self.account_key)
            .field("account_url", &self.account_url)
            .field("nonces", &self.nonces.len())
            .finish()
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        Client {
            config,
            directory: None,
            account_key: None,
            account_url: None,
            nonces: NoncePool::default(),
        }
    }

    /// Adds a nonce obtained elsewhere to the pool (ignored unless base64url, §6.5.1).
    pub fn add_nonce(&mut self, nonce: String) {
        self.nonces.push(nonce);
    }

    /// How many unused nonces are pooled.
    pub fn nonce_count(&self) -> usize {
        self.nonces.len()
    }

    /// Whether no nonce is pooled (the next signed request first asks newNonce).
    pub fn nonces_empty(&self) -> bool {
        self.nonces.is_empty()
    }
}

impl Operation {
    /// GET the directory (§7.1.1) even if the client has one → `Outcome::Directory`.
    pub fn directory() -> Operation {
        Operation::from_flow(Box::new(super::directory::DirectoryFlow {
            requested: false,
        }))
    }

    /// HEAD newNonce (§7.2) → `Outcome::Nonce(nonce)`; the nonce is not pooled.
    pub fn new_nonce() -> Operation {
        Operation::from_flow(Box::new(super::nonce::NonceFlow { nonce: None }))
    }

    /// newAccount (§7.3) → `Outcome::Account`; sets `client.account_url`.
    pub fn new_account(req: NewAccount) -> Operation {
        Operation::from_flow(Box::new(super::account::NewAccountFlow {
            req,
            result: None,
        }))
    }

    /// The whole issuance (§7.4) → `Outcome::Certificate`.
    pub fn order(req: OrderRequest) -> Operation {
        Operation::from_flow(Box::new(super::order::OrderFlow::new(req)))
    }

    /// revokeCert (§7.6) → `Outcome::Revoked`. `reason` is an RFC 5280 §5.3.1 code; with
    /// `cert_key` the request is signed by the certificate's key (`jwk`) instead of the account.
    pub fn revoke(
        cert_der: Vec<u8>,
        reason: Option<u32>,
        cert_key: Option<PrivateKey>,
    ) -> Operation {
        Operation::from_flow(Box::new(super::certificate::RevokeFlow {
            cert_der,
            reason,
            cert_key: cert_key.map(Arc::new),
            done: false,
        }))
    }

    /// Account key rollover (§7.3.5) → `Outcome::KeyChanged`; on success
    /// `client.account_key` is `new_key`.
    pub fn key_change(new_key: PrivateKey) -> Operation {
        Operation::from_flow(Box::new(super::account::KeyChangeFlow {
            new_key: Some(new_key),
            sent: false,
            done: false,
        }))
    }

    /// Account deactivation (§7.3.6) → `Outcome::Deactivated`.
    pub fn deactivate_account() -> Operation {
        Operation::from_flow(Box::new(super::account::DeactivateFlow { done: false }))
    }

    /// A signed POST (`kid`) of `payload_json` (`None` = POST-as-GET, §6.3) to `url` →
    /// `Outcome::Response` for any status below 400 that is not a problem document. With an
    /// explicit `nonce`, that nonce is used and `badNonce` is not retried.
    pub fn post(url: String, payload_json: Option<String>, nonce: Option<String>) -> Operation {
        Operation::from_flow(Box::new(super::operation::PostFlow {
            url,
            payload: payload_json,
            nonce,
            result: None,
        }))
    }

    /// ACME Renewal Information (RFC 9773 §4.2) for a CertID → `Outcome::RenewalInfo`.
    pub fn renewal_info(ari_cert_id: String) -> Operation {
        Operation::from_flow(Box::new(super::renewal_info::RenewalInfoFlow {
            cert_id: ari_cert_id,
            result: None,
        }))
    }
}
