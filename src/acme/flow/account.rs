//! Account management: newAccount (RFC 8555 §7.3) with external account binding (§7.3.4),
//! key rollover (§7.3.5) and deactivation (§7.3.6).
use super::{Call, Flow, Step};
use crate::acme::jws::{no_account_key, no_account_url, Signer};
use crate::acme::{AcmeError, Client, Operation, Response};
use crate::crypto::jws::{eab_binding, sign_flattened, KeyId};
use crate::crypto::PrivateKey;

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

/// What newAccount answered.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    /// The account URL, now also `client.account_url`.
    pub url: String,
    pub status: String,
    /// Created (201), or it existed already (200, §7.3.1).
    pub created: bool,
    /// The account object.
    pub body: serde_json::Value,
}

impl Operation<AccountInfo> {
    /// newAccount (§7.3); sets `client.account_url`.
    pub fn new_account(req: NewAccount) -> Operation<AccountInfo> {
        Operation::from_flow(Box::new(NewAccountFlow { req, result: None }))
    }
}

impl Operation<()> {
    /// Account key rollover (§7.3.5); on success `client.account_key` is `new_key`.
    pub fn key_change(new_key: PrivateKey) -> Operation<()> {
        Operation::from_flow(Box::new(KeyChangeFlow {
            new_key: Some(new_key),
            sent: false,
            done: false,
        }))
    }

    /// Account deactivation (§7.3.6).
    pub fn deactivate_account() -> Operation<()> {
        Operation::from_flow(Box::new(DeactivateFlow { done: false }))
    }
}

/// The newAccount payload (§7.3), with `externalAccountBinding` (§7.3.4) when EAB is given.
pub(crate) fn new_account_payload(
    req: &NewAccount,
    client: &Client,
) -> Result<serde_json::Value, AcmeError> {
    let dir = client
        .directory
        .as_ref()
        .ok_or_else(|| AcmeError::State("the directory is not known".into()))?;
    let key = client.account_key.as_ref().ok_or_else(no_account_key)?;
    let mut payload = serde_json::json!({ "termsOfServiceAgreed": req.terms_of_service_agreed });
    if !req.contact.is_empty() {
        payload["contact"] = req.contact.clone().into();
    }
    if req.only_return_existing {
        payload["onlyReturnExisting"] = true.into();
    }
    match &req.eab {
        Some(eab) => {
            payload["externalAccountBinding"] =
                eab_binding(&eab.kid, &eab.hmac_key, &dir.new_account, &key.jwk()?)?;
        }
        // §7.3.4: such a CA rejects the request anyway; say why before spending a request.
        // Looking up a known pair (`onlyReturnExisting`) needs no binding.
        None if dir.external_account_required && !req.only_return_existing => {
            return Err(AcmeError::State(
                "CA requires external account binding, none was given".into(),
            ));
        }
        None => {}
    }
    Ok(payload)
}

/// Waits for the newAccount reply.
struct NewAccountFlow {
    req: NewAccount,
    result: Option<AccountInfo>,
}

impl Flow for NewAccountFlow {
    type Output = AccountInfo;

    fn step(&mut self, client: &mut Client, _now: f64) -> Step<AccountInfo> {
        if let Some(info) = self.result.take() {
            return Step::Done(info);
        }
        let payload = match new_account_payload(&self.req, client) {
            Ok(p) => p,
            Err(e) => return Step::Fail(e),
        };
        let Some(dir) = &client.directory else {
            return Step::Fail(AcmeError::State("the directory is not known".into()));
        };
        // §7.3: newAccount is signed with the `jwk`, there is no account URL yet.
        Step::Call(Call::Post {
            url: dir.new_account.clone(),
            payload: Some(payload.to_string()),
            signer: Signer::AccountJwk,
            accept: None,
            nonce: None,
        })
    }

    fn on_reply(
        &mut self,
        client: &mut Client,
        resp: Response,
        _now: f64,
    ) -> Result<(), AcmeError> {
        // §7.3: 201 for a new account, 200 for an existing one (§7.3.1).
        resp.expect_status(&[200, 201], "newAccount")?;
        let url = resp
            .header("location")
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                AcmeError::Malformed(format!(
                    "newAccount reply (status {}) has no Location header",
                    resp.status
                ))
            })?
            .to_string();
        let body = if resp.body.is_empty() {
            serde_json::json!({})
        } else {
            resp.json("newAccount")?
        };
        let status = body
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("valid")
            .to_string();
        client.account_url = Some(url.clone());
        self.result = Some(AccountInfo {
            url,
            status,
            created: resp.status == 201,
            body,
        });
        Ok(())
    }
}

/// Waits for the keyChange reply (§7.3.5).
struct KeyChangeFlow {
    new_key: Option<PrivateKey>,
    sent: bool,
    done: bool,
}

impl KeyChangeFlow {
    /// The inner JWS: signed by the new key with its `jwk`, no nonce, `url` = keyChange,
    /// payload `{account, oldKey}` (§7.3.5).
    fn inner(&self, client: &Client, url: &str) -> Result<String, AcmeError> {
        let new_key = self
            .new_key
            .as_ref()
            .ok_or_else(|| AcmeError::State("the new key was already installed".into()))?;
        let old_key = client.account_key.as_ref().ok_or_else(no_account_key)?;
        let account = client.account_url.as_deref().ok_or_else(no_account_url)?;
        let payload = serde_json::json!({ "account": account, "oldKey": old_key.jwk()? });
        Ok(sign_flattened(
            new_key,
            url,
            None,
            KeyId::Jwk,
            Some(&payload.to_string()),
        )?)
    }
}

impl Flow for KeyChangeFlow {
    type Output = ();

    fn step(&mut self, client: &mut Client, _now: f64) -> Step<()> {
        if self.done {
            return Step::Done(());
        }
        let Some(url) = client.directory.as_ref().and_then(|d| d.key_change.clone()) else {
            return Step::Fail(AcmeError::State(
                "the CA's directory has no keyChange resource".into(),
            ));
        };
        if self.sent {
            return Step::Fail(AcmeError::State("key change already sent".into()));
        }
        match self.inner(client, &url) {
            Ok(inner) => {
                self.sent = true;
                // The outer JWS is an ordinary request by the old key with `kid`.
                Step::Call(Call::post(&url, Some(inner)))
            }
            Err(e) => Step::Fail(e),
        }
    }

    fn on_reply(
        &mut self,
        client: &mut Client,
        resp: Response,
        _now: f64,
    ) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "keyChange")?;
        // From now on requests must be signed by the new key (§7.3.5).
        client.account_key = self.new_key.take();
        self.done = true;
        Ok(())
    }
}

/// Waits for the account deactivation reply (§7.3.6).
struct DeactivateFlow {
    done: bool,
}

impl Flow for DeactivateFlow {
    type Output = ();

    fn needs_directory(&self) -> bool {
        false
    }

    fn step(&mut self, client: &mut Client, _now: f64) -> Step<()> {
        if self.done {
            return Step::Done(());
        }
        match &client.account_url {
            Some(url) => Step::Call(Call::post(
                url,
                Some(r#"{"status":"deactivated"}"#.to_string()),
            )),
            None => Step::Fail(no_account_url()),
        }
    }

    fn on_reply(
        &mut self,
        _client: &mut Client,
        resp: Response,
        _now: f64,
    ) -> Result<(), AcmeError> {
        resp.expect_status(&[200], "account deactivation")?;
        self.done = true;
        Ok(())
    }
}
