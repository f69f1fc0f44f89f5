"""Security properties proved end to end: TLS peer names (every TLS connection the library
opens checks the peer's name: a DNS name against the certificate's DNS SANs, an IP literal
against its IP SANs, an explicit server name honoured; ``tls_verify = false`` the only way
out, with a warning), hostile SNIs, and no secret in any log line.

Run: python3 -m pytest -x -p no:cacheprovider t/test_security.py
"""

import json
import os
import urllib.request

import pytest

from harness import Redis, StorageNginx, TestCA, free_port
from fakes.consul import FakeConsul
from fakes.vault import FakeVault

TOKEN = "hvs.security-test-token-2f9c"


@pytest.fixture
def ca(workdir):
    return TestCA(os.path.join(str(workdir), "ca"))


def _vault(ca, names=(), ips=(), prefix="vault"):
    cert, key = ca.issue(list(names), prefix, ips=list(ips))
    return FakeVault(token=TOKEN, mounts={"acme": 2}, tls=(cert, key)).start()


def _store_nginx(workdir, ca, stores, name="storage-nginx"):
    return StorageNginx(workdir, stores, trusted_ca=ca.ca_pem, name=name).start()


# ---------------------------------------------------------------- TLS peer names


def test_vault_ip_host_refuses_a_certificate_for_another_name(workdir, ca, core_so):
    # the issue's case: a trusted CA's certificate for other.example on 127.0.0.1
    v = _vault(ca, names=["other.example"])
    try:
        n = _store_nginx(workdir, ca, {
            "default": {"adapter": "vault", "conf": {"port": v.port, "https": True,
                                                      "token": TOKEN}},
            "explicit_ip": {"adapter": "vault", "conf": {
                "port": v.port, "https": True, "token": TOKEN, "tls_verify": True,
                "host": "127.0.0.1", "tls_server_name": "127.0.0.1"}},
        })
        for name in ("default", "explicit_ip"):
            err = n.store(name).set("k", "v")
            assert err is not None, name
            # the original's wording, which its callers match, and nginx's cause
            assert err.startswith("unable to SSL handshake with vault server: "), err
            assert "certificate host mismatch" in err, err
            assert n.store(name).get("k")[1].startswith("unable to SSL handshake"), name
        # the token never left nginx
        assert v.requests == []
        assert TOKEN not in n.nginx.error_log()
    finally:
        v.stop()


def test_vault_ip_host_accepts_its_ip_san_and_honours_tls_server_name(workdir, ca, core_so):
    by_ip = _vault(ca, names=["unrelated.example"], ips=["127.0.0.1"], prefix="byip")
    by_name = _vault(ca, names=["vault.example.test"], prefix="byname")
    try:
        n = _store_nginx(workdir, ca, {
            "ip": {"adapter": "vault", "conf": {"port": by_ip.port, "https": True,
                                                 "token": TOKEN}},
            "name": {"adapter": "vault", "conf": {"port": by_name.port, "https": True,
                                                   "token": TOKEN,
                                                   "tls_server_name": "vault.example.test"}},
            "wrong_name": {"adapter": "vault", "conf": {"port": by_name.port, "https": True,
                                                         "token": TOKEN,
                                                         "tls_server_name": "other.example"}},
            "noverify": {"adapter": "vault", "conf": {"port": by_name.port, "https": True,
                                                       "token": TOKEN, "tls_verify": False}},
        })
        assert n.store("ip").set("k", "by ip") is None
        assert n.store("ip").get("k") == ("by ip", None)
        # an IP literal sends no SNI (RFC 6066 section 3)
        assert {r.sni for r in by_ip.requests} == {None}
        assert n.store("name").set("k", "by name") is None
        assert n.store("name").get("k") == ("by name", None)
        assert {r.sni for r in by_name.requests} == {"vault.example.test"}
        assert {{k.lower(): v for k, v in r.headers.items()}.get("host") for r in by_name.requests} == {"vault.example.test"}
        count = len(by_name.requests)
        err = n.store("wrong_name").set("k", "x")
        assert err and err.startswith("unable to SSL handshake with vault server: "), err
        assert "certificate host mismatch" in err, err
        assert len(by_name.requests) == count
        # tls_verify = false is the only way out, and it is said at start
        assert n.store("noverify").get("k") == ("by name", None)
        assert "TLS certificate verification is disabled" in n.nginx.error_log()
    finally:
        by_ip.stop()
        by_name.stop()


def test_vault_untrusted_certificate_keeps_the_original_error(workdir, ca, core_so):
    other = TestCA(os.path.join(str(workdir), "other-ca"))
    cert, key = other.issue(["localhost"], "untrusted", ips=["127.0.0.1"])
    v = FakeVault(token=TOKEN, mounts={"acme": 2}, tls=(cert, key)).start()
    try:
        n = _store_nginx(workdir, ca, {"s": {"adapter": "vault", "conf": {
            "port": v.port, "https": True, "token": TOKEN}}})
        err = n.store("s").set("k", "v")
        assert err and err.startswith("unable to SSL handshake with vault server: "), err
        assert v.requests == []
    finally:
        v.stop()


