//! Glue for `dns`: DNS UPDATE with TSIG and the queries of the dns-01 propagation check.
//!
//! Lua API (on the `resty.acme.core` table):
//!
//! - `core.tsig_key(name, algorithm, secret_b64)` -> key userdata or `nil, err`;
//!   `algorithm` is `hmac-sha256` or `hmac-sha512`. `tostring(key)` never shows the secret.
//! - `core.dns_query(name, qtype, recursive?)` -> request or `nil, err` (`qtype`: TXT, SOA, NS,
//!   A; random ID, RD clear unless `recursive`).
//! - `core.dns_update{ zone =, ops = { {op = "add", name =, value =, ttl =},
//!   {op = "delete", name =, value = nil|string}, ... }, key = tsig key or nil, now = seconds }`
//!   -> request or `nil, err`. `delete` without `value` removes the whole TXT RRset.
//! - `request:bytes()`, `request:id()`, `request:needs_tcp()` (too large for UDP).
//! - `request:accepts(reply_bytes)` -> `true, truncated` or `false, err`: whether a datagram is
//!   the reply (ID and question match); others are to be ignored.
//! - `request:finish(reply_bytes, now)` -> reply table or `nil, err`. For an update the TSIG
//!   is verified and any RCODE but NOERROR is an error naming the RCODE and TSIG error. The
//!   table: `{ id, rcode = "NOERROR", truncated, authoritative, zone = <SOA owner or nil>,
//!   txt = {<TXT values at the question name>}, answers = {...}, authority = {...} }` with
//!   records as `{ name, type, ttl, data }`.
use super::to_lua;
use crate::dns::{QueryType, Reply, Request, TsigKey, UpdateOp};
use mlua::prelude::*;

type Ret<T> = LuaResult<Result<T, String>>;

pub struct LuaTsigKey(TsigKey);

impl LuaUserData for LuaTsigKey {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("name", |_, k, ()| Ok(k.0.name()));
        m.add_method("algorithm", |_, k, ()| Ok(k.0.algorithm().name()));
        m.add_meta_method(LuaMetaMethod::ToString, |_, k, ()| {
            Ok(format!(
                "tsig key {} ({})",
                k.0.name(),
                k.0.algorithm().name()
            ))
        });
    }
}

pub struct LuaDnsRequest(Request);

fn reply_table(lua: &Lua, reply: &Reply) -> LuaResult<LuaTable> {
    let t = lua.create_table_with_capacity(0, 8)?;
    t.set("id", reply.id)?;
    t.set("rcode", reply.rcode_name())?;
    t.set("truncated", reply.truncated)?;
    t.set("authoritative", reply.authoritative)?;
    t.set("zone", reply.soa_owner())?;
    let txt = match &reply.question {
        Some((name, _)) => reply.txt_values(name),
        None => Vec::new(),
    };
    t.set("txt", lua.create_sequence_from(txt)?)?;
    t.set("answers", to_lua(lua, &reply.answers)?)?;
    t.set("authority", to_lua(lua, &reply.authorities)?)?;
    Ok(t)
}

impl LuaUserData for LuaDnsRequest {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("bytes", |lua, r, ()| lua.create_string(r.0.bytes()));
        m.add_method("id", |_, r, ()| Ok(r.0.id()));
        m.add_method("needs_tcp", |_, r, ()| Ok(r.0.needs_tcp()));
        m.add_method("accepts", |lua, r, reply: LuaString| {
            match r.0.accepts(&reply.as_bytes()) {
                Ok(parsed) => (true, parsed.truncated).into_lua_multi(lua),
                Err(e) => (false, e.to_string()).into_lua_multi(lua),
            }
        });
        m.add_method(
            "finish",
            |lua, r, (reply, now): (LuaString, Option<f64>)| -> Ret<LuaTable> {
                match r.0.finish(&reply.as_bytes(), seconds(now)) {
                    Ok(parsed) => Ok(Ok(reply_table(lua, &parsed)?)),
                    Err(e) => Ok(Err(e.to_string())),
                }
            },
        );
    }
}

/// Lua's clock (ngx.time / ngx.now) as whole seconds; negative or missing is 0.
fn seconds(now: Option<f64>) -> u64 {
    match now {
        Some(t) if t.is_finite() && t > 0.0 => t as u64,
        _ => 0,
    }
}

fn update_ops(ops: &LuaTable) -> Result<Vec<UpdateOp>, String> {
    let mut out = Vec::new();
    for entry in ops.sequence_values::<LuaTable>() {
        let e = entry.map_err(|e| format!("update ops must be tables: {e}"))?;
        let get = |k: &str| -> Result<Option<String>, String> {
            e.get::<Option<String>>(k)
                .map_err(|err| format!("update op field {k}: {err}"))
        };
        let op = get("op")?.unwrap_or_default();
        let name = get("name")?.ok_or("update op without a name")?;
        let value = get("value")?;
        match (op.as_str(), value) {
            ("add", Some(value)) => {
                let ttl = e
                    .get::<Option<u32>>("ttl")
                    .map_err(|err| format!("update op ttl: {err}"))?
                    .unwrap_or(60);
                out.push(UpdateOp::AddTxt { name, value, ttl });
            }
            ("add", None) => return Err("update op add without a value".into()),
            ("delete", Some(value)) => out.push(UpdateOp::DeleteTxt { name, value }),
            ("delete", None) => out.push(UpdateOp::DeleteTxtRrset { name }),
            (other, _) => return Err(format!("unknown update op {other:?} (want add or delete)")),
        }
    }
    Ok(out)
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "tsig_key",
        lua.create_function(
            |_, (name, algorithm, secret): (String, String, String)| -> Ret<LuaTsigKey> {
                Ok(TsigKey::new(&name, &algorithm, &secret)
                    .map(LuaTsigKey)
                    .map_err(|e| e.to_string()))
            },
        )?,
    )?;
    t.set(
        "dns_query",
        lua.create_function(
            |_, (name, qtype, recursive): (String, String, Option<bool>)| -> Ret<LuaDnsRequest> {
                let Some(qt) = QueryType::parse(&qtype) else {
                    return Ok(Err(format!("unsupported query type {qtype:?}")));
                };
                let req = if recursive.unwrap_or(false) {
                    Request::recursive_query(&name, qt)
                } else {
                    Request::query(&name, qt)
                };
                Ok(req.map(LuaDnsRequest).map_err(|e| e.to_string()))
            },
        )?,
    )?;
    t.set(
        "dns_update",
        lua.create_function(|_, opts: LuaTable| -> Ret<LuaDnsRequest> {
            let zone: String = match opts.get::<Option<String>>("zone")? {
                Some(z) => z,
                None => return Ok(Err("dns_update: zone is required".into())),
            };
            let ops = match opts.get::<Option<LuaTable>>("ops")? {
                Some(t) => t,
                None => return Ok(Err("dns_update: ops is required".into())),
            };
            let ops = match update_ops(&ops) {
                Ok(o) => o,
                Err(e) => return Ok(Err(format!("dns_update: {e}"))),
            };
            let key = opts.get::<Option<LuaUserDataRef<LuaTsigKey>>>("key")?;
            let now = seconds(opts.get::<Option<f64>>("now")?);
            let id = crate::dns::random_id();
            Ok(
                Request::update(id, &zone, &ops, key.as_ref().map(|k| &k.0), now)
                    .map(LuaDnsRequest)
                    .map_err(|e| e.to_string()),
            )
        })?,
    )?;
    Ok(())
}
