"""Security properties proved end to end: TLS peer names (every TLS connection the library
opens checks the peer's name: a DNS name against the certificate's DNS SANs, an IP literal
against its IP SANs, an explicit server name honoured; ``tls_verify = false`` the only way
out, with a warning), hostile SNIs, and no secret in any log line.

Run: python3 -m pytest -x -p no:cacheprovider t/test_security.py
"""

import json
import re
import time
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
        # a DNS name is checked by nginx; lua-nginx-module 0.10.23 names the cause only when
        # the handshake completes at once
        assert "certificate host mismatch" in err or "certificate verification failed" in err, err
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
        # a DNS name is checked by nginx (0.10.23 names the cause only when the handshake
        # completes at once)
        assert "certificate host mismatch" in out[2]["err"] or \
            "certificate verification failed" in out[2]["err"], out[2]
        assert out[3]["ok"], out[3]
        assert out[4]["ok"], out[4]
        assert "certificate host mismatch" in out[5]["err"], out[5]
        # only the checked, matching and the unverified requests reached the server
        assert len(wrong.requests) == 2
        assert "TLS certificate verification is disabled" in n.error_log()
    finally:
        wrong.stop()
        right.stop()


# ---------------------------------------------------------------- hostile SNIs

import base64  # noqa: E402
import concurrent.futures  # noqa: E402
import random  # noqa: E402

from cryptography import x509 as _x509  # noqa: E402

import tlsraw  # noqa: E402
from harness import AutoSSL  # noqa: E402

ALLOWED = ["allowed.example.test", "*.wild.example.test"]


def hostile_snis(n, seed=19):
    """n SNI byte strings: traversal, NUL, overlong, unicode, IP literals, case, trailing
    dots, near misses of the allow-list and random bytes (deterministic for a seed)."""
    rnd = random.Random(seed)
    fixed = [
        b"../../etc/passwd", b"..", b".", b"/", b"\\", b"..\\..\\boot.ini", b"%2e%2e%2fetc",
        b"allowed.example.test/../../x", b"a/b", b"./allowed.example.test",
        b"allowed.example.test\x00.evil", b"\x00", b"nul\x00", b"allowed.example.test.",
        b"ALLOWED.EXAMPLE.TEST.", b"wild.example.test", b".wild.example.test",
        b"..wild.example.test", b"a..wild.example.test", b"x.wild.example.test.",
        b"allowed.example.test.evil", b"xallowed.example.test", b"allowed-example.test",
        b"127.0.0.1", b"[::1]", b"::1", b"0x7f.1", b"2130706433", b"::ffff:127.0.0.1",
        b"169.254.169.254", b"fe80::1%eth0", "caf\u00e9.example.test".encode(),
        "xn--caf-dma.example.test\u200b".encode(), b"\xff\xfe.example.test",
        b"\xc0\xaf.example.test", b"a" * 64 + b".example.test", b"a" * 254, b"a" * 256,
        b"x." * 127 + b"test", b"*.wild.example.test", b"*", b"*.*.example.test",
        b"allowed.example.test:443", b"allowed.example.test\r\nX: y", b" allowed.example.test",
        b"-allowed.example.test", b"allowed.example.test-", b"_acme.wild.example.test/",
    ]
    alphabet = b"abcXYZ019-._/\\:%*[]\x00\xff\xc3\xa9 "
    # the only names here that are valid and allowed (case folds): one order each
    out = list(fixed) + [b"ALLOWED.example.TEST", b"Sub.Wild.Example.Test"] * 20
    while len(out) < n:
        kind = rnd.randrange(8)
        if kind == 0:  # random bytes
            out.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 80))))
        elif kind == 1:  # case and dots around the allowed names
            base = rnd.choice([b"allowed.example.test", b"wild.example.test"])
            s = bytes(c ^ 0x20 if 97 <= c <= 122 and rnd.random() < 0.5 else c for c in base)
            out.append(rnd.choice([b"", b".", b".."]) + s + rnd.choice([b".", b"..", b". "]))
        elif kind == 2:  # traversal pieces
            out.append(b"".join(rnd.choice([b"../", b"..\\", b"%2e", b"/", b"etc", b"passwd",
                                             b"allowed.example.test", b"\x00"])
                                for _ in range(rnd.randrange(1, 8))))
        elif kind == 3:  # overlong
            out.append(b".".join(b"a" * rnd.randrange(1, 70) for _ in range(rnd.randrange(1, 12))))
        elif kind == 4:  # IP literals
            if rnd.random() < 0.5:
                out.append(".".join(str(rnd.randrange(300)) for _ in range(4)).encode())
            else:
                v6 = ":".join("%x" % rnd.randrange(65536) for _ in range(8)).encode()
                out.append(rnd.choice([v6, b"[" + v6 + b"]", b"::" + v6[:9]]))
        elif kind == 5:  # unicode
            chars = [chr(rnd.randrange(0x80, 0x3000)) for _ in range(rnd.randrange(1, 10))]
            out.append(("".join(chars) + rnd.choice([".example.test", ".wild.example.test",
                                                      ""])).encode())
        elif kind == 6:  # near misses below the wildcard
            label = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 12)))
            out.append(label + b".wild.example.test" + rnd.choice([b".", b"/", b"\x00", b".."]))
        else:  # mixed alphabet
            out.append(bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 40))))
    return out[:n]


