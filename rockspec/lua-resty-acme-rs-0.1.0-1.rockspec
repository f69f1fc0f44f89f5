-- lua-resty-acme-rs: ACME v2 client for OpenResty/nginx with a Rust core.
--
-- Builds offline: no LuaRocks dependencies (lua-resty-core, lua-resty-lrucache, lua-cjson come
-- from the system, e.g. Debian packages). `cargo build --release` compiles the native module,
-- then `make rock-install` puts it at $(LIBDIR)/resty/acme/core.so and every file under lua/
-- at $(LUADIR)/... Usage from the repository root:
--
--   luarocks --lua-version=5.1 make rockspec/lua-resty-acme-rs-0.1.0-1.rockspec [--tree DIR]
--
-- With the default tree (/usr/local) the files land in /usr/local/lib/lua/5.1 and
-- /usr/local/share/lua/5.1, which are on nginx's default package.cpath / package.path.
rockspec_format = "3.0"
package = "lua-resty-acme-rs"
version = "0.1.0-1"

source = {
  url = "git+https://github.com/lua-resty-acme-rs/lua-resty-acme-rs.git",
  tag = "v0.1.0",
}

description = {
  summary = "Automatic TLS certificates from ACME v2 CAs inside nginx, with a Rust core",
  detailed = [[
A drop-in replacement for lua-resty-acme: the same Lua modules (resty.acme.*) backed by a native
module (resty.acme.core) written in Rust that does the cryptography and the RFC 8555 protocol.
Needs cargo/rustc, OpenSSL development headers and pkg-config to build.
]],
  license = "BSD-2-Clause",
  labels = { "acme", "letsencrypt", "nginx", "openresty", "tls" },
}

dependencies = {
  "lua >= 5.1, < 5.2",
}

build = {
  type = "make",
  makefile = "Makefile",
  build_target = "rock-build",
  install_target = "rock-install",
  -- passed so luarocks does not warn; the Makefile keeps them away from cargo
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
  },
  install_variables = {
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
}