def test_consul_etcd_redis_ip_hosts_check_the_name(workdir, ca, core_so):
    wrong = ca.issue(["other.example"], "wrong")
    right = ca.issue(["other.example"], "right", ips=["127.0.0.1"])
    c_wrong = FakeConsul(tls=wrong).start()
    c_right = FakeConsul(tls=right).start()
    r = Redis(workdir, tls_ca=ca, tls_cert=wrong).start()
    try:
        n = _store_nginx(workdir, ca, {
            "consul_wrong": {"adapter": "consul", "conf": {"port": c_wrong.port,
                                                            "https": True}},
            "consul_right": {"adapter": "consul", "conf": {"port": c_right.port,
                                                            "https": True}},
            "etcd_wrong": {"adapter": "etcd", "conf": {
                "http_host": "https://127.0.0.1:%d" % c_wrong.port, "timeout": 5}},
            "redis_wrong": {"adapter": "redis", "conf": {"port": r.tls_port, "ssl": True,
                                                          "ssl_verify": True}},
            "redis_named": {"adapter": "redis", "conf": {"port": r.tls_port, "ssl": True,
                                                          "ssl_verify": True,
                                                          "ssl_server_name": "other.example"}},
        })
        for name in ("consul_wrong", "etcd_wrong", "redis_wrong"):
            err = n.store(name).set("k", "v")
            assert err and "certificate host mismatch" in err, (name, err)
        assert c_wrong.requests == []
        assert n.store("consul_right").set("k", "v") is None
        assert n.store("consul_right").get("k") == ("v", None)
        assert n.store("redis_named").set("k", "v") is None
    finally:
        c_wrong.stop()
        c_right.stop()
        r.stop()


TRANSPORT_T = r"""
    lua_shared_dict acme 1m;
    lua_ssl_trusted_certificate %(ca)s;
    lua_ssl_verify_depth 5;
    server {
        listen 127.0.0.1:%(port)d;
        location = /t {
            content_by_lua_block {
                ngx.req.read_body()
                local spec = require("cjson").decode(ngx.req.get_body_data())
                local out = {}
                for i, r in ipairs(spec) do
                  local res, err
                  if r.client then
                    local c = assert(require("resty.acme.client").new({
                      api_uri = r.url, account_email = "sec@example.test" }))
                    err = c:init()
                    res = err == nil
                  else
                    local t = require("resty.acme.transport").new(r.opts)
                    res, err = t:request("GET", r.url)
                  end
                  out[i] = { ok = res and true or false, err = err or ngx.null }
                end
                ngx.print(require("cjson").encode(out))
            }
        }
    }
"""


def test_transport_and_acme_client_check_ip_hosts(workdir, ca, nginx_factory, core_so):
    wrong = FakeConsul(tls=ca.issue(["other.example"], "t-wrong")).start()
    right = FakeConsul(tls=ca.issue([], "t-right", ips=["127.0.0.1", "::1"])).start()
    try:
        port = free_port()
        n = nginx_factory(TRANSPORT_T % {"ca": ca.ca_pem, "port": port}, http_ports=[port])
        spec = [
            {"url": "https://127.0.0.1:%d/v1/kv/x" % wrong.port},
            {"url": "https://127.0.0.1:%d/v1/kv/x" % right.port},
            # the server name decides, not the URL's host
            {"url": "https://127.0.0.1:%d/v1/kv/x" % right.port,
             "opts": {"server_name": "other.example"}},
            {"url": "https://localhost:%d/v1/kv/x" % wrong.port,
             "opts": {"server_name": "other.example"}},
            {"url": "https://127.0.0.1:%d/v1/kv/x" % wrong.port, "opts": {"ssl_verify": False}},
            # the CA's own api_uri on an IP host
            {"url": "https://127.0.0.1:%d/dir" % wrong.port, "client": True},
        ]
        req = urllib.request.Request("http://127.0.0.1:%d/t" % port,
                                     data=json.dumps(spec).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            out = json.load(resp)
        assert "certificate host mismatch" in out[0]["err"], out[0]
        assert out[1]["ok"], out[1]
        assert "certificate host mismatch" in out[2]["err"], out[2]
        assert out[3]["ok"], out[3]
        assert out[4]["ok"], out[4]
        assert "certificate host mismatch" in out[5]["err"], out[5]
        # only the checked, matching and the unverified requests reached the server
        assert len(wrong.requests) == 2
        assert "TLS certificate verification is disabled" in n.error_log()
    finally:
        wrong.stop()
        right.stop()
