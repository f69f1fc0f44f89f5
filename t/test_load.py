"""The cdylib loads as require("resty.acme.core") in every nginx phase the library uses."""

import re

from harness import REPO, TestCA, free_port, http_get, tls_peer_cert


def _crate_version():
    with open(REPO + "/Cargo.toml") as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


CONF = r"""
init_by_lua_block {
    local core = require("resty.acme.core")
    ngx.log(ngx.NOTICE, "core loaded init ", core._VERSION)
}
init_worker_by_lua_block {
    local core = require("resty.acme.core")
    ngx.log(ngx.NOTICE, "core loaded init_worker ", core._VERSION)
}
server {
    listen 127.0.0.1:%(http)d;
    location = /version {
        content_by_lua_block {
            local core = require("resty.acme.core")
            ngx.log(ngx.NOTICE, "core loaded content ", core._VERSION)
            ngx.say(core._VERSION)
        }
    }
    location = /same {
        content_by_lua_block {
            ngx.say(tostring(package.loaded["resty.acme.core"] == require("resty.acme.core")))
        }
    }
}
server {
    listen 127.0.0.1:%(https)d ssl;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_certificate_by_lua_block {
        local core = require("resty.acme.core")
        local ssl = require("ngx.ssl")
        ngx.log(ngx.NOTICE, "core loaded ssl_certificate ", core._VERSION,
                " sni=", tostring(ssl.server_name()))
    }
    location / { return 200 "tls ok"; }
}
"""


def test_core_loads_in_all_phases(workdir, nginx_factory, core_so):
    ca = TestCA(workdir / "ca")
    fb_cert, fb_key = ca.issue(["fallback.invalid"], "fallback")
    ports = {"http": free_port(), "https": free_port()}
    n = nginx_factory(CONF % dict(ports, cert=fb_cert, key=fb_key),
                      http_ports=list(ports.values()))
    version = _crate_version()

    n.wait_log(r"core loaded init %s" % re.escape(version))
    n.wait_log(r"core loaded init_worker %s" % re.escape(version))

    status, _, body = http_get("http://127.0.0.1:%d/version" % ports["http"])
    assert (status, body.decode().strip()) == (200, version)
    n.wait_log(r"core loaded content %s" % re.escape(version))

    status, _, body = http_get("http://127.0.0.1:%d/same" % ports["http"])
    assert body.strip() == b"true"

    cert = tls_peer_cert(ports["https"], "load.example.test")
    assert cert.subject.rfc4514_string() == "CN=fallback.invalid"
    n.wait_log(r"core loaded ssl_certificate %s sni=load\.example\.test" % re.escape(version))

    status, _, body = http_get("https://127.0.0.1:%d/" % ports["https"],
                               server_hostname="load.example.test")
    assert (status, body) == (200, b"tls ok")
    assert "[error]" not in n.error_log()
    assert "[alert]" not in n.error_log()


def test_core_loads_with_several_workers(workdir, nginx_factory, core_so):
    port = free_port()
    n = nginx_factory("""
        init_worker_by_lua_block {
            local core = require("resty.acme.core")
            ngx.log(ngx.NOTICE, "worker ", ngx.worker.id(), " core ", core._VERSION)
        }
        server {
            listen 127.0.0.1:%d;
            location / { content_by_lua_block { ngx.say(require("resty.acme.core")._VERSION) } }
        }""" % port, http_ports=[port], worker_processes=2)
    n.wait_log(r"worker 0 core ")
    n.wait_log(r"worker 1 core ")
    for _ in range(4):
        status, _, _ = http_get("http://127.0.0.1:%d/" % port)
        assert status == 200
    n.reload()
    status, _, _ = http_get("http://127.0.0.1:%d/" % port)
    assert status == 200
    assert "[alert]" not in n.error_log()
