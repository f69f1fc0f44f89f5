"""The calls into the host (lua-nginx-module through the FFI) are the ones the running version
defines, on Debian's nginx 1.22 (lua-nginx-module 0.10.23, lua-resty-core 0.1.25) and on
OpenResty 1.29 (0.10.30, 0.1.33): chosen at load, used in the handshake, never the fallback."""

import json
import os

from harness import TestCA, free_port, platform, tls_peer_cert

# In the certificate phase: which call reads the SSL*, that it returns one, and that the core's
# one-call install works through it (the served leaf is the one installed there).
PROBE = r"""
    ssl_certificate_by_lua_block {
      local tls_cert = require("resty.acme.tls_cert")
      local ssl = require("ngx.ssl")
      local ptr, perr = tls_cert.ssl_pointer()
      local f = assert(io.open("%(leaf)s")) local leaf = f:read("*a") f:close()
      f = assert(io.open("%(key)s")) local key = f:read("*a") f:close()
      local cert = assert(ssl.parse_pem_cert(leaf))
      local pkey = assert(ssl.parse_pem_priv_key(key))
      local rc, ierr
      if ptr then
        local errmsg = require("ffi").new("const char *[1]")
        rc = tls_cert.lib.resty_acme_ssl_set_certkey(ptr, cert, pkey, 1, errmsg)
        if rc ~= 0 then ierr = require("ffi").string(errmsg[0]) end
      end
      ngx.log(ngx.NOTICE, "t: probe ", require("cjson").encode({
        impl = tls_cert.ssl_pointer_impl, native = tls_cert.native,
        native_error = tls_cert.native_error, subsystem = tls_cert.subsystem,
        ptr = ptr ~= nil, perr = perr, rc = rc, ierr = ierr,
        lua_version = ngx.config.ngx_lua_version,
      }), " t:end")
    }
"""


def expected_impl(subsystem):
    """What tls_cert must choose here: lua-resty-core's wrapper where it exists (0.1.29+),
    else the module's function declared with its own arity."""
    if platform.name() == "openresty":
        return "ngx.ssl.get_req_ssl_pointer"
    return "ngx_%s_lua_ffi_get_req_ssl_pointer (r)" % subsystem


def probes(nginx):
    out = []
    text = nginx.error_log()
    for chunk in text.split("t: probe ")[1:]:
        out.append(json.loads(chunk.split(" t:end", 1)[0]))
    return out


def check_probe(n, port, subsystem):
    """The probe certificate is served on `port`, and the one probe of `subsystem` found the
    running version's native call (pointer, rc 0), with no signal in the error.log."""
    cert = tls_peer_cert(port, "probe.example.test")
    assert "probe.example.test" in cert.subject.rfc4514_string()
    (p,) = probes(n)
    assert p["subsystem"] == subsystem
    assert p["native"] is True, p
    assert p["impl"] == expected_impl(subsystem), p
    assert p["ptr"] is True and p["rc"] == 0, p
    assert "signal" not in n.error_log()


def test_http_ssl_pointer_is_the_running_versions_call(workdir, nginx_factory):
    ca = TestCA(str(workdir / "ca"))
    leaf, key = ca.issue(["probe.example.test"], "probe")
    port = free_port()
    body = """
    server {
      listen 127.0.0.1:%d ssl;
      ssl_certificate %s;
      ssl_certificate_key %s;
      %s
      return 200 "ok";
    }""" % (port, ca.cert_pem, ca.key_pem, PROBE % {"leaf": leaf, "key": key})
    n = nginx_factory(body, http_ports=[port])
    check_probe(n, port, "http")


def test_stream_ssl_pointer_is_the_running_versions_call(workdir, nginx_factory):
    import pytest
    if not platform.has_stream_lua():
        pytest.skip("Debian 12 packages no stream-lua-nginx-module (OPENRESTY=<prefix> has it)")
    ca = TestCA(str(workdir / "ca"))
    leaf, key = ca.issue(["probe.example.test"], "probe")
    port = free_port()
    from harness import lua_package_cpath, lua_package_path
    stream = """
    lua_package_path "%s";
    lua_package_cpath "%s";
    server {
      listen 127.0.0.1:%d ssl;
      ssl_certificate %s;
      ssl_certificate_key %s;
      %s
      return "ok";
    }""" % (lua_package_path(), lua_package_cpath(), port, ca.cert_pem, ca.key_pem,
            PROBE % {"leaf": leaf, "key": key})
    n = nginx_factory("", http_ports=[port], stream=stream)
    check_probe(n, port, "stream")
    assert os.path.exists(n.error_log_path)
