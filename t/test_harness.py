"""The harness itself: Pebble, challtestsrv and nginx start, answer and stop."""

import json
import ssl
import urllib.request

import pytest

from harness import Nginx, TestCA, dns_query, free_port, http_get, port_open


@pytest.mark.platform_independent
def test_free_port_distinct():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20


@pytest.mark.platform_independent
def test_pebble_directory_over_https(pebble):
    ctx = ssl.create_default_context(cafile=pebble.ca_pem)
    with urllib.request.urlopen(pebble.directory_url, context=ctx, timeout=10) as r:
        d = json.load(r)
    for k in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert d[k].startswith("https://127.0.0.1:%d/" % pebble.port)
    # the management interface answers with the same trust
    roots = pebble.roots()
    assert len(roots) == 1 and roots[0].startswith("-----BEGIN CERTIFICATE-----")
    assert pebble.intermediates()[0].startswith("-----BEGIN CERTIFICATE-----")
    assert pebble.cert_status("1234abcd") is None
    assert pebble.orders_count() == 0


@pytest.mark.platform_independent
def test_pebble_listener_rejects_untrusted(pebble):
    ctx = ssl.create_default_context()  # system trust only: Pebble's TestCA is unknown
    try:
        urllib.request.urlopen(pebble.directory_url, context=ctx, timeout=10)
    except urllib.error.URLError as e:
        assert isinstance(e.reason, ssl.SSLError)
    else:
        raise AssertionError("untrusted listener accepted")


@pytest.mark.platform_independent
def test_challtestsrv_txt_and_a(challtestsrv):
    port = challtestsrv.dns_port
    assert dns_query(port, "anything.example.test", "A") == ["127.0.0.1"]
    assert dns_query(port, "anything.example.test", "AAAA") == []
    challtestsrv.set_txt("_acme-challenge.example.test", "tok-123")
    assert dns_query(port, "_acme-challenge.example.test.", "TXT") == ["tok-123"]
    challtestsrv.clear_txt("_acme-challenge.example.test")
    assert dns_query(port, "_acme-challenge.example.test", "TXT") == []
    challtestsrv.add_a("other.example.test", "127.0.0.2")
    assert dns_query(port, "other.example.test", "A") == ["127.0.0.2"]


def test_nginx_starts_serves_reloads_stops(workdir):
    port = free_port()
    n = Nginx(workdir / "ngx", """
        server {
            listen 127.0.0.1:%d;
            location / { content_by_lua_block { ngx.say("hello ", ngx.worker.pid()) } }
        }""" % port, http_ports=[port])
    n.start()
    try:
        status, _, body = http_get("http://127.0.0.1:%d/" % port)
        assert status == 200 and body.startswith(b"hello ")
        old = n.workers()
        n.reload()
        assert not set(old) & set(n.workers())
        status, _, body2 = http_get("http://127.0.0.1:%d/" % port)
        assert status == 200 and body2 != body
        assert "start worker process" in n.error_log()
    finally:
        n.stop()
    assert not port_open(port)
    assert n.wait_log(r"\[notice\] \d+#\d+: exit", timeout=5)


def test_nginx_bad_config_reports_log(workdir):
    port = free_port()
    n = Nginx(workdir / "bad", "server { listen 127.0.0.1:%d; bogus_directive on; }" % port,
              http_ports=[port])
    try:
        n.start(timeout=5)
    except RuntimeError as e:
        assert "bogus_directive" in str(e)
    else:
        n.stop()
        raise AssertionError("nginx started with a bad config")


def test_nginx_factory_tls_with_testca(workdir, nginx_factory):
    ca = TestCA(workdir / "ca")
    port = free_port()
    nginx_factory("""
        server {
            listen 127.0.0.1:%d ssl;
            ssl_certificate %s;
            ssl_certificate_key %s;
            location / { return 200 "tls ok"; }
        }""" % (port, ca.cert_pem, ca.key_pem), http_ports=[port])
    status, _, body = http_get("https://127.0.0.1:%d/" % port, cafile=ca.ca_pem)
    assert (status, body) == (200, b"tls ok")
    status, _, body = http_get("https://127.0.0.1:%d/" % port, cafile=ca.ca_pem,
                               server_hostname="localhost")
    assert status == 200
