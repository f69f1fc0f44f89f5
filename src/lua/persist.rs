//! Glue for `acme::persist` (dns-persist-01).
//!
//! Lua API (on the `resty.acme.core` table):
//!
//! - `core.dns_persist_name(name)` -> `"_validation-persist.<base name>"`.
//! - `core.dns_persist_value{ issuer =, account_uri =, wildcard = bool, persist_until = n|nil }`
//!   -> the TXT value or `nil, err`.
//! - `core.dns_persist_check(txts, issuers, { issuer =, account_uri =, wildcard =,
//!   persist_until = }, now)` -> `true` or `nil, reason`: whether one of the TXT strings
//!   authorizes the account (the checks the CA makes).
use crate::acme::persist::{self, PersistRecord};
use mlua::prelude::*;

type Ret<T> = LuaResult<Result<T, String>>;

fn record(spec: &LuaTable) -> LuaResult<Result<PersistRecord, String>> {
    let issuer: Option<String> = spec.get("issuer")?;
    let account: Option<String> = spec.get("account_uri")?;
    let wildcard: Option<bool> = spec.get("wildcard")?;
    let until: Option<f64> = spec.get("persist_until")?;
    let (Some(issuer), Some(account)) = (issuer, account) else {
        return Ok(Err("issuer and account_uri are required".into()));
    };
    if let Some(u) = until {
        if u.fract() != 0.0 || !(0.0..=9.0e15).contains(&u) {
            return Ok(Err(format!("persist_until {u} is not a unix time")));
        }
    }
    // The range was checked above: the cast is exact.
    let until = until.map(|u| u as i64);
    Ok(PersistRecord::new(
        &issuer,
        &account,
        wildcard.unwrap_or(false),
        until,
    ))
}

fn strings(t: &LuaTable) -> LuaResult<Vec<String>> {
    t.sequence_values::<String>().collect()
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "dns_persist_name",
        lua.create_function(|_, name: String| Ok(persist::record_name(&name)))?,
    )?;
    t.set(
        "dns_persist_value",
        lua.create_function(|_, spec: LuaTable| -> Ret<String> {
            Ok(record(&spec)?.map(|r| r.value()))
        })?,
    )?;
    t.set(
        "dns_persist_check",
        lua.create_function(
            |_, (txts, issuers, spec, now): (LuaTable, LuaTable, LuaTable, f64)| -> Ret<bool> {
                let want = match record(&spec)? {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
                let txts = strings(&txts)?;
                let issuers = strings(&issuers)?;
                // Seconds since the epoch fit an i64; the fraction does not matter here.
                let now = now.floor() as i64;
                Ok(persist::check(&txts, &issuers, &want, now).map(|()| true))
            },
        )?,
    )?;
    Ok(())
}
