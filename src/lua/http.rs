//! Glue for `httpwire`: URL splitting, request encoding and the incremental response parser.
//!
//! Lua API (all on the `resty.acme.core` table):
//!
//! - `core.http_target(url)` -> `{scheme, host, port, path, authority, connect_host,
//!   host_port, is_ip}` or `nil, err`.
//! - `core.http_request(method, url, headers?, body?)` -> request bytes (string) or `nil, err`.
//!   `headers` maps names to a string (or number), or to an array of strings for a repeated
//!   header; they are sent sorted by name.
//! - `core.http_parser(is_head, max_body?, max_header_bytes?)` -> parser userdata with
//!   `parser:feed(bytes)` -> `true` (complete) / `false` (need more) or `nil, err`;
//!   `parser:eof()` -> `true` or `nil, err`;
//!   `parser:response()` -> `status, headers, body, header_list` or `nil, err` when incomplete;
//!   `parser:keepalive()` -> boolean.
//!
//! Response headers: `headers` maps lower-cased names to the value string, repeated fields
//! joined with `", "` (RFC 9110 section 5.3); lookups through it are case-insensitive and treat
//! `_` as `-` (like lua-resty-http), so `headers["Replay-Nonce"]` works. `header_list` is an
//! array of `{name, value}` pairs in received order with names as received, for fields whose
//! repetitions must stay apart (e.g. several `Link` fields).
//!
//! Expected failures come back as `nil, err`; only misuse (wrong argument types) raises.

use crate::acme::Response;
use crate::httpwire::{
    encode_request, HttpError, Progress, ResponseParser, Target, DEFAULT_MAX_HEADER_BYTES,
    USER_AGENT,
};
use mlua::prelude::*;

/// Default response body limit when Lua gives none (1 MiB).
const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Registry key of the shared metatable of response header tables.
const HEADERS_MT: &str = "resty.acme.core.http_headers_mt";

/// `Ok(v)` -> `v`; `Err(e)` -> `nil, e`.
fn nil_err<T: IntoLua>(lua: &Lua, r: Result<T, HttpError>) -> LuaResult<LuaMultiValue> {
    match r {
        Ok(v) => v.into_lua_multi(lua),
        Err(e) => (LuaNil, e.to_string()).into_lua_multi(lua),
    }
}

fn target_table(lua: &Lua, t: &Target) -> LuaResult<LuaTable> {
    let tbl = lua.create_table_with_capacity(0, 8)?;
    tbl.set("scheme", t.scheme.as_str())?;
    tbl.set("host", t.host.as_str())?;
    tbl.set("port", t.port)?;
    tbl.set("path", t.path_and_query.as_str())?;
    tbl.set("authority", t.authority.as_str())?;
    tbl.set("connect_host", t.connect_host())?;
    tbl.set("host_port", t.host_port())?;
    tbl.set("is_ip", t.is_ip_literal())?;
    Ok(tbl)
}

/// Reads the Lua request headers table: name -> string | number | array of strings.
fn headers_from_lua(lua: &Lua, headers: Option<LuaTable>) -> LuaResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    let Some(headers) = headers else {
        return Ok(out);
    };
    for pair in headers.pairs::<LuaString, LuaValue>() {
        let (name, value) = pair?;
        let name = name.to_str()?.to_string();
        match value {
            LuaValue::Table(list) => {
                for v in list.sequence_values::<LuaString>() {
                    out.push((name.clone(), v?.to_str()?.to_string()));
                }
            }
            other => {
                let v = LuaString::from_lua(other, lua)?;
                out.push((name, v.to_str()?.to_string()));
            }
        }
    }
    // Lua tables have no order; sort for reproducible bytes (stable: repeated values keep
    // their array order).
    out.sort_by_key(|a| a.0.to_ascii_lowercase());
    Ok(out)
}

