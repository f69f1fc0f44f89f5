//! lua-resty-acme-rs: the native core of a drop-in replacement for lua-resty-acme.
//!
//! `crypto` (keys, JWS, CSRs, certificates) and `tls` (serving handshakes) are the only places
//! that touch openssl, `acme` is the sans-I/O protocol,
//! `httpwire` frames HTTP/1.1 for the Lua cosocket transport, `blocking` drives the core
//! with ureq outside nginx, and `lua` is the mlua glue behind `require("resty.acme.core")`.

pub mod acme;
pub mod aws;
pub mod blocking;
pub mod cpu_slot;
pub mod crypto;
pub mod dns;
pub mod filestore;
pub mod hostname;
pub mod httpwire;
mod lua;
#[cfg(test)]
mod proptests;
pub mod psl;
pub mod tls;

/// Entry point of `require("resty.acme.core")` (`luaopen_resty_acme_core`).
#[mlua::lua_module(name = "resty_acme_core")]
fn luaopen(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua::module(lua)
}
