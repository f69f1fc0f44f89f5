"""resty.acme.client inside nginx against a real Pebble that validates http-01 on that nginx."""

import base64
import json
import os
import socket
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.httpfake import FakeServer
from harness import REPO, TestCA, free_port
from harness.ca import key_pem
from harness.control import T_LUA, control_nginx, eval_server, http01_server, lua_eval, post
from harness.nginx import lua_package_path
from harness.pebble import EAB_KEY, EAB_KID
from pemutil import common_name, dns_names, leaf, load_certs


def lua_str(s):
    return json.dumps(s)


def client_nginx(nginx_factory, pebble, *, ca_pem=None, api_uri=None, extra=""):
    """nginx serving http-01 on Pebble's validation port, plus a control server."""
    return control_nginx(
        nginx_factory, api_uri=api_uri or pebble.directory_url, ca_pem=ca_pem or pebble.ca_pem,
        extra=extra, http_ports=[pebble.http_port],
        endpoints=["acme_t.order", "acme_t.revoke", "acme_t.rollover", "acme_t.call",
                   "acme_t.keys"],
        servers=http01_server(pebble.http_port))


def key_matches(cert, key_pem):
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, pub) == cert.public_key().public_bytes(enc, pub)


def assert_issued(res, names, pebble):
    assert res.get("err") is None, res
    cert = leaf(res["cert"])
    assert dns_names(cert) == sorted(names)
    assert key_matches(cert, res["key"])
    assert pebble.issued_by(cert)
    assert "%x" % cert.serial_number in [s.lower().lstrip("0") for s in pebble.issued_serials()]
    return cert


def test_pebble_client_orders_rsa_certificate_from_timer(pebble, nginx_factory):
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/order", {"names": ["a.example.test", "b.example.test"], "key_type": "RSA",
                             "key_bits": 2048})
    cert = assert_issued(res, ["a.example.test", "b.example.test"], pebble)
    assert cert.public_key().key_size == 2048
    assert res["kid"].startswith("https://")
    # challenges are cleaned up after the order
    keys = post(n, "/keys", {})
    assert not [k for k in keys["keys"] if k.endswith("#http-01")], keys
    assert "[error]" not in n.error_log()


def test_pebble_client_orders_ecc_certificate_with_ec_account_key(pebble, nginx_factory):
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/order", {"names": ["ecc.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC",
                             "account_key_curve": "prime256v1"})
    cert = assert_issued(res, ["ecc.example.test"], pebble)
    assert cert.public_key().curve.name == "secp256r1"
    account = serialization.load_pem_private_key(res["account_key"].encode(), None)
    assert account.curve.name == "secp256r1"


def test_pebble_client_http01_serving_rules(pebble, nginx_factory):
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/call", {"method": "init", "args": []})
    assert res == {}
    base = "http://127.0.0.1:%d/.well-known/acme-challenge/" % pebble.http_port

    def get(path):
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    assert get("unknowntoken")[0] == 404
    assert get("bad%2Ftoken")[0] == 404
    assert get("..")[0] == 404
    assert get("a.b")[0] == 404


def test_pebble_client_revoke(pebble, nginx_factory):
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/order", {"names": ["revoke.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    cert = assert_issued(res, ["revoke.example.test"], pebble)
    status = pebble.cert_status("%x" % cert.serial_number)
    assert status and status.get("Status", status.get("status")) == "Valid"
    r = post(n, "/revoke", {"cert": res["cert"], "reason": 4,
                            "conf": {"account_key": res["account_key"]}})
    assert r.get("err") is None and r["ok"] is True, r
    status = pebble.cert_status("%x" % cert.serial_number)
    assert status.get("Status", status.get("status")) == "Revoked", status


def test_pebble_client_revoke_with_certificate_key(pebble, nginx_factory):
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/order", {"names": ["revoke2.example.test"], "key_type": "RSA",
                             "key_bits": 2048, "account_key_type": "EC"})
    cert = assert_issued(res, ["revoke2.example.test"], pebble)
    r = post(n, "/revoke", {"cert": res["cert"], "key": res["key"], "conf": {}})
    assert r.get("err") is None and r["ok"] is True, r
    status = pebble.cert_status("%x" % cert.serial_number)
    assert status.get("Status", status.get("status")) == "Revoked", status


def test_pebble_client_account_key_rollover(pebble, nginx_factory):
    from cryptography.hazmat.primitives.asymmetric import ec
    old = ec.generate_private_key(ec.SECP256R1())
    new = ec.generate_private_key(ec.SECP256R1())
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/rollover", {"conf": {"account_key": key_pem(old)}, "new_key": key_pem(new)})
    assert res.get("err") is None and res["ok"], res
    # With the old key, newAccount finds no account: Pebble makes a new one (different URL)
    # or refuses; either way the rolled-over account is no longer reachable with it.
    assert res.get("old_kid") != res["kid"], res


