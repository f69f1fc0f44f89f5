//! Request authentication (RFC 8555 §6.2): every POST body is a flattened JWS over the
//! payload, whose protected header names the key by `kid` (account URL) or embedded `jwk`.
use super::{AcmeError, Client, Method, Request};
use crate::crypto::jws::{JwsInput, KeyId};
use crate::crypto::PrivateKey;
use std::sync::Arc;

/// §6.2: the media type of JWS request bodies.
pub const JOSE_JSON: &str = "application/jose+json";
/// §7.4.2: the certificate chain download format.
pub const PEM_CHAIN: &str = "application/pem-certificate-chain";

/// Which key signs a request and how the header names it.
#[derive(Debug, Clone)]
pub(crate) enum Signer {
    /// The account key, `kid` = the account URL (every request after newAccount).
    AccountKid,
    /// The account key with its `jwk` (newAccount, §7.3).
    AccountJwk,
    /// Another key with its `jwk` (revokeCert with the certificate key, §7.6).
    Key(Arc<PrivateKey>),
}

pub(crate) fn no_account_key() -> AcmeError {
    AcmeError::State("account key is not set".into())
}

pub(crate) fn no_account_url() -> AcmeError {
    AcmeError::State(
        "account_kid is not defined, provide via config or create account first".into(),
    )
}

impl Signer {
    /// Fails early (before a nonce is spent) when the key or account URL is missing.
    pub fn check(&self, client: &Client) -> Result<(), AcmeError> {
        match self {
            Signer::AccountKid => {
                client.account_key.as_ref().ok_or_else(no_account_key)?;
                client.account_url.as_ref().ok_or_else(no_account_url)?;
            }
            Signer::AccountJwk => {
                client.account_key.as_ref().ok_or_else(no_account_key)?;
            }
            Signer::Key(_) => {}
        }
        Ok(())
    }

    /// The key that signs and the unsigned JWS of a POST (the costly signature is left out).
    pub fn input<'a>(
        &'a self,
        client: &'a Client,
        url: &str,
        nonce: &str,
        payload: Option<&str>,
    ) -> Result<(&'a PrivateKey, JwsInput), AcmeError> {
        let (key, key_id) = match self {
            Signer::AccountKid => {
                let key = client.account_key.as_ref().ok_or_else(no_account_key)?;
                let kid = client.account_url.as_deref().ok_or_else(no_account_url)?;
                (key, KeyId::Kid(kid))
            }
            Signer::AccountJwk => {
                let key = client.account_key.as_ref().ok_or_else(no_account_key)?;
                (key, KeyId::Jwk)
            }
            Signer::Key(key) => (key.as_ref(), KeyId::Jwk),
        };
        Ok((key, JwsInput::new(key, url, Some(nonce), key_id, payload)?))
    }

    /// The signed POST request, signed here.
    pub fn post(
        &self,
        client: &Client,
        url: &str,
        nonce: &str,
        payload: Option<&str>,
        accept: Option<&str>,
    ) -> Result<Request, AcmeError> {
        let (key, input) = self.input(client, url, nonce, payload)?;
        let signature = input.sign(key)?;
        Ok(post_request(url, input.assemble(&signature), accept))
    }
}

/// The POST carrying a flattened JWS `body` (§6.2).
pub(crate) fn post_request(url: &str, body: String, accept: Option<&str>) -> Request {
    let mut headers = vec![("Content-Type".to_string(), JOSE_JSON.to_string())];
    if let Some(a) = accept {
        headers.push(("Accept".to_string(), a.to_string()));
    }
    Request {
        method: Method::Post,
        url: url.to_string(),
        headers,
        body: body.into_bytes(),
    }
}
