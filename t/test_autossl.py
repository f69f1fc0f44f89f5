"""resty.acme.autossl in real nginx with a real Pebble validating http-01 against it.

Every nginx here runs nginx-conf/autossl.conf, the example the README's demo runs.
"""

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
import tlsraw
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import AutoSSL, TestCA, free_port
from harness.ca import write_key
from harness.control import admin_metrics, admin_server, admin_view, eval_server, lua_eval
from harness.storage import ari_windows, file_store, forget_ari_windows, put_entry
from pemutil import dns_names, load_certs


def test_pebble_autossl_issues_rsa_and_ecc_on_demand(pebble, challtestsrv, nginx_factory,
                                                      workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                domains=["one.example.test", "two.example.test"])
    first = a.handshake("one.example.test")
    assert a.is_fallback(first)
    for name in ("one.example.test", "two.example.test"):
        e = a.wait_issued(name, kind="ecc")
        assert isinstance(e.public_key(), ec.EllipticCurvePublicKey)
        assert pebble.issued_by(e) and dns_names(e) == [name]
        r = a.wait_issued(name, kind="rsa")
        assert isinstance(r.public_key(), rsa.RSAPublicKey)
        assert r.public_key().key_size == 4096
        assert pebble.issued_by(r) and dns_names(r) == [name]
        # leaf and Pebble's intermediate, once each, for both key types
        for kind, leaf in (("ecc", e), ("rsa", r)):
            chain = a.served_chain(name, kind=kind)
            assert [c.serial_number for c in chain[:1]] == [leaf.serial_number]
            assert len(chain) == 2 and chain[1].subject == leaf.issuer
    # exactly one order per name and key type
    assert pebble.orders_count() == 4
    log = a.nginx.error_log()
    assert "[error]" not in log and "[crit]" not in log and "[alert]" not in log


def test_pebble_autossl_refused_name_gets_fallback_and_no_order(pebble, challtestsrv,
                                                                nginx_factory, workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                domains=["allowed.example.test", "*.wild.example.test"], key_types=("ecc",))
    for name in ("evil.example.test", "wild.example.test", "allowed.example.test.evil",
                 "xallowed.example.test"):
        for _ in range(3):
            assert a.is_fallback(a.handshake(name))
    time.sleep(1.5)
    assert pebble.orders_count() == 0
    # a wildcard entry allows a name below it
    cert = a.wait_issued("a.wild.example.test")
    assert dns_names(cert) == ["a.wild.example.test"]


@pytest.mark.parametrize("sni", [None, b"127.0.0.1", b"[::1]", b"trailing.example.test.",
                                 b"a" * 64 + b".example.test", b"x." * 126 + b"tes",
                                 b"x." * 127 + b"test",
                                 b"bad_name.example.test", b"a..b.example.test",
                                 b"-dash.example.test", b"a/b.example.test",
                                 b"a\\b.example.test", b"../../etc/passwd",
                                 b"nul\x00.example.test", "caf\u00e9.example.test".encode()])
def test_pebble_autossl_invalid_sni_gets_fallback(pebble, challtestsrv, nginx_factory, workdir,
                                                  sni):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=[], key_types=("ecc",),
                extra="domain_whitelist_callback = function() return true end,")
    # OpenSSL itself refuses a NUL byte or more than 255 bytes (RFC 6066 §3) before Lua runs
    openssl_refuses = sni is not None and (b"\x00" in sni or len(sni) > 255)
    served = 0
    for _ in range(20):
        try:
            der = tlsraw.peer_cert(a.https_port, sni)
        except tlsraw.HandshakeRefused:
            assert openssl_refuses
            continue
        assert a.is_fallback(x509.load_der_x509_certificate(der))
        served += 1
    assert served == (0 if openssl_refuses else 20)
    time.sleep(1)
    assert pebble.orders_count() == 0
    log = a.nginx.error_log()
    assert "[error]" not in log
    if not openssl_refuses:
        assert "[crit]" not in log
    # no store read for an invalid name, and one concise line, not one per handshake
    assert "domain:ecc:" not in log
    assert log.count("serving the fallback certificate") <= 2, log[-2000:]