/// The shared metatable making header lookups case-insensitive.
fn headers_metatable(lua: &Lua) -> LuaResult<LuaTable> {
    if let Ok(mt) = lua.named_registry_value::<LuaTable>(HEADERS_MT) {
        return Ok(mt);
    }
    let mt = lua.create_table()?;
    let index = lua.create_function(|_, (t, k): (LuaTable, LuaValue)| match k {
        LuaValue::String(s) => {
            let key = s.to_string_lossy().to_ascii_lowercase().replace('_', "-");
            t.raw_get::<LuaValue>(key)
        }
        _ => Ok(LuaNil),
    })?;
    mt.set("__index", index)?;
    lua.set_named_registry_value(HEADERS_MT, &mt)?;
    Ok(mt)
}

/// Builds `headers` (joined, case-insensitive) and `header_list` for a response.
fn response_headers(lua: &Lua, resp: &Response) -> LuaResult<(LuaTable, LuaTable)> {
    let map = lua.create_table_with_capacity(0, resp.headers.len())?;
    let list = lua.create_table_with_capacity(resp.headers.len(), 0)?;
    for (i, (name, value)) in resp.headers.iter().enumerate() {
        let key = name.to_ascii_lowercase();
        let joined = match map.raw_get::<Option<LuaString>>(key.as_str())? {
            Some(prev) => format!("{}, {value}", prev.to_string_lossy()),
            None => value.clone(),
        };
        map.raw_set(key, joined)?;
        let pair = lua.create_table_with_capacity(2, 0)?;
        pair.raw_seti(1, name.as_str())?;
        pair.raw_seti(2, value.as_str())?;
        list.raw_seti(i + 1, pair)?;
    }
    map.set_metatable(Some(headers_metatable(lua)?))?;
    Ok((map, list))
}

/// The response parser userdata.
struct HttpParser(ResponseParser);

impl LuaUserData for HttpParser {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("feed", |lua, this, bytes: LuaString| {
            let r = this.0.feed(&bytes.as_bytes());
            nil_err(lua, r.map(|p| p == Progress::Complete))
        });
        methods.add_method_mut("eof", |lua, this, ()| {
            nil_err(lua, this.0.eof().map(|()| true))
        });
        methods.add_method("keepalive", |_, this, ()| Ok(this.0.keepalive_ok()));
        methods.add_method("response", |lua, this, ()| {
            let Some(resp) = this.0.response() else {
                return (LuaNil, HttpError::Incomplete.to_string()).into_lua_multi(lua);
            };
            let (headers, list) = response_headers(lua, resp)?;
            (resp.status, headers, lua.create_string(&resp.body)?, list).into_lua_multi(lua)
        });
    }
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "http_target",
        lua.create_function(|lua, url: LuaString| {
            let r = Target::parse(&url.to_string_lossy());
            match r {
                Ok(target) => target_table(lua, &target)?.into_lua_multi(lua),
                Err(e) => (LuaNil, e.to_string()).into_lua_multi(lua),
            }
        })?,
    )?;
    t.set(
        "http_request",
        lua.create_function(
            |lua,
             (method, url, headers, body): (
                LuaString,
                LuaString,
                Option<LuaTable>,
                Option<LuaString>,
            )| {
                let headers = headers_from_lua(lua, headers)?;
                let r = Target::parse(&url.to_string_lossy()).and_then(|target| {
                    let body = body.as_ref().map(|b| b.as_bytes());
                    let body: &[u8] = body.as_deref().unwrap_or(b"");
                    encode_request(
                        &method.to_string_lossy(),
                        &target,
                        &headers,
                        body,
                        USER_AGENT,
                    )
                });
                match r {
                    Ok(bytes) => lua.create_string(bytes)?.into_lua_multi(lua),
                    Err(e) => (LuaNil, e.to_string()).into_lua_multi(lua),
                }
            },
        )?,
    )?;
    t.set(
        "http_parser",
        lua.create_function(
            |lua, (is_head, max_body, max_header): (bool, Option<usize>, Option<usize>)| {
                let parser = ResponseParser::new(
                    is_head,
                    max_body.unwrap_or(DEFAULT_MAX_BODY),
                    max_header.unwrap_or(DEFAULT_MAX_HEADER_BYTES),
                );
                lua.create_userdata(HttpParser(parser))
            },
        )?,
    )?;
    t.set("http_user_agent", USER_AGENT)?;
    Ok(())
}
