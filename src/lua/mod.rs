//! mlua glue: the `resty.acme.core` module table. Only conversions live here; the work is done
//! in `crypto`, `acme` and `httpwire`.

mod aws;
mod backoff;
mod client;
mod crypto;
mod dns;
mod exec;
mod ffi;
mod fs;
mod http;
mod peer;
mod persist;
mod psl;

use mlua::prelude::*;
use serde::Serialize;

/// A Rust value as the plain Lua value the modules expect: `None` is nil (not `null`) and
/// sequences get no metatable, as if built field by field.
fn to_lua<T: Serialize + ?Sized>(lua: &Lua, v: &T) -> LuaResult<LuaValue> {
    let opts = LuaSerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    lua.to_value_with(v, opts)
}

/// Builds the module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("_VERSION", env!("CARGO_PKG_VERSION"))?;
    aws::register(lua, &t)?;
    backoff::register(lua, &t)?;
    client::register(lua, &t)?;
    crypto::register(lua, &t)?;
    dns::register(lua, &t)?;
    exec::register(lua, &t)?;
    fs::register(lua, &t)?;
    http::register(lua, &t)?;
    psl::register(lua, &t)?;
    persist::register(lua, &t)?;
    Ok(t)
}