def test_pebble_autossl_upper_case_sni_is_served_lower_case(pebble, challtestsrv, nginx_factory,
                                                           workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["case.example.test"],
                key_types=("ecc",))
    cert = a.wait_issued("CASE.Example.Test")
    assert dns_names(cert) == ["case.example.test"]


def test_pebble_autossl_blocking_serves_real_cert_first(pebble, challtestsrv, nginx_factory,
                                                        workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["block.example.test"],
                key_types=("ecc",), extra="blocking = true,")
    cert = a.handshake("block.example.test", timeout=60)
    assert not a.is_fallback(cert)
    assert pebble.issued_by(cert)
    assert pebble.orders_count() == 1


def test_pebble_autossl_concurrent_first_handshakes_make_one_order(pebble, challtestsrv,
                                                                   nginx_factory, workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["crowd.example.test"],
                key_types=("ecc",), workers=4)
    errors = []

    def hit():
        try:
            a.handshake("crowd.example.test", timeout=30)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hit) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    a.wait_issued("crowd.example.test")
    # more handshakes while and after the order: still one order
    for _ in range(20):
        a.handshake("crowd.example.test")
    time.sleep(2)
    assert pebble.orders_count() == 1
    # every worker serves it within a second of it being saved
    for _ in range(40):
        assert not a.is_fallback(a.handshake("crowd.example.test"))


@pytest.fixture
def short_pebble(pebble_factory):
    # renewal starts at half the lifetime for lifetimes under 10 days: 13.5 to 15 s here
    return pebble_factory("short", validity_period=30)


@pytest.mark.slow
def test_pebble_autossl_renewal_replaces_certificate_without_failed_handshake(
        short_pebble, challtestsrv, nginx_factory, workdir):
    pebble = short_pebble
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["renew.example.test"],
                key_types=("ecc",), workers=2,
                extra="renew_threshold = 7200, renew_check_interval = 2, cache_ttl = 1,")
    first = a.wait_issued("renew.example.test")
    # the other worker may still remember "not found" for negative_cache_ttl (1 s)
    time.sleep(1.5)
    failures = 0
    serials = {first.serial_number}
    # due after half of the 60 s lifetime; a loaded machine's RSA-signed orders take a while
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(serials) < 3:
        try:
            cert = a.handshake("renew.example.test")
            assert not a.is_fallback(cert)
            serials.add(cert.serial_number)
        except (OSError, ssl.SSLError):
            failures += 1
        time.sleep(0.05)
    assert failures == 0
    assert len(serials) >= 2, "no renewal observed\n" + a.nginx.log_tail(40)


def test_pebble_autossl_failure_cooloff(pebble, challtestsrv, nginx_factory, workdir):
    # the name resolves where nothing answers http-01: every order fails validation
    challtestsrv.add_a("fail.example.test", "127.0.0.2")
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["fail.example.test"],
                key_types=("ecc",), extra="failure_cooloff = 6,")
    a.handshake("fail.example.test")
    a.nginx.wait_log(r"failed to order ecc certificate for fail\.example\.test", timeout=60)
    assert pebble.orders_count() == 1
    t_fail = time.monotonic()
    while time.monotonic() - t_fail < 4:
        assert a.is_fallback(a.handshake("fail.example.test"))
        time.sleep(0.2)
    assert pebble.orders_count() == 1
    assert "cooling off" in a.nginx.error_log()
    deadline = time.monotonic() + 30
    while pebble.orders_count() < 2 and time.monotonic() < deadline:
        a.handshake("fail.example.test")
        time.sleep(0.3)
    assert pebble.orders_count() == 2


def test_pebble_autossl_serves_existing_store_without_new_order(pebble, challtestsrv,
                                                                nginx_factory, workdir):
    """A file store written in lua-resty-acme's documented format is served as is."""
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    ca = TestCA(os.path.join(str(workdir), "oldca"))
    cert_path, key_path = ca.issue(["legacy.example.test"], "legacy")
    with open(cert_path) as f:
        leaf_pem = f.read()
    with open(ca.ca_pem) as f:
        chain = leaf_pem + f.read()
    with open(key_path) as f:
        key_pem = f.read()
    cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    put_entry(store, "legacy.example.test", chain, key_pem, updated=1700000000.123)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["legacy.example.test"],
                key_types=("ecc",), extra=file_store(store))
    served = a.handshake("legacy.example.test")
    assert served.serial_number == cert.serial_number
    time.sleep(2)
    assert pebble.orders_count() == 0


