//! Glue for `psl`: the public suffix list.
//!
//! Lua API (on the `resty.acme.core` table):
//!
//! - `core.public_suffix_list(path)` -> list userdata or `nil, err` (reads and parses the
//!   file once; keep the userdata).
//! - `list:registered_domain(name)` -> the registered domain (`example.co.uk` for
//!   `www.example.co.uk`) or `nil` when `name` is itself a public suffix.
//! - `list:public_suffix(name)` -> the public suffix of `name`.
//! - `list:len()` -> number of rules.
use crate::psl::PublicSuffixList;
use mlua::prelude::*;

type Ret<T> = LuaResult<Result<T, String>>;

struct LuaPsl(PublicSuffixList);

impl LuaUserData for LuaPsl {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("registered_domain", |_, p, name: LuaString| {
            let name = name.to_str()?.to_ascii_lowercase();
            Ok(p.0.registered_domain(&name).map(str::to_string))
        });
        m.add_method("public_suffix", |_, p, name: LuaString| {
            let name = name.to_str()?.to_ascii_lowercase();
            Ok(p.0.public_suffix(&name).to_string())
        });
        m.add_method("len", |_, p, ()| Ok(p.0.len()));
    }
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "public_suffix_list",
        lua.create_function(|_, path: String| -> Ret<LuaPsl> {
            Ok(PublicSuffixList::from_file(&path)
                .map(LuaPsl)
                .map_err(|e| e.to_string()))
        })?,
    )?;
    Ok(())
}
