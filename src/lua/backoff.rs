//! Glue for `acme::backoff`: the cause of a failed order and the time of its next try.
//!
//! Lua API (on the `resty.acme.core` table):
//!
//! - `core.backoff_classify(category, problem_type, status, text)` -> `"transient"`,
//!   `"validation"`, `"rate_limited"` or `"permanent"` (`category` as in the error tables of
//!   operations; the others may be nil).
//! - `core.backoff_next(t)` -> the Unix time of the next try, or `nil` (do not try by itself).
//!   `t = { cause =, attempts =, validation_failures = { time, ... }, retry_after =, now =,
//!   seed =, base =, cap =, jitter =, validation_max =, validation_window = }`; the knobs
//!   default to `acme::backoff::Policy::default()`.
use crate::acme::backoff::{classify, next_try, Cause, Policy};
use mlua::prelude::*;

type Ret<T> = LuaResult<Result<T, String>>;

fn opt<T: FromLua>(t: &LuaTable, k: &str) -> LuaResult<Option<T>> {
    t.get::<Option<T>>(k)
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "backoff_classify",
        lua.create_function(
            |_,
             (category, problem_type, status, text): (
                Option<String>,
                Option<String>,
                Option<u16>,
                Option<String>,
            )| {
                Ok(classify(
                    category.as_deref().unwrap_or(""),
                    problem_type.as_deref(),
                    status.unwrap_or(0),
                    text.as_deref().unwrap_or(""),
                )
                .as_str())
            },
        )?,
    )?;
    t.set(
        "backoff_next",
        lua.create_function(|_, conf: LuaTable| -> Ret<Option<f64>> {
            let name: String = conf.get("cause")?;
            let Some(cause) = Cause::parse(&name) else {
                return Ok(Err(format!("unknown backoff cause: {name}")));
            };
            let d = Policy::default();
            let policy = Policy {
                base: opt(&conf, "base")?.unwrap_or(d.base),
                cap: opt(&conf, "cap")?.unwrap_or(d.cap),
                jitter: opt(&conf, "jitter")?.unwrap_or(d.jitter),
                validation_max: opt(&conf, "validation_max")?.unwrap_or(d.validation_max),
                validation_window: opt(&conf, "validation_window")?.unwrap_or(d.validation_window),
            };
            let fails: Vec<f64> =
                opt::<Vec<f64>>(&conf, "validation_failures")?.unwrap_or_default();
            let now: f64 = conf.get("now")?;
            let seed = opt::<f64>(&conf, "seed")?.unwrap_or(0.0).abs() as u64;
            Ok(Ok(next_try(
                &policy,
                cause,
                opt(&conf, "attempts")?.unwrap_or(1),
                &fails,
                opt(&conf, "retry_after")?,
                now,
                seed,
            )))
        })?,
    )?;
    Ok(())
}
