"""resty.acme.autossl in real nginx with a real Pebble validating http-01 against it.

Every nginx here runs nginx-conf/autossl.conf, the example the README's demo runs.
"""

import base64
import json
import os
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import AutoSSL, Pebble, TestCA
from pemutil import load_certs


def san_names(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.DNSName)


def issued_by_pebble(pebble, cert):
    inter = [x509.load_pem_x509_certificate(p.encode()) for p in pebble.intermediates()]
    return cert.issuer in [i.subject for i in inter]


def test_pebble_autossl_issues_rsa_and_ecc_on_demand(pebble, challtestsrv, nginx_factory,
                                                      workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                domains=["one.example.test", "two.example.test"])
    first = a.handshake("one.example.test")
    assert a.is_fallback(first)
    for name in ("one.example.test", "two.example.test"):
        e = a.wait_issued(name, kind="ecc")
        assert isinstance(e.public_key(), ec.EllipticCurvePublicKey)
        assert issued_by_pebble(pebble, e) and san_names(e) == [name]
        r = a.wait_issued(name, kind="rsa")
        assert isinstance(r.public_key(), rsa.RSAPublicKey)
        assert r.public_key().key_size == 4096
        assert issued_by_pebble(pebble, r) and san_names(r) == [name]
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
    assert san_names(cert) == ["a.wild.example.test"]


@pytest.mark.parametrize("sni", [None, "127.0.0.1", "trailing.example.test.",
                                 "a" * 64 + ".example.test", ("x." * 127) + "test",
                                 "bad_name.example.test", "a..b.example.test",
                                 "-dash.example.test"])
def test_pebble_autossl_invalid_sni_gets_fallback(pebble, challtestsrv, nginx_factory, workdir,
                                                  sni):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=[], key_types=("ecc",),
                extra="domain_whitelist_callback = function() return true end,")
    for _ in range(20):
        try:
            cert = a.handshake(sni)
        except (ssl.SSLError, ValueError, UnicodeError):
            # the client library itself may refuse to send such a name
            return
        assert a.is_fallback(cert)
    time.sleep(1)
    assert pebble.orders_count() == 0
    log = a.nginx.error_log()
    # one concise line, not one per handshake
    assert log.count("serving the fallback certificate") <= 2, log[-2000:]


def test_pebble_autossl_upper_case_sni_is_served_lower_case(pebble, challtestsrv, nginx_factory,
                                                           workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["case.example.test"],
                key_types=("ecc",))
    cert = a.wait_issued("CASE.Example.Test")
    assert san_names(cert) == ["case.example.test"]


def test_pebble_autossl_blocking_serves_real_cert_first(pebble, challtestsrv, nginx_factory,
                                                        workdir):
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["block.example.test"],
                key_types=("ecc",), extra="blocking = true,")
    cert = a.handshake("block.example.test", timeout=60)
    assert not a.is_fallback(cert)
    assert issued_by_pebble(pebble, cert)
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
def short_pebble(workdir, challtestsrv):
    p = Pebble(workdir, challtestsrv=challtestsrv, validity_period=3600)
    p.start()
    yield p
    p.stop()


def test_pebble_autossl_renewal_replaces_certificate_without_failed_handshake(
        short_pebble, challtestsrv, nginx_factory, workdir):
    pebble = short_pebble
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["renew.example.test"],
                key_types=("ecc",), workers=2,
                extra="renew_threshold = 7200, renew_check_interval = 2, cache_ttl = 1,")
    first = a.wait_issued("renew.example.test")
    failures = 0
    serials = {first.serial_number}
    deadline = time.monotonic() + 40
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
    value = json.dumps({
        "domain": "legacy.example.test",
        "pkey": key_pem,
        "cert": chain,
        "type": "ecc",
        "updated": 1700000000.123,
    }).replace("/", "\\/")  # cjson escapes slashes
    name = base64.b64encode(b"domain:ecc:legacy.example.test").decode()
    with open(os.path.join(store, name), "w") as f:
        f.write("0::" + value)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["legacy.example.test"],
                key_types=("ecc",),
                extra='storage_adapter = "file", storage_config = { dir = %s },'
                % json.dumps(store))
    served = a.handshake("legacy.example.test")
    assert served.serial_number == cert.serial_number
    time.sleep(2)
    assert pebble.orders_count() == 0


def test_pebble_autossl_store_is_readable_in_original_format(pebble, challtestsrv, nginx_factory,
                                                             workdir):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["fmt.example.test"],
                key_types=("ecc",),
                extra='storage_adapter = "file", storage_config = { dir = %s },'
                % json.dumps(store))
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


def test_pebble_autossl_reload_keeps_serving(pebble, challtestsrv, nginx_factory, workdir):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["reload.example.test"],
                key_types=("ecc",),
                extra='storage_adapter = "file", storage_config = { dir = %s },'
                % json.dumps(store))
    cert = a.wait_issued("reload.example.test")
    a.nginx.reload()
    for _ in range(20):
        assert a.handshake("reload.example.test").serial_number == cert.serial_number
    assert pebble.orders_count() == 1