def _allowed(name):
    return name == "allowed.example.test" or name.endswith(".wild.example.test")


def test_ten_thousand_hostile_snis(pebble, challtestsrv, nginx_factory, workdir, core_so):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=ALLOWED,
                key_types=("ecc",), workers=2,
                extra='storage_adapter = "file", storage_config = { dir = %s },'
                      % json.dumps(store))
    before = set(os.listdir(str(workdir)))
    workers = set(a.nginx.workers())
    snis = hostile_snis(10000)
    stats = {"served": 0, "refused": 0, "real": []}

    def one(sni):
        try:
            der = tlsraw.peer_cert(a.https_port, sni, timeout=20)
        except tlsraw.HandshakeRefused:
            return "refused", sni
        cert = _x509.load_der_x509_certificate(der)
        return ("fallback" if a.is_fallback(cert) else "real"), sni

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        for outcome, sni in pool.map(one, snis):
            if outcome == "refused":
                stats["refused"] += 1
            else:
                stats["served"] += 1
                if outcome == "real":
                    stats["real"].append(sni)
    # every answer was a certificate or a refusal (OpenSSL's own, for NUL or > 255 bytes)
    assert stats["served"] + stats["refused"] == len(snis)
    time.sleep(2)
    # 0 worker crashes
    assert set(a.nginx.workers()) == workers
    log = a.nginx.error_log()
    assert "exited on signal" not in log and "[alert]" not in log, log[-3000:]
    # 0 orders outside the allow-list: the two valid allowed names were ordered, once each,
    # and nothing else was
    a.wait_issued("allowed.example.test", timeout=90)
    a.wait_issued("sub.wild.example.test", timeout=90)
    time.sleep(1)
    assert pebble.orders_count() == 2
    # a real certificate only ever for an allowed name
    for sni in stats["real"]:
        assert _allowed(sni.decode("ascii").lower()), sni
    # 0 files outside the store; every file inside is one of our keys for an allowed name
    assert set(os.listdir(str(workdir))) == before
    for entry in os.scandir(store):
        assert entry.is_file(follow_symlinks=False), entry.path
        # keys and certificates are for the owner only
        assert entry.stat().st_mode & 0o777 == 0o600, (entry.path, oct(entry.stat().st_mode))
        if entry.name.startswith("."):
            continue  # an atomic write's temp file
        name = entry.name
        key = base64.b64decode(name.replace("-", "+").replace("_", "/") + "=" * (-len(name) % 4))
        key = key.decode()
        # per-name keys (docs/FORMAT.md), the name last; a backoff key may end in @<issuer>
        m = re.match(r"^(?:domain:(?:rsa|ecc):|update_lock:|failure_lock:|failed_attempts:"
                     r"|backoff:(?:rsa|ecc):|order_queue:[0-9a-f]+:(?:rsa|ecc):)(.*?)(?:@\d+)?$",
                     key)
        if m:
            assert _allowed(m.group(1)), key
        else:
            # per-CA state (the order budget, keyed by a hash of the directory URL), the
            # account key, challenges ("<name>#<type>")
            assert (key.startswith(("account_key", "order_budget:", "order_budget_lock:",
                                    "order_queue_waiting:", "order_queue_lock:"))
                    or key == "renewal_owner:"
                    or "#" in key), key