def test_pebble_client_eab(eab_pebble, nginx_factory):
    extra = "eab_kid = %s, eab_hmac_key = %s," % (lua_str(EAB_KID), lua_str(EAB_KEY))
    n = client_nginx(nginx_factory, eab_pebble, extra=extra)
    res = post(n, "/order", {"names": ["eab.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    assert_issued(res, ["eab.example.test"], eab_pebble)


def test_pebble_client_eab_wrong_hmac_is_a_clear_error(eab_pebble, nginx_factory):
    extra = 'eab_kid = %s, eab_hmac_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",' % (
        lua_str(EAB_KID))
    n = client_nginx(nginx_factory, eab_pebble, extra=extra)
    res = post(n, "/order", {"names": ["eab2.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    assert "failed to create account" in res["err"], res
    assert "unauthorized" in res["err"].lower() or "eab" in res["err"].lower(), res


def test_pebble_client_eab_required_but_missing(eab_pebble, nginx_factory):
    n = client_nginx(nginx_factory, eab_pebble)
    res = post(n, "/order", {"names": ["eab3.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    assert "external account binding" in res["err"], res


def test_pebble_client_preferred_chain(alt_pebble, nginx_factory):
    roots = [x509.load_pem_x509_certificate(r.encode()) for r in alt_pebble.roots()]
    assert len(roots) == 3
    for root in roots:
        cn = common_name(root.subject)
        n = client_nginx(nginx_factory, alt_pebble, extra="preferred_chain = %s," % lua_str(cn))
        res = post(n, "/order", {"names": ["chain.example.test"], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert res.get("err") is None, res
        chain = load_certs(res["cert"])
        assert common_name(chain[-1].issuer) == cn
        n.stop()


def test_pebble_client_kong_call_sequence(pebble, nginx_factory):
    """Kong's acme plugin: new{...}, init(), new_account(), order_certificate(key, host)."""
    ctl = free_port()
    body = """
    lua_shared_dict acme 4m;
    lua_ssl_trusted_certificate %(ca)s;
    server {
      listen 127.0.0.1:%(http)d;
      location / {
        access_by_lua_block {
          local uri = ngx.var.request_uri
          if ngx.re.match(uri, [[^/\\.well-known/acme-challenge/(.+)]], "jo") then
            local c = require("resty.acme.client").new({
              api_uri = %(api)s, storage_adapter = "resty.acme.storage.shm",
              storage_config = { shm_name = "acme" } })
            c:serve_http_challenge()
          end
        }
      }
    }
    server {
      listen 127.0.0.1:%(ctl)d;
      location = /kong {
        content_by_lua_block {
          local util = require("resty.acme.util")
          local acme = require("resty.acme.client")
          local c, err = acme.new({
            account_email = "kong@example.test",
            account_key = util.create_pkey(2048, "RSA"),
            api_uri = %(api)s,
            storage_adapter = "resty.acme.storage.shm",
            storage_config = { shm_name = "acme" },
            preferred_chain = nil,
            challenge_start_callback = function() return true end,
          })
          if not c then ngx.say("new: ", err) return end
          err = c:init()
          if err then ngx.say("init: ", err) return end
          local _, aerr = c:new_account()
          if aerr then ngx.say("account: ", aerr) return end
          local key = util.create_pkey(nil, "EC", "prime256v1")
          local cert, oerr = c:order_certificate(key, "kong.example.test")
          if not cert then ngx.say("order: ", oerr) return end
          ngx.print(cert)
        }
      }
    }
    """ % {"ca": pebble.ca_pem, "api": lua_str(pebble.directory_url), "http": pebble.http_port,
           "ctl": ctl}
    nginx_factory(body, http_ports=[pebble.http_port, ctl])
    with urllib.request.urlopen("http://127.0.0.1:%d/kong" % ctl, timeout=120) as r:
        text = r.read().decode()
    assert text.startswith("-----BEGIN CERTIFICATE-----"), text
    assert dns_names(leaf(text)) == ["kong.example.test"]


# --- faults -------------------------------------------------------------------------------


class _FakeCA(FakeServer):
    """A CA whose directory is an HTML page, JSON cut short, or lacks every URL but one."""

    DIRS = {"html": (b"<html><body>maintenance</body></html>", {"Content-Type": "text/html"}),
            "badjson": (b'{"newNonce": ', {"Content-Type": "application/json"}),
            "incomplete": ({"newNonce": "x"}, {})}

    def __init__(self, mode, tls):
        super().__init__(tls=tls)
        self.mode = mode

    def handle(self, req):
        body, headers = self.DIRS[self.mode]
        return 200, body, headers


def fake_ca(workdir, mode):
    ca = TestCA(os.path.join(str(workdir), "fakeca-" + mode))
    return _FakeCA(mode, (ca.cert_pem, ca.key_pem)).start(), ca


def init_error(n):
    return post(n, "/call", {"method": "init", "args": []}).get("r1")


def test_pebble_client_wrong_api_uri(pebble, nginx_factory):
    n = client_nginx(nginx_factory, pebble, api_uri=pebble.directory_url.replace("/dir", "/nope"))
    err = init_error(n)
    assert err and "acme directory listing failed: status code 404" in err, err


def test_pebble_client_ca_down(pebble, nginx_factory):
    port = free_port()
    n = client_nginx(nginx_factory, pebble, api_uri="https://127.0.0.1:%d/dir" % port)
    err = init_error(n)
    assert err and "connect" in err and str(port) in err, err


def test_pebble_client_ca_not_trusted(pebble, nginx_factory, workdir):
    other = TestCA(os.path.join(str(workdir), "other-ca"))
    n = client_nginx(nginx_factory, pebble, ca_pem=other.ca_pem)
    err = init_error(n)
    assert err and ("certificate" in err or "tls" in err.lower()), err


def test_pebble_client_ca_timeout(pebble, nginx_factory):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    port = lst.getsockname()[1]
    try:
        n = client_nginx(nginx_factory, pebble, api_uri="https://127.0.0.1:%d/dir" % port,
                         extra="timeout = 1000,")
        err = init_error(n)
        assert err and "timeout" in err, err
    finally:
        lst.close()


@pytest.mark.parametrize("mode,needle", [("html", "acme directory listing failed"),
                                         ("badjson", "malformed"),
                                         ("incomplete", "newAccount")])
def test_pebble_client_malformed_ca_replies(pebble, nginx_factory, workdir, mode, needle):
    srv, ca = fake_ca(workdir, mode)
    try:
        n = client_nginx(nginx_factory, pebble, ca_pem=ca.ca_pem,
                         api_uri="https://localhost:%d/dir" % srv.port,
                         extra="")
        err = init_error(n)
        assert err and needle in err, err
    finally:
        srv.stop()


def test_client_phase_error_in_init_worker(nginx_factory, workdir):
    ca = TestCA(os.path.join(str(workdir), "ca"))
    port = free_port()
    body = """
    lua_shared_dict acme 1m;
    init_worker_by_lua_block {
      local c = require("resty.acme.client").new({ api_uri = "https://127.0.0.1:1/dir" })
      local err = c:init()
      ngx.log(ngx.NOTICE, "init_worker init result: ", err)
    }
    server { listen 127.0.0.1:%d; location / { return 200; } }
    """ % port
    n = nginx_factory(body, http_ports=[port])
    m = n.wait_log(r"init_worker init result: (.*)")
    assert "not available in the init_worker phase" in m.group(1) or "init_worker" in m.group(1)
    del ca


def test_pebble_client_survives_nonce_rejection(nonce_pebble, nginx_factory):
    # Pebble refuses half of all good nonces; each refusal is retried with the fresh nonce it
    # carries. 20 retries make a spurious failure of this test about a one-in-a-million event.
    n = client_nginx(nginx_factory, nonce_pebble, extra="bad_nonce_retries = 20,")
    for i in range(3):
        res = post(n, "/order", {"names": ["nonce%d.example.test" % i], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert_issued(res, ["nonce%d.example.test" % i], nonce_pebble)


def test_pebble_client_low_level_api(pebble, nginx_factory):
    """new_nonce, jws, post and new_order behave as the original's public methods."""
    n = client_nginx(nginx_factory, pebble)
    key = key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def call(method, *args):
        return post(n, "/call", {"method": method, "login": True, "args": list(args),
                                 "conf": {"account_key": key}})

    nonce = call("new_nonce")
    assert nonce.get("r1") and not nonce.get("r2"), nonce
    res = call("jws", "https://ca.test/x", {"a": "b/c"}, "n1")
    body = json.loads(res["r1"])
    header = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    assert header["alg"] == "RS256" and header["nonce"] == "n1" and header["url"] == \
        "https://ca.test/x" and header["kid"].startswith("https://")
    assert base64.urlsafe_b64decode(body["payload"] + "==") == b'{"a":"b/c"}'
    order = call("new_order", "low.example.test")
    assert order.get("r3") is None, order
    assert order["r1"]["status"] == "pending"
    assert order["r1"]["identifiers"] == [{"type": "dns", "value": "low.example.test"}]
    assert order["r2"]["location"].startswith("https://")
    # POST-as-GET of the order URL through post()
    got = call("post", order["r2"]["location"])
    assert got.get("r3") is None and got["r1"]["status"] == "pending", got
    # a problem document becomes err (its detail), as in the original
    bad = call("new_order", "bad..name")
    assert bad.get("r1") is None and bad.get("r3"), bad


def test_pebble_client_example_config(pebble, challtestsrv, nginx_factory):
    """nginx-conf/client.conf orders from a timer and serves http-01 as documented."""
    import subprocess
    from harness.nginx import lua_package_cpath
    n = nginx_factory("", start=False, http_ports=[pebble.http_port])
    values = {
        "PREFIX": n.workdir, "LUA_PATH": lua_package_path(), "LUA_CPATH": lua_package_cpath(),
        "ACME_DIRECTORY": pebble.directory_url, "ACME_CA_CERT": pebble.ca_pem,
        "RESOLVER": challtestsrv.dns_server, "HTTP_PORT": "127.0.0.1:%d" % pebble.http_port,
        "EMAIL": "ops@example.test", "DOMAIN": "example-client.example.test",
    }
    subprocess.run([os.path.join(REPO, "scripts", "render-conf"),
                    os.path.join(REPO, "nginx-conf", "client.conf"), n.conf_path]
                   + ["%s=%s" % kv for kv in values.items()], check=True)
    n.start()
    n.wait_log(r"certificate for example-client\.example\.test issued", timeout=60)
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % pebble.http_port,
                                timeout=10) as r:
        assert dns_names(leaf(r.read().decode())) == ["example-client.example.test"]


def test_pebble_client_eab_handler(eab_pebble, nginx_factory):
    """eab_handler(account_email) supplies the credentials when the CA requires EAB."""
    extra = ('eab_handler = function(email) '
             'ngx.log(ngx.NOTICE, "eab_handler called for ", email) '
             'return %s, %s end,' % (lua_str(EAB_KID), lua_str(EAB_KEY)))
    n = client_nginx(nginx_factory, eab_pebble, extra=extra)
    res = post(n, "/order", {"names": ["eabh.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    assert_issued(res, ["eabh.example.test"], eab_pebble)
    assert "eab_handler called for ops@example.test" in n.error_log()


class _ZeroSSL(FakeServer):
    def handle(self, req):
        if b"bad" in req.body:
            return 200, {"success": False, "error": {"code": 2831, "type": "invalid_email"}}, {}
        return 200, {"success": True, "eab_kid": "zkid", "eab_hmac_key": "aGVsbG8"}, {}


def test_eab_zerossl_handler_against_fake_api(nginx_factory, workdir):
    ca = TestCA(os.path.join(str(workdir), "zca"))
    srv = _ZeroSSL(tls=(ca.cert_pem, ca.key_pem)).start()
    port = free_port()
    try:
        nginx_factory("lua_ssl_trusted_certificate %s;\n%s" % (ca.ca_pem, eval_server(port)),
                      http_ports=[port], lua_path=T_LUA + ";" + lua_package_path())
        code = """
          local z = require("resty.acme.eab.zerossl-com")
          z.api_uri = "https://localhost:%d/acme/eab-credentials-email"
          local kid, key, err = z.handle("ops+x@example.test")
          local k2, h2, err2 = z.handle("bad@example.test")
          return { kid = kid, key = key, err = err, k2 = k2, err2 = err2 }""" % srv.port
        res = lua_eval(port, code)
        assert res["kid"] == "zkid" and res["key"] == "aGVsbG8" and res.get("err") is None
        assert res.get("k2") is None and "zerossl.com API error" in res["err2"]
        req = srv.requests[0]
        assert req.method == "POST" and req.path == "/acme/eab-credentials-email"
        assert req.headers["content-type"] == "application/x-www-form-urlencoded"
        assert req.body == b"email=ops%2Bx%40example.test"
        assert srv.violations == []
    finally:
        srv.stop()


def test_pebble_client_ip_identifier(pebble, nginx_factory):
    """RFC 8738: an IP address certificate, validated by http-01 on that address."""
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/order", {"names": ["127.0.0.1"], "key_type": "EC", "curve": "prime256v1",
                             "account_key_type": "EC"})
    assert res.get("err") is None, res
    cert = leaf(res["cert"])
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_pebble_client_profiles(pebble, nginx_factory):
    """draft-ietf-acme-profiles: the configured profile goes into newOrder; one the CA does
    not offer is a clear error before any order."""
    from fakes.ari_proxy import AriProxy
    proxy = AriProxy(pebble, (0, 0))
    try:
        n = client_nginx(nginx_factory, proxy, extra='profile = "shortlived",')
        res = post(n, "/order", {"names": ["profile.example.test"], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert_issued(res, ["profile.example.test"], pebble)
        assert proxy.orders[-1]["profile"] == "shortlived"
        n.stop()
        n = client_nginx(nginx_factory, proxy, extra='profile = "nope",')
        res = post(n, "/order", {"names": ["profile2.example.test"], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert res["err"] == ("profile nope is not offered by the CA "
                              "(it offers: classic, shortlived)"), res
        assert len(proxy.orders) == 1
    finally:
        proxy.stop()
