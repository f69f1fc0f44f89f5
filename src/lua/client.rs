//! Glue for the sans-I/O protocol core: a client userdata (the account context) and operation
//! userdata that Lua drives: `op:next(now)` returns the next action as a table, and the result of
//! performing it goes back through `op:response(...)`, `op:transport_error(err)`,
//! `op:published(ok, err)`, `op:unpublished()` or `op:signature(sig, err)`.
use super::crypto::{sign_job, LuaKey};
use super::to_lua;
use crate::acme::{
    AccountInfo, AcmeError, Action, ChallengeTask, ChallengeType, Client, ClientConfig, Eab,
    Identifier, IssuedCertificate, NewAccount, Operation, OrderRequest, RenewalWindow, Response,
};
use mlua::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

type Ret<T> = LuaResult<Result<T, String>>;

/// The account context; operations keep a handle to it.
pub struct LuaClient(Rc<RefCell<Client>>);

/// One protocol operation in progress.
pub struct LuaOperation {
    op: Operation<Done>,
    client: Rc<RefCell<Client>>,
}

/// What any operation ended with, for the one `done` table Lua reads (`outcome` names it).
enum Done {
    Directory,
    Nonce(String),
    Account(AccountInfo),
    Certificate(IssuedCertificate),
    Revoked,
    KeyChanged,
    Deactivated,
    Response(Response),
    RenewalInfo(RenewalWindow),
}

fn opt_field<T: FromLua>(t: &LuaTable, k: &str) -> LuaResult<Option<T>> {
    t.get::<Option<T>>(k)
}

fn task_table(lua: &Lua, kind: &str, task: &ChallengeTask) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("kind", kind)?;
    t.set("type", task.kind.as_str())?;
    t.set("identifier", task.identifier.value())?;
    t.set("identifier_type", task.identifier.kind())?;
    t.set("wildcard", task.wildcard)?;
    t.set("token", task.token.clone())?;
    t.set("key_authorization", task.key_authorization.clone())?;
    t.set("url", task.url.clone())?;
    t.set("authz_url", task.authz_url.clone())?;
    if !task.issuer_domain_names.is_empty() {
        t.set(
            "issuer_domain_names",
            lua.create_sequence_from(task.issuer_domain_names.iter().cloned())?,
        )?;
    }
    t.set("account_uri", task.account_uri.clone())?;
    Ok(t)
}

fn headers_table(lua: &Lua, headers: &[(String, String)]) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    for (k, v) in headers {
        t.set(k.as_str(), v.as_str())?;
    }
    Ok(t)
}

fn error_table(lua: &Lua, err: &AcmeError) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("kind", "failed")?;
    t.set("err", err.to_string())?;
    t.set("retryable", err.is_retryable())?;
    let category = match err {
        AcmeError::Problem(_) => "problem",
        AcmeError::Transport(_) => "transport",
        AcmeError::Malformed(_) => "malformed",
        AcmeError::InvalidInput(_) => "invalid_input",
        AcmeError::Invalid(..) => "invalid",
        AcmeError::Timeout(_) => "timeout",
        AcmeError::NoChallenge(_) => "no_challenge",
        AcmeError::Publish(_) => "publish",
        AcmeError::State(_) => "state",
        AcmeError::Crypto(_) | AcmeError::Sign(_) => "crypto",
        AcmeError::Directory(..) => "directory",
    };
    t.set("category", category)?;
    // what the CA answered classifies the backoff; Invalid keeps its classification by text
    let answered = match err {
        AcmeError::Problem(p) => Some(p),
        AcmeError::Directory(_, p) => p.as_deref(),
        _ => None,
    };
    if let Some(p) = answered {
        t.set("problem_type", p.kind.clone())?;
        t.set("problem_detail", p.detail.clone())?;
        t.set("status", p.status)?;
        t.set("retry_after", p.retry_after)?;
    }
    // the whole document (subproblems too), for the admin view; Invalid keeps its
    // classification by text: only a Problem answer sets problem_type
    if let Some(p) = err.problem() {
        t.set("problem", to_lua(lua, p)?)?;
    }
    Ok(t)
}