def served_chain(port, name):
    """Every certificate nginx sends for SNI ``name``, leaf first (openssl s_client)."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", name,
         "-showcerts"], input=b"", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        timeout=20, check=False).stdout
    return load_certs(out)


def test_pebble_autossl_names_of_one_ca_serve_their_own_leaf_and_the_intermediate(
        pebble, challtestsrv, nginx_factory, workdir):
    """Chains are built with one parsed intermediate per CA, shared by every cached entry:
    each name must still be sent its own leaf followed by that intermediate."""
    names = ["c1.example.test", "c2.example.test"]
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=names,
                key_types=("ecc",), workers=1)
    leaves = {name: a.wait_issued(name) for name in names}
    inters = {x509.load_pem_x509_certificate(p.encode()).subject: p for p in
              pebble.intermediates()}
    sent = {}
    for _ in range(2):  # the second round from the cache
        for name in names:
            chain = served_chain(a.https_port, name)
            assert len(chain) == 2, chain
            assert chain[0].serial_number == leaves[name].serial_number
            assert dns_names(chain[0]) == [name]
            assert chain[0].issuer == chain[1].subject
            assert chain[1].subject in inters
            sent.setdefault(name, chain[1])
            assert chain[1] == sent[name]
    assert sent[names[0]] == sent[names[1]]
    assert "[error]" not in a.nginx.error_log()


def test_pebble_autossl_stored_chain_the_core_cannot_read_is_served_through_ngx_ssl(
        pebble, challtestsrv, nginx_factory, workdir):
    """A leaf stored as a TRUSTED CERTIFICATE block (which OpenSSL's PEM_read_bio_X509_AUX
    reads) is not the core's to parse; autossl falls back to ngx.ssl.parse_pem_cert. The other
    name of the same CA goes through the core; both are sent leaf + CA."""
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    ca = TestCA(os.path.join(str(workdir), "storeca"))
    with open(ca.ca_pem) as f:
        ca_pem = f.read()
    served = {}
    for name, trusted in (("plain.example.test", False), ("aux.example.test", True)):
        cert_path, key_path = ca.issue([name], name.split(".")[0])
        with open(cert_path) as f:
            leaf_pem = f.read()
        if trusted:
            leaf_pem = subprocess.run(
                ["openssl", "x509", "-addtrust", "serverAuth", "-trustout"],
                input=leaf_pem.encode(), stdout=subprocess.PIPE, check=True).stdout.decode()
            assert "BEGIN TRUSTED CERTIFICATE" in leaf_pem
        with open(key_path) as f:
            key_pem = f.read()
        put_entry(store, name, leaf_pem + ca_pem, key_pem)
        with open(cert_path) as f:
            served[name] = x509.load_pem_x509_certificate(f.read().encode())
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=list(served),
                key_types=("ecc",), workers=1, extra=file_store(store))
    ca_cert = x509.load_pem_x509_certificate(ca_pem.encode())
    for name, leaf in sorted(served.items(), key=lambda kv: kv[0] != "plain.example.test"):
        chain = served_chain(a.https_port, name)
        assert [c.serial_number for c in chain] == [leaf.serial_number, ca_cert.serial_number]
    assert "[error]" not in a.nginx.error_log()
    assert pebble.orders_count() == 0


def test_pebble_autossl_stored_key_of_another_certificate_is_refused_and_replaced(
        pebble, challtestsrv, nginx_factory, workdir):
    """A store entry whose key does not belong to its certificate is never installed (that
    would fail every handshake of the name): the fallback is served, the log names the cause,
    and a new certificate is ordered to replace the entry."""
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    ca = TestCA(os.path.join(str(workdir), "oldca"))
    cert_path, _ = ca.issue(["mixed.example.test"], "mixed")
    _, other_key_path = ca.issue(["other.example.test"], "other")
    with open(cert_path) as f:
        chain = f.read()
    with open(other_key_path) as f:
        wrong_key = f.read()
    stored_serial = x509.load_pem_x509_certificate(chain.encode()).serial_number
    put_entry(store, "mixed.example.test", chain, wrong_key)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["mixed.example.test"],
                key_types=("ecc",), extra=file_store(store))
    first = a.handshake("mixed.example.test")
    assert a.is_fallback(first)
    issued = a.wait_issued("mixed.example.test")
    assert pebble.issued_by(issued) and issued.serial_number != stored_serial
    assert pebble.orders_count() == 1
    assert "does not belong to the stored certificate" in a.nginx.error_log()


def test_pebble_autossl_store_is_readable_in_original_format(pebble, challtestsrv, nginx_factory,
                                                             workdir):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["fmt.example.test"],
                key_types=("ecc",), extra=file_store(store))
    served = a.wait_issued("fmt.example.test")
    path = os.path.join(store, base64.b64encode(b"domain:ecc:fmt.example.test").decode())
    with open(path) as f:
        content = f.read()
    expiry, _, value = content.partition("::")
    assert expiry == "0"
    entry = json.loads(value)
    assert set(entry) == {"domain", "pkey", "cert", "type", "updated"}
    assert entry["domain"] == "fmt.example.test" and entry["type"] == "ecc"
    assert isinstance(entry["updated"], float)
    assert entry["pkey"].startswith("-----BEGIN PRIVATE KEY-----")
    assert load_certs(entry["cert"])[0].serial_number == \
        served.serial_number
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    account = os.path.join(store, base64.b64encode(b"account_key:").decode())
    with open(account) as f:
        acc = f.read().partition("::")[2]
    assert acc.startswith("-----BEGIN PRIVATE KEY-----")
    k = serialization.load_pem_private_key(acc.encode(), None)
    assert isinstance(k, rsa.RSAPrivateKey) and k.key_size == 4096


@pytest.mark.parametrize("native", [False, True])
def test_pebble_autossl_reload_keeps_serving(pebble, challtestsrv, nginx_factory, workdir,
                                             native):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["reload.example.test"],
                key_types=("ecc",),
                extra=file_store(store, "native_serving = %s," % str(native).lower()))
    cert = a.wait_issued("reload.example.test")
    # the other worker may still trust its "not found" from before the issuance
    # (negative_cache_ttl, 1 s); after it, both serve the certificate (and, native, attach)
    time.sleep(1.2)
    for _ in range(5):
        assert a.handshake("reload.example.test").serial_number == cert.serial_number
    a.nginx.reload()
    for _ in range(20):
        assert a.handshake("reload.example.test").serial_number == cert.serial_number
    assert pebble.orders_count() == 1
    assert "[error]" not in a.nginx.error_log() and "[alert]" not in a.nginx.error_log()


def test_pebble_autossl_tls_alpn_01_on_the_https_listener(pebble, challtestsrv, nginx_factory,
                                                          workdir):
    """tls-alpn-01 answered by the same http-subsystem listener that serves traffic."""
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["alpn.example.test"],
                key_types=("ecc", "rsa"), https_port=pebble.tls_port, tls_alpn=True,
                extra='enabled_challenge_handlers = { "tls-alpn-01" },')
    for kind in ("ecc", "rsa"):
        cert = a.wait_issued("alpn.example.test", kind=kind)
        assert pebble.issued_by(cert)
    assert pebble.orders_count() == 2
    assert "serving tls-alpn-01 challenge for alpn.example.test" in a.nginx.error_log()
    # ordinary clients (h2 / http/1.1 ALPN) are untouched by the ClientHello hook
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", a.https_port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="alpn.example.test") as t:
            assert t.selected_alpn_protocol() == "http/1.1"
            assert not a.is_fallback(x509.load_der_x509_certificate(
                t.getpeercert(binary_form=True)))
    # acme-tls/1 for a name with no pending challenge is refused
    ctx.set_alpn_protocols(["acme-tls/1"])
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", a.https_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="alpn.example.test"):
                pass


def test_pebble_autossl_domain_key_paths(pebble, challtestsrv, nginx_factory, workdir):
    key = ec.generate_private_key(ec.SECP256R1())
    path = write_key(os.path.join(str(workdir), "domain.key"), key)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["keyed.example.test"],
                key_types=("ecc",), extra="domain_key_paths = { ecc = %s }," % json.dumps(path))
    cert = a.wait_issued("keyed.example.test")
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_pebble_autossl_rsa_work_takes_the_machine_slot(pebble, challtestsrv, nginx_factory,
                                                         workdir):
    """RSA keys (and signatures) are made one at a time under an flock on
    <tmp>/resty-acme-<euid>.lock, a 0600 file of the worker's user (src/cpu_slot.rs); two
    concurrent keys both arrive."""
    port = free_port()
    AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["t.example.test"],
            key_types=("ecc",), workers=1, extra_http=eval_server(port))
    res = lua_eval(port, """
      local util = require("resty.acme.util")
      local function one()
        local key, err = util.generate_key(2048, "RSA")
        return key and key:bits(), err
      end
      local t1 = ngx.thread.spawn(one)
      local t2 = ngx.thread.spawn(one)
      local _, b1, e1 = ngx.thread.wait(t1)
      local _, b2, e2 = ngx.thread.wait(t2)
      local ffi = require("ffi")
      pcall(ffi.cdef, "unsigned int geteuid(void);")
      return { b1 = b1, b2 = b2, e1 = e1, e2 = e2, euid = tonumber(ffi.C.geteuid()) }""")
    assert res["b1"] == 2048 and res["b2"] == 2048, res
    lock = os.path.join("/tmp", "resty-acme-%d.lock" % res["euid"])
    st = os.stat(lock)
    assert st.st_uid == res["euid"] and (st.st_mode & 0o777) == 0o600, (lock, oct(st.st_mode))


def test_pebble_autossl_get_certkey_and_cache(pebble, challtestsrv, nginx_factory, workdir):
    port = free_port()
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["api.example.test"],
                key_types=("ecc",), workers=1, extra_http=eval_server(port))
    served = a.wait_issued("api.example.test")
    res = lua_eval(port, """
      local autossl = require("resty.acme.autossl")
      local entry, err = autossl.get_certkey("api.example.test", "ecc")
      local missing, merr = autossl.get_certkey("nope.example.test", "ecc")
      local cached = autossl.get_cert_from_cache("api.example.test", "ecc")
      return { entry = entry, err = err, missing = missing == nil and merr == nil,
               cached = type(cached) == "table" and cached.cert ~= nil,
               allowed = autossl.is_domain_whitelisted("api.example.test", false),
               refused = autossl.is_domain_whitelisted("x.example.test", false),
               native = require("resty.acme.tls_cert").native,
               native_error = require("resty.acme.tls_cert").native_error }""")
    # certificates are installed through the core's one-call path, not the ngx.ssl fallback
    assert res["native"] is True, res.get("native_error")
    assert res.get("err") is None and res["missing"] is True and res["cached"] is True
    entry = res["entry"]
    assert entry["domain"] == "api.example.test" and entry["type"] == "ecc"
    assert load_certs(entry["cert"])[0].serial_number == served.serial_number
    assert res["allowed"] == "api.example.test" and res["refused"] is False


def test_pebble_autossl_cooloff_callback_and_challenge_delay(pebble, challtestsrv,
                                                             nginx_factory, workdir):
    challtestsrv.add_a("cb.example.test", "127.0.0.2")
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                domains=["cb.example.test", "delay.example.test"], key_types=("ecc",),
                extra="""challenge_start_delay = 2,
      failure_cooloff_callback = function(domain, count)
        ngx.log(ngx.NOTICE, "cooloff callback ", domain, " attempt ", count)
        return 1
      end,""")
    a.handshake("cb.example.test")
    a.nginx.wait_log(r"cooloff callback cb\.example\.test attempt 1", timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "attempt 2" not in a.nginx.error_log():
        a.handshake("cb.example.test")
        time.sleep(0.3)
    assert "cooloff callback cb.example.test attempt 2" in a.nginx.error_log()
    t0 = time.monotonic()
    a.wait_issued("delay.example.test")
    assert time.monotonic() - t0 >= 2.0


def test_pebble_autossl_renewal_deletes_names_no_longer_allowed(pebble, challtestsrv,
                                                                nginx_factory, workdir):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    ca = TestCA(os.path.join(str(workdir), "oldca"))

    def put(name):
        cert_path, key_path = ca.issue([name], name)
        with open(cert_path) as c, open(key_path) as k:
            return put_entry(store, name, c.read(), k.read(), updated=1.5)

    gone = put("gone.example.test")
    kept = put("kept.example.test")
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["kept.example.test"],
                key_types=("ecc",), workers=1,
                extra=file_store(store, 'renew_check_interval = 1, '
                                        'enabled_delete_not_whitelisted_domain = true,'))
    deadline = time.monotonic() + 15
    while os.path.exists(gone) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(gone)
    assert os.path.exists(kept)
    assert pebble.orders_count() == 0
    a.nginx.stop()


def test_pebble_autossl_key_generation_does_not_stall_handshakes(pebble, challtestsrv,
                                                                 nginx_factory, workdir):
    """RSA-4096 keys are generated on a native thread: the worker keeps serving handshakes."""
    port = free_port()
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["warm.example.test"],
                key_types=("ecc",), workers=1, extra_http=eval_server(port))
    a.wait_issued("warm.example.test")
    lat = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t = time.monotonic()
            a.handshake("warm.example.test")
            lat.append(time.monotonic() - t)

    th = threading.Thread(target=probe)
    th.start()
    try:
        # the same call autossl makes before an RSA order, three times in a row
        res = lua_eval(port, """
          local util = require("resty.acme.util")
          ngx.update_time()
          local t = ngx.now()
          for _ = 1, 3 do assert(util.create_pkey(4096, "RSA")) end
          ngx.update_time()
          return { took = ngx.now() - t }""")
    finally:
        stop.set()
        th.join()
    assert res["took"] > 0.3, res  # long enough that an event-loop stall would show
    assert len(lat) > 5
    assert max(lat) < max(0.25, res["took"] / 4), (max(lat), res["took"])


def test_pebble_autossl_renews_when_ari_window_opens(pebble, challtestsrv, nginx_factory,
                                                     workdir):
    """RFC 9773: the CA's renewal window, not only renew_threshold, decides renewal, and the
    new order names the certificate it replaces."""
    from fakes.ari_proxy import AriProxy

    now = time.time()
    proxy = AriProxy(pebble, (now + 30 * 86400, now + 31 * 86400))
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    try:
        a = AutoSSL(nginx_factory, proxy, challtestsrv, workdir, domains=["ari.example.test"],
                    key_types=("ecc",), workers=1,
                    extra=file_store(store, "renew_check_interval = 1, cache_ttl = 1,"))
        first = a.wait_issued("ari.example.test")
        assert len(proxy.orders) == 1 and "replaces" not in proxy.orders[0]
        deadline = time.monotonic() + 10
        while not proxy.ari_queries and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proxy.ari_queries, "the CA's renewal window was never asked for"
        time.sleep(2)
        assert len(proxy.orders) == 1  # window in the future: no renewal
        proxy.window = (time.time() - 60, time.time() - 1)
        # the window is shared through storage until the CA's Retry-After (at least 60 s):
        # its expiry is what makes every node ask again. The renewal owner reads an entry
        # between listings only when its window's next query comes (Pebble's Retry-After is
        # hours); restarted workers start with a listing that reads every entry.
        assert ari_windows(store), os.listdir(store)
        forget_ari_windows(store)
        a.nginx.reload()
        deadline = time.monotonic() + 30
        while len(proxy.orders) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(proxy.orders) == 2, a.nginx.log_tail(30)
        assert proxy.orders[1]["replaces"] == proxy.ari_queries[-1]
        renewed = a.wait_issued("ari.example.test")
        deadline = time.monotonic() + 10
        while renewed.serial_number == first.serial_number and time.monotonic() < deadline:
            renewed = a.handshake("ari.example.test")
            time.sleep(0.2)
        assert renewed.serial_number != first.serial_number
    finally:
        proxy.stop()


def test_pebble_autossl_admin_view_and_metrics(pebble, challtestsrv, nginx_factory, workdir):
    port = free_port()
    challtestsrv.add_a("down.example.test", "127.0.0.2")
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                domains=["seen.example.test", "down.example.test"], key_types=("ecc",),
                extra_http=admin_server(port))
    cert = a.wait_issued("seen.example.test")
    a.handshake("down.example.test")
    a.handshake("nope.example.test")
    a.nginx.wait_log(r"failed to order ecc certificate for down\.example\.test", timeout=60)
    time.sleep(1.5)  # counters are folded into the shared dict once a second
    view = admin_view(port)
    (c,) = view["certificates"]
    assert c["name"] == "seen.example.test" and c["type"] == "ecc"
    assert int(c["serial"], 16) == cert.serial_number  # hex with whole bytes: may start with 0
    assert c["not_after"] == int(cert.not_valid_after.timestamp())
    assert c["sans"] == ["seen.example.test"] and c["renewal_due"] is False
    (f,) = view["failures"]
    assert f["name"] == "down.example.test" and f["attempts"] == 1 and f["cooloff_until"]
    text = admin_metrics(port)
    assert ('acme_certificate_expiry_timestamp_seconds{name="seen.example.test",type="ecc"} %d'
            % int(cert.not_valid_after.timestamp())) in text
    assert 'acme_orders_total{type="ecc",result="success"} 1' in text
    assert 'acme_orders_total{type="ecc",result="failure"} 1' in text
    assert re.search(r'acme_handshakes_total\{result="served"\} [1-9]', text)
    assert re.search(r'acme_handshakes_total\{result="refused"\} [1-9]', text)
    assert "# TYPE acme_orders_total counter" in text


def test_pebble_autossl_native_serving_skips_the_lua_phase_for_cached_names(
        pebble, challtestsrv, nginx_factory, workdir):
    """native_serving: a name cached for every key type is served from OpenSSL's certificate
    callback, so the ssl_certificate_by_lua block runs for it only when its cache entries have
    expired; names not cached still run it; a renewed certificate in the store is served once
    the entries expire; the handshakes served natively are counted in the metrics."""
    port, admin_port = free_port(), free_port()
    name = "native.example.test"
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=[name],
                key_types=("rsa", "ecc"), workers=1, extra="native_serving = true, cache_ttl = 3,",
                extra_http=eval_server(port) + admin_server(admin_port), trace_lua_phase=True)
    certs = {kind: a.wait_issued(name, kind=kind) for kind in ("rsa", "ecc")}
    time.sleep(3.5)  # every entry expires: the next handshake refreshes both in Lua
    assert a.handshake(name, kind="rsa").serial_number == certs["rsa"].serial_number
    n0 = a.lua_phase_runs(name)
    for _ in range(5):
        for kind in ("rsa", "ecc"):
            assert a.handshake(name, kind=kind).serial_number == certs[kind].serial_number
    assert a.lua_phase_runs(name) == n0, "cached handshakes ran the Lua phase"

    # a name that is not cached (here: not allowed) runs the block every time
    other = "other.example.test"
    for _ in range(3):
        assert a.is_fallback(a.handshake(other))
    assert a.lua_phase_runs(other) == 3

    # a renewal written to the store by another node is served once the entries expire
    ca = TestCA(os.path.join(str(workdir), "renewca"))
    cert_path, key_path = ca.issue([name], "renewed")  # an EC key
    with open(cert_path) as f:
        renewed_pem = f.read()
    with open(key_path) as f:
        renewed_key = f.read()
    lua_eval(port, """
      local autossl = require("resty.acme.autossl")
      local cjson = require("cjson")
      local err = autossl.storage:set("domain:ecc:%s", cjson.encode({ domain = "%s",
        type = "ecc", updated = ngx.now(), cert = %s, pkey = %s }))
      return { err = err }""" % (name, name, json.dumps(renewed_pem), json.dumps(renewed_key)))
    renewed = x509.load_pem_x509_certificate(renewed_pem.encode())
    assert a.handshake(name, kind="ecc").serial_number == certs["ecc"].serial_number
    time.sleep(3.5)
    assert a.handshake(name, kind="ecc").serial_number == renewed.serial_number
    assert a.handshake(name, kind="rsa").serial_number == certs["rsa"].serial_number

    time.sleep(1.5)  # counters are folded into the shared dict once a second
    text = admin_metrics(admin_port)
    served = int(re.search(r'acme_handshakes_total\{result="served"\} (\d+)', text).group(1))
    assert served >= 14, text
    assert "[error]" not in a.nginx.error_log()
