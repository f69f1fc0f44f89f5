"""resty.acme.client inside nginx against a real Pebble that validates http-01 on that nginx."""

import base64
import json
import os
import socket
import ssl
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from harness import REPO, Pebble, TestCA, free_port
from harness.control import T_LUA, control_nginx, http01_server, post
from pemutil import load_certs
from harness.nginx import lua_package_path

def lua_str(s):
    return json.dumps(s)


def client_nginx(nginx_factory, pebble, *, ca_pem=None, api_uri=None, extra=""):
    """nginx serving http-01 on Pebble's validation port, plus a control server."""
    return control_nginx(
        nginx_factory, api_uri=api_uri or pebble.directory_url, ca_pem=ca_pem or pebble.ca_pem,
        extra=extra, http_ports=[pebble.http_port],
        endpoints=["acme_t.order", "acme_t.finalize", "acme_t.revoke", "acme_t.rollover",
                   "acme_t.call",
                   "acme_t.keys"],
        servers=http01_server(pebble.http_port))


def leaf(pem):
    return load_certs(pem)[0]


def sans(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(ext.value.get_values_for_type(x509.DNSName))


def issuer_cn(cert):
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def key_matches(cert, key_pem):
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, pub) == cert.public_key().public_bytes(enc, pub)


def assert_issued(res, names, pebble):
    assert res.get("err") is None, res
    cert = leaf(res["cert"])
    assert sans(cert) == sorted(names)
    assert key_matches(cert, res["key"])
    inter = [x509.load_pem_x509_certificate(p.encode()) for p in pebble.intermediates()]
    assert cert.issuer in [i.subject for i in inter]
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

    def pem(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()

    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/rollover", {"conf": {"account_key": pem(old)}, "new_key": pem(new)})
    assert res.get("err") is None and res["ok"], res
    # With the old key, newAccount finds no account: Pebble makes a new one (different URL)
    # or refuses; either way the rolled-over account is no longer reachable with it.
    assert res.get("old_kid") != res["kid"], res


@pytest.fixture
def eab_pebble(workdir, challtestsrv):
    p = Pebble(workdir, challtestsrv=challtestsrv,
               eab_keys={"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"})
    p.start()
    yield p
    p.stop()


def test_pebble_client_eab(eab_pebble, nginx_factory):
    extra = ('eab_kid = "kid-1", '
             'eab_hmac_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",')
    n = client_nginx(nginx_factory, eab_pebble, extra=extra)
    res = post(n, "/order", {"names": ["eab.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    assert_issued(res, ["eab.example.test"], eab_pebble)


def test_pebble_client_eab_wrong_hmac_is_a_clear_error(eab_pebble, nginx_factory):
    extra = 'eab_kid = "kid-1", eab_hmac_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",'
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


@pytest.fixture
def alt_pebble(workdir, challtestsrv):
    p = Pebble(workdir, challtestsrv=challtestsrv, alternate_roots=2)
    p.start()
    yield p
    p.stop()


def test_pebble_client_preferred_chain(alt_pebble, nginx_factory):
    roots = [x509.load_pem_x509_certificate(r.encode()) for r in alt_pebble.roots()]
    assert len(roots) == 3
    for root in roots:
        cn = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        n = client_nginx(nginx_factory, alt_pebble, extra="preferred_chain = %s," % lua_str(cn))
        res = post(n, "/order", {"names": ["chain.example.test"], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert res.get("err") is None, res
        chain = load_certs(res["cert"])
        assert issuer_cn(chain[-1]) == cn
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
    assert sans(leaf(text)) == ["kong.example.test"]


# --- faults -------------------------------------------------------------------------------


class _Fake(BaseHTTPRequestHandler):
    mode = "html"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.server.mode == "html":
            body = b"<html><body>maintenance</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
        elif self.server.mode == "badjson":
            body = b'{"newNonce": '
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b'{"newNonce": "x"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def fake_ca(workdir, mode):
    ca = TestCA(os.path.join(str(workdir), "fakeca-" + mode))
    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), _Fake)
    srv.mode = mode
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca.cert_pem, ca.key_pem)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, ca


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
                         api_uri="https://localhost:%d/dir" % srv.server_address[1],
                         extra="")
        err = init_error(n)
        assert err and needle in err, err
    finally:
        srv.shutdown()


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


@pytest.fixture
def nonce_pebble(workdir, challtestsrv):
    p = Pebble(workdir, challtestsrv=challtestsrv, nonce_reject=50)
    p.start()
    yield p
    p.stop()


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
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()

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
        assert sans(leaf(r.read().decode())) == ["example-client.example.test"]


def test_pebble_client_eab_handler(eab_pebble, nginx_factory):
    """eab_handler(account_email) supplies the credentials when the CA requires EAB."""
    extra = ('eab_handler = function(email) '
             'ngx.log(ngx.NOTICE, "eab_handler called for ", email) '
             'return "kid-1", '
             '"zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W" end,')
    n = client_nginx(nginx_factory, eab_pebble, extra=extra)
    res = post(n, "/order", {"names": ["eabh.example.test"], "key_type": "EC",
                             "curve": "prime256v1", "account_key_type": "EC"})
    assert_issued(res, ["eabh.example.test"], eab_pebble)
    assert "eab_handler called for ops@example.test" in n.error_log()


class _ZeroSSL(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.seen.append((self.path, self.headers.get("Content-Type"), body))
        if "bad" in body:
            out = b'{"success": false, "error": {"code": 2831, "type": "invalid_email"}}'
        else:
            out = b'{"success": true, "eab_kid": "zkid", "eab_hmac_key": "aGVsbG8"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_eab_zerossl_handler_against_fake_api(nginx_factory, workdir):
    ca = TestCA(os.path.join(str(workdir), "zca"))
    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), _ZeroSSL)
    srv.seen = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca.cert_pem, ca.key_pem)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = free_port()
    try:
        nginx_factory("""
          lua_ssl_trusted_certificate %s;
          server {
            listen 127.0.0.1:%d;
            location = /eval { content_by_lua_block { require("acme_t").eval() } }
          }""" % (ca.ca_pem, port), http_ports=[port],
            lua_path=T_LUA + ";" + lua_package_path())
        code = """
          local z = require("resty.acme.eab.zerossl-com")
          z.api_uri = "https://localhost:%d/acme/eab-credentials-email"
          local kid, key, err = z.handle("ops+x@example.test")
          local k2, h2, err2 = z.handle("bad@example.test")
          return { kid = kid, key = key, err = err, k2 = k2, err2 = err2 }""" % srv.server_address[1]
        req = urllib.request.Request("http://127.0.0.1:%d/eval" % port, data=code.encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            res = json.loads(r.read())
        assert res.get("error") is None, res
        assert res["kid"] == "zkid" and res["key"] == "aGVsbG8" and res.get("err") is None
        assert res.get("k2") is None and "zerossl.com API error" in res["err2"]
        path, ctype, body = srv.seen[0]
        assert path == "/acme/eab-credentials-email"
        assert ctype == "application/x-www-form-urlencoded"
        assert body == "email=ops%2Bx%40example.test"
    finally:
        srv.shutdown()


def test_pebble_client_ip_identifier(pebble, nginx_factory):
    """RFC 8738: an IP address certificate, validated by http-01 on that address."""
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/order", {"names": ["127.0.0.1"], "key_type": "EC", "curve": "prime256v1",
                             "account_key_type": "EC"})
    assert res.get("err") is None, res
    cert = leaf(res["cert"])
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_pebble_client_finalize_polls_through_the_core(pebble, nginx_factory):
    """The original's step-by-step API: new_order, challenges answered by the caller, then
    finalize(finalize_url, order_url, csr), which the core polls and downloads; a CSR the CA
    cannot read is an error naming the cause (Pebble's problem), not a certificate."""
    n = client_nginx(nginx_factory, pebble)
    res = post(n, "/finalize", {"names": ["fin.example.test"]})
    assert_issued(res, ["fin.example.test"], pebble)
    res = post(n, "/finalize", {"names": ["fin2.example.test"], "csr_override": "not a csr"})
    assert res.get("cert") is None, res
    assert res["err"].startswith("error checking finalize: acme problem: malformed (400): "
                                 "Error parsing Base64url-encoded CSR"), res
    assert "[error]" not in n.error_log()