fn outcome_table(lua: &Lua, done: Done) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("kind", "done")?;
    match done {
        Done::Directory => t.set("outcome", "directory")?,
        Done::Nonce(n) => {
            t.set("outcome", "nonce")?;
            t.set("nonce", n)?;
        }
        Done::Account(a) => {
            t.set("outcome", "account")?;
            t.set("url", a.url)?;
            t.set("status", a.status)?;
            t.set("created", a.created)?;
            t.set("body", a.body.to_string())?;
        }
        Done::Certificate(c) => {
            t.set("outcome", "certificate")?;
            t.set("pem", c.pem)?;
            t.set("url", c.url)?;
            t.set("order_url", c.order_url)?;
        }
        Done::Revoked => t.set("outcome", "revoked")?,
        Done::KeyChanged => t.set("outcome", "key_changed")?,
        Done::Deactivated => t.set("outcome", "deactivated")?,
        Done::Response(resp) => {
            t.set("outcome", "response")?;
            t.set("status", resp.status)?;
            t.set("headers", headers_table(lua, &resp.headers)?)?;
            t.set("body", lua.create_string(&resp.body)?)?;
        }
        Done::RenewalInfo(w) => {
            t.set("outcome", "renewal_info")?;
            t.set("start", w.start)?;
            t.set("end", w.end)?;
            t.set("explanation_url", w.explanation_url)?;
            t.set("retry_after", w.retry_after)?;
        }
    }
    Ok(t)
}

/// The next action of `op` as Lua sees it. With deferred signing (the Lua client's setting), an
/// EC signature (tens of µs) is made here and the operation goes on; an RSA one (RSA-4096:
/// about 3 ms) starts on a thread and comes back as `{kind = "sign", job = <job>}`, whose
/// `job:poll()` Lua waits on and hands to `op:signature`.
fn next_action(lua: &Lua, this: &mut LuaOperation, now: f64) -> LuaResult<LuaTable> {
    let mut client = this.client.try_borrow_mut().map_err(LuaError::external)?;
    // Each round feeds a signature in, so the operation moves; the bound is only a backstop.
    for _ in 0..16 {
        let job = match this.op.next_action(&mut client, now) {
            Action::Sign(job) => job,
            other => return action_table(lua, other),
        };
        if !job.key().is_rsa() {
            let sig = job.sign().map_err(|e| e.to_string());
            this.op.handle_signature(&mut client, sig);
            continue;
        }
        match sign_job(move || job.sign()) {
            Ok(thread) => {
                let t = lua.create_table()?;
                t.set("kind", "sign")?;
                t.set("job", thread)?;
                return Ok(t);
            }
            Err(e) => this.op.handle_signature(&mut client, Err(e)),
        }
    }
    action_table(lua, this.op.next_action(&mut client, now))
}

fn action_table(lua: &Lua, action: Action<Done>) -> LuaResult<LuaTable> {
    match action {
        Action::Http(req) => {
            let t = lua.create_table()?;
            t.set("kind", "http")?;
            t.set("method", req.method.as_str())?;
            t.set("url", req.url)?;
            t.set("headers", headers_table(lua, &req.headers)?)?;
            t.set("body", lua.create_string(&req.body)?)?;
            Ok(t)
        }
        Action::Sleep { until } => {
            let t = lua.create_table()?;
            t.set("kind", "sleep")?;
            t.set("until", until)?;
            Ok(t)
        }
        Action::Publish(task) => task_table(lua, "publish", &task),
        Action::Unpublish(task) => task_table(lua, "unpublish", &task),
        Action::Done(done) => outcome_table(lua, done),
        Action::Failed(err) => error_table(lua, &err),
        // Handled by `next_action`; never handed here.
        Action::Sign(_) => Err(LuaError::runtime("a signature job reached action_table")),
    }
}

/// Headers from Lua: a map `name -> value` or `name -> {values...}` (ngx style).
fn response_headers(headers: Option<LuaTable>) -> LuaResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(h) = headers {
        for pair in h.pairs::<String, LuaValue>() {
            let (k, v) = pair?;
            match v {
                LuaValue::String(s) => out.push((k, s.to_str()?.to_string())),
                LuaValue::Table(list) => {
                    for item in list.sequence_values::<String>() {
                        out.push((k.clone(), item?));
                    }
                }
                LuaValue::Integer(i) => out.push((k, i.to_string())),
                LuaValue::Number(n) => out.push((k, n.to_string())),
                _ => {}
            }
        }
    }
    Ok(out)
}

impl LuaUserData for LuaOperation {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method_mut("next", |lua, this, now: f64| next_action(lua, this, now));
        m.add_method_mut(
            "signature",
            |_, this, (sig, err): (Option<LuaString>, Option<String>)| {
                let result = match sig {
                    Some(s) => Ok(s.as_bytes().to_vec()),
                    None => Err(err.unwrap_or_else(|| "no signature".into())),
                };
                let mut client = this.client.try_borrow_mut().map_err(LuaError::external)?;
                this.op.handle_signature(&mut client, result);
                Ok(())
            },
        );
        m.add_method_mut(
            "response",
            |_, this, (status, headers, body, now): (u16, Option<LuaTable>, Option<LuaString>, f64)| {
                let resp = Response {
                    status,
                    headers: response_headers(headers)?,
                    body: body.map(|b| b.as_bytes().to_vec()).unwrap_or_default(),
                };
                let mut client = this.client.try_borrow_mut().map_err(LuaError::external)?;
                this.op.handle_response(&mut client, resp, now);
                Ok(())
            },
        );
        m.add_method_mut("transport_error", |_, this, err: String| {
            let mut client = this.client.try_borrow_mut().map_err(LuaError::external)?;
            this.op.handle_transport_error(&mut client, err);
            Ok(())
        });
        m.add_method_mut("published", |_, this, (ok, err): (bool, Option<String>)| {
            let mut client = this.client.try_borrow_mut().map_err(LuaError::external)?;
            let result = if ok {
                Ok(())
            } else {
                Err(err.unwrap_or_else(|| "unknown error".into()))
            };
            this.op.handle_published(&mut client, result);
            Ok(())
        });
        m.add_method_mut("unpublished", |_, this, ()| {
            let mut client = this.client.try_borrow_mut().map_err(LuaError::external)?;
            this.op.handle_unpublished(&mut client);
            Ok(())
        });
    }
}