# ---------------------------------------------------------------- crash safety

import threading  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from harness.ca import write_key  # noqa: E402

import signal  # noqa: E402
import ssl  # noqa: E402

ssl_errors = ssl.SSLError

LOCK_TTL = 8


def _store_entries(store):
    """{key: (expiry, value bytes)} of a file store; asserts every visible file is whole."""
    out = {}
    for entry in os.scandir(store):
        if entry.name.startswith("."):
            continue  # an atomic write's temp file: never read as a key
        with open(entry.path, "rb") as f:
            content = f.read()
        m = re.match(rb"^(\d+)::(.+)$", content, re.S)
        assert m, "half-written store file %s: %r" % (entry.path, content[:80])
        name = entry.name
        key = base64.b64decode(name.replace("-", "+").replace("_", "/")
                               + "=" * (-len(name) % 4)).decode()
        out[key] = (int(m.group(1)), m.group(2))
    return out


def _check_store(store, now):
    entries = _store_entries(store)
    certs = {}
    for key, (expiry, value) in entries.items():
        if key.startswith("domain:"):
            doc = json.loads(value)  # a whole JSON document, never a prefix of one
            cert = _x509.load_pem_x509_certificate(doc["cert"].encode())
            pkey = serialization.load_pem_private_key(doc["pkey"].encode(), None)
            fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            # the store never holds a key that does not match its certificate
            assert cert.public_key().public_bytes(*fmt) == pkey.public_key().public_bytes(*fmt), key
            certs[key] = cert.serial_number
        elif key.startswith("update_lock:"):
            # no lock outlives its TTL
            assert 0 < expiry <= now + LOCK_TTL + 1, (key, expiry, now)
    return certs


def test_kill_9_during_issuance_and_store_writes(pebble, challtestsrv, nginx_factory, workdir,
                                                 core_so):
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    account = write_key(os.path.join(str(workdir), "account.pem"))
    names = ["crash%d.example.test" % i for i in range(6)]
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=names,
                key_types=("ecc",), workers=2,
                extra='storage_adapter = "file", storage_config = { dir = %s }, '
                      'update_lock_ttl = %d, failure_cooloff = 1, account_key_path = "%s",'
                      % (json.dumps(store), LOCK_TTL, account))
    earlier = {}
    for name in names[:2]:
        earlier[name] = a.wait_issued(name, timeout=60).serial_number

    # kill -9 workers again and again while names 2 and 3 are ordered and stored
    stop = threading.Event()

    def crowd():
        while not stop.is_set():
            for name in names[2:4]:
                try:
                    a.handshake(name, timeout=5)
                except (OSError, ssl_errors):
                    pass
            time.sleep(0.05)

    t = threading.Thread(target=crowd)
    t.start()
    killed = 0
    try:
        rnd = random.Random(9)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.1, 0.6))
            ws = a.nginx.workers()
            if ws:
                try:
                    os.kill(rnd.choice(ws), signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            _check_store(store, time.time())
    finally:
        stop.set()
        t.join()
    assert killed >= 5

    # then the whole nginx, in the middle of the orders of names 4 and 5
    for name in names[4:]:
        a.handshake(name)
    time.sleep(0.8)
    a.kill()
    certs = _check_store(store, time.time())
    for name, serial in earlier.items():
        assert certs["domain:ecc:" + name] == serial

    # what a writer killed between write and rename leaves: a hidden temp file, removed by
    # the next listing once it is older than any write takes (10 minutes)
    stale = os.path.join(store, ".ZG9tYWluOmVjYzp4.tmp.99999.0")
    with open(stale, "w") as f:
        f.write("0::{\"domain\":")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))

    # after a restart: every earlier certificate is served, the rest are issued once the
    # locks of the killed orders expire
    a.nginx.start()
    for name, serial in earlier.items():
        assert a.wait_issued(name, timeout=10).serial_number == serial
    for name in names[2:]:
        a.wait_issued(name, timeout=LOCK_TTL + 60)
    certs = _check_store(store, time.time())
    assert sorted(certs) == sorted("domain:ecc:" + n for n in names)
    # the first renewal pass listed the store (a few seconds after the start)
    deadline = time.monotonic() + 10
    while os.path.exists(stale) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(stale)
    for name, serial in earlier.items():
        assert certs["domain:ecc:" + name] == serial
