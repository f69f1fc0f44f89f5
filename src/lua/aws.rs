//! Glue for `aws` (SigV4 request signing, for the route53 dns provider).
//!
//! Lua API (on the `resty.acme.core` table):
//!
//! - `core.aws_sign{ method =, host =, path =, query = { name = value, ... }, headers = {
//!   name = value }, payload = string, region =, service =, amz_date = "YYYYMMDDTHHMMSSZ",
//!   access_key_id =, secret_access_key =, session_token = }` -> `{ name = value }` (the
//!   headers to add: x-amz-date, authorization, x-amz-security-token) and the canonical query
//!   string to send, or `nil, err`.
use crate::aws::{canonical_query, sign, Credentials, SignRequest};
use mlua::prelude::*;

fn pairs(t: Option<LuaTable>) -> LuaResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(t) = t {
        for kv in t.pairs::<String, String>() {
            out.push(kv?);
        }
    }
    Ok(out)
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "aws_sign",
        lua.create_function(|lua, spec: LuaTable| -> LuaResult<(LuaValue, LuaValue)> {
            let text = |k: &str| -> LuaResult<String> {
                Ok(spec.get::<Option<String>>(k)?.unwrap_or_default())
            };
            let creds = Credentials {
                access_key_id: text("access_key_id")?,
                secret_access_key: text("secret_access_key")?,
                session_token: spec.get::<Option<String>>("session_token")?,
            };
            let query = pairs(spec.get("query")?)?;
            let headers = pairs(spec.get("headers")?)?;
            let payload: Option<LuaString> = spec.get("payload")?;
            let payload = payload.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
            let (method, host, path) = (text("method")?, text("host")?, text("path")?);
            let (region, service, amz_date) =
                (text("region")?, text("service")?, text("amz_date")?);
            let req = SignRequest {
                method: &method,
                host: &host,
                path: &path,
                query: &query,
                headers: &headers,
                payload: &payload,
                region: &region,
                service: &service,
                amz_date: &amz_date,
            };
            match sign(&creds, &req) {
                Ok(out) => {
                    let h = lua.create_table()?;
                    for (k, v) in out {
                        h.set(k, v)?;
                    }
                    let q = lua.create_string(canonical_query(&query))?;
                    Ok((LuaValue::Table(h), LuaValue::String(q)))
                }
                Err(e) => Ok((LuaValue::Nil, LuaValue::String(lua.create_string(e)?))),
            }
        })?,
    )?;
    Ok(())
}
