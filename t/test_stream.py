"""resty.acme.autossl in the stream subsystem (stream-lua-nginx-module: OpenResty only), with
nginx-conf/stream.conf: a TLS-terminating TCP proxy served autossl's certificates, and the
original's tls-alpn-01 set-up (an ssl_preread router) validated by a real Pebble."""

import json
import os
import ssl
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import REPO, TestCA, free_port, lua_package_cpath, lua_package_path, platform
from harness.client import tls_handshake
from pemutil import dns_names

pytestmark = pytest.mark.skipif(
    not platform.has_stream_lua(),
    reason="Debian 12 packages no stream-lua-nginx-module: run with OPENRESTY=<prefix>")

TEMPLATE = os.path.join(REPO, "nginx-conf", "stream.conf")
RENDER = os.path.join(REPO, "scripts", "render-conf")


class StreamAutoSSL:
    """nginx running nginx-conf/stream.conf: http (challenges, https) and stream (a TLS proxy
    to the http backend, the tls-alpn-01 router) on one file store."""

    def __init__(self, nginx_factory, pebble, challtestsrv, *, domains, challenges,
                 alpn_port=None, extra="", workers=2):
        self.https_port = free_port()
        self.stream_port = free_port()
        self.alpn_port = alpn_port or free_port()
        self.alpn_backend_port = free_port()
        self.http_port = pebble.http_port
        n = nginx_factory("", start=False, http_ports=[
            self.http_port, self.https_port, self.stream_port, self.alpn_port])
        self.fallback = TestCA(os.path.join(n.workdir, "fallback"))
        self.store = os.path.join(n.workdir, "store")
        os.makedirs(self.store)
        values = {
            "PREFIX": n.workdir,
            "WORKERS": str(workers),
            "LUA_PATH": lua_package_path(),
            "LUA_CPATH": lua_package_cpath(),
            "ACME_DIRECTORY": pebble.directory_url,
            "ACME_CA_CERT": pebble.ca_pem,
            "RESOLVER": challtestsrv.dns_server,
            "HTTP_PORT": "127.0.0.1:%d" % self.http_port,
            "HTTPS_PORT": "127.0.0.1:%d" % self.https_port,
            "FALLBACK_CERT": self.fallback.cert_pem,
            "FALLBACK_KEY": self.fallback.key_pem,
            "DOMAINS": "{ %s }" % ", ".join(json.dumps(d) for d in domains),
            "EMAIL": "ops@example.test",
            "AUTOSSL_EXTRA": extra,
            "STORAGE_DIR": self.store,
            "STREAM_TLS_PORT": "127.0.0.1:%d" % self.stream_port,
            "STREAM_BACKEND": "127.0.0.1:%d" % self.http_port,
            "ALPN_PORT": "127.0.0.1:%d" % self.alpn_port,
            "ALPN_BACKEND_PORT": str(self.alpn_backend_port),
            "CHALLENGES": "{ %s }" % ", ".join(json.dumps(c) for c in challenges),
        }
        subprocess.run([RENDER, TEMPLATE, n.conf_path] + ["%s=%s" % kv for kv in values.items()],
                       check=True)
        self.nginx = n.start()

    def handshake(self, port, name, kind=None, alpn=None, send=None):
        """(leaf, selected ALPN, bytes read after sending `send`) for SNI `name` on `port`."""
        return tls_handshake(port, name, kind=kind, alpn=alpn, send=send)

    def is_fallback(self, cert):
        with open(self.fallback.ca_pem, "rb") as f:
            return cert.issuer == x509.load_pem_x509_certificate(f.read()).subject

    def wait_issued(self, port, name, kind, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                cert = self.handshake(port, name, kind=kind)[0]
                if not self.is_fallback(cert):
                    return cert
            except (ssl.SSLError, ConnectionError):
                pass  # the ECDSA fallback cannot serve an RSA-only client
            time.sleep(0.2)
        raise AssertionError("no %s certificate for %s on port %d in %ss\n%s" % (
            kind, name, port, timeout, self.nginx.log_tail(60)))

    def assert_no_crash(self):
        log = self.nginx.error_log()
        crashes = [line for line in log.splitlines() if "signal" in line and "exited" in line]
        assert crashes == [], crashes
        assert "[alert]" not in log, log[-3000:]


def test_stream_proxy_served_autossl_certificates_rsa_and_ecc(pebble, challtestsrv,
                                                              nginx_factory):
    s = StreamAutoSSL(nginx_factory, pebble, challtestsrv, domains=["tcp.example.test"],
                      challenges=["http-01"])
    certs = {}
    for kind in ("ecc", "rsa"):
        certs[kind] = s.wait_issued(s.stream_port, "tcp.example.test", kind)
        assert pebble.issued_by(certs[kind])
        assert dns_names(certs[kind]) == ["tcp.example.test"]
    assert isinstance(certs["rsa"].public_key(), rsa.RSAPublicKey)
    assert isinstance(certs["ecc"].public_key(), ec.EllipticCurvePublicKey)
    # the proxy really proxies: plain HTTP to the backend through the TLS stream
    _, _, data = s.handshake(s.stream_port, "tcp.example.test",
                             send=b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert b"hello from the http backend" in data
    # one order per key type, from the stream VM: the http side never saw the name
    assert pebble.orders_count() == 2
    for _ in range(30):
        for kind in ("ecc", "rsa"):
            assert s.handshake(s.stream_port, "tcp.example.test", kind=kind)[0].serial_number \
                == certs[kind].serial_number
    # a name outside the allow-list gets the fallback, and no order
    assert s.is_fallback(s.handshake(s.stream_port, "other.example.test")[0])
    time.sleep(1)
    assert pebble.orders_count() == 2
    s.assert_no_crash()


def test_stream_tls_alpn_01_through_the_preread_router(pebble, challtestsrv, nginx_factory):
    # Pebble connects to its tls_port for tls-alpn-01: the router listens there
    s = StreamAutoSSL(nginx_factory, pebble, challtestsrv, domains=["alpn.example.test"],
                      challenges=["tls-alpn-01"], alpn_port=pebble.tls_port)
    # an https handshake through the router's default route starts the order (http VM)
    for kind in ("ecc", "rsa"):
        cert = s.wait_issued(s.alpn_port, "alpn.example.test", kind)
        assert pebble.issued_by(cert)
    assert pebble.orders_count() == 2
    log = s.nginx.error_log()
    assert "serving tls-alpn-01 challenge for alpn.example.test" in log
    assert "[error]" not in log, log[-3000:]
    # ordinary clients pass the router to https untouched
    cert, proto, data = s.handshake(s.alpn_port, "alpn.example.test", alpn=["http/1.1"],
                                    send=b"GET / HTTP/1.0\r\nHost: alpn.example.test\r\n\r\n")
    assert not s.is_fallback(cert)
    assert b"hello from alpn.example.test" in data
    s.assert_no_crash()


def test_stream_native_serving_and_hostile_handshakes_never_crash_a_worker(
        pebble, challtestsrv, nginx_factory):
    """The stream worker used to exit on signal 11 (an http call given a stream request)."""
    s = StreamAutoSSL(nginx_factory, pebble, challtestsrv, domains=["n.example.test"],
                      challenges=["http-01"], extra="native_serving = true,")
    s.wait_issued(s.stream_port, "n.example.test", "ecc")
    s.wait_issued(s.stream_port, "n.example.test", "rsa")
    names = ["n.example.test", None, "", "x" * 250, "..", "a/b", "UPPER.EXAMPLE.TEST",
             "n.example.test.", "127.0.0.1", "other.example.test"]
    for _ in range(5):
        for name in names:
            try:
                s.handshake(s.stream_port, name or None)
            except (ssl.SSLError, ValueError, ConnectionError, UnicodeError):
                pass
    for _ in range(40):
        cert = s.handshake(s.stream_port, "n.example.test")[0]
        assert not s.is_fallback(cert)
    assert pebble.orders_count() == 2
    s.assert_no_crash()
    # workers are the ones that started: none was replaced after a crash
    assert len(s.nginx.workers()) == 2
