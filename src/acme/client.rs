//! The account context that operations share.
use super::nonce::NoncePool;
use super::types::Directory;
use crate::crypto::PrivateKey;

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
    /// Hand every JWS signature (§6.2) to the caller as [`Action::Sign`](super::Action::Sign) instead of signing
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