impl LuaClient {
    fn operation(&self, op: Operation<Done>) -> LuaOperation {
        LuaOperation {
            op,
            client: Rc::clone(&self.0),
        }
    }
}

fn parse_identifiers(list: &LuaTable) -> LuaResult<Result<Vec<Identifier>, String>> {
    let mut out = Vec::new();
    for name in list.sequence_values::<String>() {
        match Identifier::parse(&name?) {
            Ok(id) => out.push(id),
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    if out.is_empty() {
        return Ok(Err("at least one identifier is needed".into()));
    }
    Ok(Ok(out))
}

fn parse_challenge_types(list: Option<LuaTable>) -> LuaResult<Result<Vec<ChallengeType>, String>> {
    let mut out = Vec::new();
    if let Some(list) = list {
        for name in list.sequence_values::<String>() {
            let name = name?;
            match ChallengeType::parse(&name) {
                Some(t) => out.push(t),
                None => return Ok(Err(format!("unknown challenge type: {name}"))),
            }
        }
    }
    if out.is_empty() {
        out.push(ChallengeType::Http01);
    }
    Ok(Ok(out))
}

impl LuaUserData for LuaClient {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method(
            "set_account_key",
            |_, this, key: LuaUserDataRef<LuaKey>| -> Ret<bool> {
                // A second handle on the same OpenSSL key (a reference count, not a copy of
                // the material): the Lua handle stays usable.
                this.0
                    .try_borrow_mut()
                    .map_err(LuaError::external)?
                    .account_key = Some(key.0.clone());
                Ok(Ok(true))
            },
        );
        m.add_method("account_url", |_, this, ()| {
            Ok(this
                .0
                .try_borrow()
                .map_err(LuaError::external)?
                .account_url
                .clone())
        });
        m.add_method("set_account_url", |_, this, url: Option<String>| {
            this.0
                .try_borrow_mut()
                .map_err(LuaError::external)?
                .account_url = url;
            Ok(())
        });
        m.add_method("thumbprint", |_, this, ()| -> Ret<String> {
            let c = this.0.try_borrow().map_err(LuaError::external)?;
            Ok(match &c.account_key {
                Some(k) => k.thumbprint().map_err(|e| e.to_string()),
                None => Err("account key is not set".into()),
            })
        });
        // The directory as JSON text (nil before it was fetched).
        m.add_method("directory", |_, this, ()| {
            let c = this.0.try_borrow().map_err(LuaError::external)?;
            Ok(c.directory.as_ref().map(|d| d.raw.to_string()))
        });
        m.add_method("op_directory", |_, this, ()| {
            Ok(this.operation(Operation::directory().map(|()| Done::Directory)))
        });
        m.add_method("op_new_nonce", |_, this, ()| {
            Ok(this.operation(Operation::new_nonce().map(Done::Nonce)))
        });
        m.add_method(
            "op_new_account",
            |_, this, conf: LuaTable| -> Ret<LuaOperation> {
                let mut req = NewAccount {
                    terms_of_service_agreed: opt_field::<bool>(&conf, "tos_agreed")?
                        .unwrap_or(true),
                    only_return_existing: opt_field::<bool>(&conf, "only_return_existing")?
                        .unwrap_or(false),
                    ..NewAccount::default()
                };
                if let Some(list) = opt_field::<LuaTable>(&conf, "contact")? {
                    for c in list.sequence_values::<String>() {
                        req.contact.push(c?);
                    }
                }
                let kid = opt_field::<String>(&conf, "eab_kid")?;
                let hmac = opt_field::<LuaString>(&conf, "eab_hmac_key")?;
                match (kid, hmac) {
                    (Some(kid), Some(hmac)) => {
                        req.eab = Some(Eab {
                            kid,
                            hmac_key: hmac.as_bytes().to_vec(),
                        })
                    }
                    (None, None) => {}
                    _ => return Ok(Err("eab_kid and eab_hmac_key must be given together".into())),
                }
                Ok(Ok(
                    this.operation(Operation::new_account(req).map(Done::Account))
                ))
            },
        );
        m.add_method("op_order", |_, this, conf: LuaTable| -> Ret<LuaOperation> {
            let identifiers = match parse_identifiers(&conf.get::<LuaTable>("identifiers")?)? {
                Ok(ids) => ids,
                Err(e) => return Ok(Err(e)),
            };
            let challenge_types = match parse_challenge_types(opt_field(&conf, "challenge_types")?)?
            {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            let csr: LuaString = conf.get("csr")?;
            let req = OrderRequest {
                identifiers,
                challenge_types,
                csr_der: csr.as_bytes().to_vec(),
                preferred_chain: opt_field(&conf, "preferred_chain")?,
                profile: opt_field(&conf, "profile")?,
                replaces: opt_field(&conf, "replaces")?,
                persist_names: match opt_field::<LuaTable>(&conf, "persist_names")? {
                    Some(t) => Some(t.sequence_values::<String>().collect::<LuaResult<_>>()?),
                    None => None,
                },
            };
            Ok(Ok(
                this.operation(Operation::order(req).map(Done::Certificate))
            ))
        });
        m.add_method(
            "op_finalize",
            |_, this, (finalize_url, order_url, csr): (String, String, LuaString)| {
                let op = Operation::finalize(order_url, finalize_url, csr.as_bytes().to_vec());
                Ok(this.operation(op.map(Done::Certificate)))
            },
        );
        // draft-ietf-acme-profiles: true, or nil and why the directory does not offer `profile`.
        m.add_method("check_profile", |_, this, profile: String| -> Ret<bool> {
            let client = this.0.try_borrow().map_err(LuaError::external)?;
            match &client.directory {
                Some(dir) => Ok(dir.check_profile(&profile).map(|()| true)),
                None => Ok(Err("the directory is not known".into())),
            }
        });
        m.add_method(
            "op_revoke",
            |_,
             this,
             (der, reason, key): (LuaString, Option<u32>, Option<LuaUserDataRef<LuaKey>>)| {
                let cert_key = key.map(|k| k.0.clone());
                let op = Operation::revoke(der.as_bytes().to_vec(), reason, cert_key);
                Ok(this.operation(op.map(|()| Done::Revoked)))
            },
        );
        m.add_method("op_key_change", |_, this, key: LuaUserDataRef<LuaKey>| {
            let op = Operation::key_change(key.0.clone());
            Ok(this.operation(op.map(|()| Done::KeyChanged)))
        });
        m.add_method("op_deactivate", |_, this, ()| {
            Ok(this.operation(Operation::deactivate_account().map(|()| Done::Deactivated)))
        });
        m.add_method(
            "op_post",
            |_, this, (url, payload, nonce): (String, Option<String>, Option<String>)| {
                Ok(this.operation(Operation::post(url, payload, nonce).map(Done::Response)))
            },
        );
        m.add_method("op_renewal_info", |_, this, cert_id: String| {
            Ok(this.operation(Operation::renewal_info(cert_id).map(Done::RenewalInfo)))
        });
    }
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "client_new",
        lua.create_function(|_, conf: LuaTable| -> Ret<LuaClient> {
            let mut config = ClientConfig {
                directory_url: conf.get("directory_url")?,
                ..ClientConfig::default()
            };
            if let Some(v) = opt_field::<f64>(&conf, "poll_timeout")? {
                config.poll_timeout = v;
            }
            if let Some(v) = opt_field::<u32>(&conf, "bad_nonce_retries")? {
                config.bad_nonce_retries = v;
            }
            if let Some(v) = opt_field::<usize>(&conf, "max_body")? {
                config.max_body = v;
            }
            if let Some(v) = opt_field::<bool>(&conf, "deferred_signing")? {
                config.deferred_signing = v;
            }
            if config.directory_url.is_empty() {
                return Ok(Err("directory_url is empty".into()));
            }
            Ok(Ok(LuaClient(Rc::new(RefCell::new(Client::new(config))))))
        })?,
    )?;
    // The host-name rule (crate::hostname) for callers outside the handshake path, which use
    // resty_acme_hostname_valid through the FFI.
    t.set(
        "hostname_valid",
        lua.create_function(|_, name: LuaString| Ok(crate::hostname::is_valid(&name.as_bytes())))?,
    )?;
    t.set(
        "identifier_parse",
        lua.create_function(
            |_, name: String| -> LuaResult<(Option<String>, Option<String>)> {
                match Identifier::parse(&name) {
                    Ok(id) => Ok((Some(id.value().into_owned()), Some(id.kind().to_string()))),
                    Err(e) => Ok((None, Some(e.to_string()))),
                }
            },
        )?,
    )?;
    Ok(())
}
