//! Glue for `httpwire`: request encoding and the incremental response parser.
use mlua::prelude::*;

pub fn register(_lua: &Lua, _t: &LuaTable) -> LuaResult<()> {
    Ok(())
}
