//! mlua glue: the `resty.acme.core` module table. Only conversions live here; the work is done
//! in `crypto`, `acme` and `httpwire`.

mod http;

use mlua::prelude::*;

/// Builds the module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("_VERSION", env!("CARGO_PKG_VERSION"))?;
    http::register(lua, &t)?;
    Ok(t)
}