def test_pebble_client_profiles(pebble, nginx_factory, workdir):
    """draft-ietf-acme-profiles: the configured profile goes into newOrder; one the CA does
    not offer is a clear error before any order."""
    from fakes.ari_proxy import AriProxy
    ca = TestCA(os.path.join(str(workdir), "proxyca"))
    proxy = AriProxy(pebble, ca.cert_pem, ca.key_pem, (0, 0))
    try:
        n = client_nginx(nginx_factory, pebble, ca_pem=ca.ca_pem, api_uri=proxy.directory_url,
                         extra='profile = "shortlived",')
        res = post(n, "/order", {"names": ["profile.example.test"], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert_issued(res, ["profile.example.test"], pebble)
        assert proxy.orders[-1]["profile"] == "shortlived"
        n.stop()
        n = client_nginx(nginx_factory, pebble, ca_pem=ca.ca_pem, api_uri=proxy.directory_url,
                         extra='profile = "nope",')
        res = post(n, "/order", {"names": ["profile2.example.test"], "key_type": "EC",
                                 "curve": "prime256v1", "account_key_type": "EC"})
        assert res["err"] == ("profile nope is not offered by the CA "
                              "(it offers: classic, shortlived)"), res
        assert len(proxy.orders) == 1
    finally:
        proxy.stop()
