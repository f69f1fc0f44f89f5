//! Glue for `filestore`: the file storage adapter's atomic, private file operations.
use crate::filestore::FileStore;
use mlua::prelude::*;

type Ret<T> = LuaResult<Result<T, String>>;

struct LuaFileStore(FileStore);

impl LuaUserData for LuaFileStore {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method(
            "get",
            |lua, s, (key, now): (String, f64)| -> LuaResult<(LuaValue, Option<String>)> {
                match s.0.get(&key, now) {
                    Ok(Some(v)) => Ok((LuaValue::String(lua.create_string(v)?), None)),
                    Ok(None) => Ok((LuaValue::Nil, None)),
                    Err(e) => Ok((LuaValue::Nil, Some(e.to_string()))),
                }
            },
        );
        m.add_method(
            "set",
            |_, s, (key, value, ttl, now): (String, LuaString, Option<f64>, f64)| -> Ret<bool> {
                Ok(s.0
                    .set(&key, &value.as_bytes(), ttl, now)
                    .map(|_| true)
                    .map_err(|e| e.to_string()))
            },
        );
        m.add_method(
            "add",
            |_, s, (key, value, ttl, now): (String, LuaString, Option<f64>, f64)| -> Ret<bool> {
                match s.0.add(&key, &value.as_bytes(), ttl, now) {
                    Ok(true) => Ok(Ok(true)),
                    Ok(false) => Ok(Err("exists".into())),
                    Err(e) => Ok(Err(e.to_string())),
                }
            },
        );
        m.add_method(
            "compare_and_set",
            |_,
             s,
             (key, expected, value, ttl, now): (String, LuaString, LuaString, Option<f64>, f64)|
             -> Ret<bool> {
                Ok(s.0
                    .compare_and_set(&key, &expected.as_bytes(), &value.as_bytes(), ttl, now)
                    .map_err(|e| e.to_string()))
            },
        );
        m.add_method(
            "compare_and_delete",
            |_, s, (key, expected, now): (String, LuaString, f64)| -> Ret<bool> {
                Ok(s.0
                    .compare_and_delete(&key, &expected.as_bytes(), now)
                    .map_err(|e| e.to_string()))
            },
        );
        m.add_method("delete", |_, s, key: String| -> Ret<bool> {
            Ok(s.0.delete(&key).map(|_| true).map_err(|e| e.to_string()))
        });
        m.add_method("list", |lua, s, prefix: String| -> Ret<LuaTable> {
            match s.0.list(&prefix) {
                Ok(keys) => Ok(Ok(lua.create_sequence_from(keys)?)),
                Err(e) => Ok(Err(e.to_string())),
            }
        });
    }
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "file_store",
        lua.create_function(|_, dir: String| Ok(LuaFileStore(FileStore::new(dir))))?,
    )?;
    Ok(())
}
