"""More than one CA (autossl `issuers`): the first CA (Pebble 2.4 behind a fault proxy) fails
or rate-limits, a second real Pebble (2.10.1, a CA of its own, behind a fault proxy of its own)
issues; a renewal goes to the CA that issued the certificate, and over to the other one when
that one fails. The old single `api_uri` config is covered by every other suite.
"""

import os
import time

import pytest
from cryptography import x509

from fakes.fault_proxy import FaultProxy
from harness import AutoSSL, Pebble2, free_port, pebble2_bin_dir
from harness.control import admin_server, admin_view

pytestmark = pytest.mark.skipif(pebble2_bin_dir() is None,
                                reason="Pebble 2.10.1 source (../shared/pebble) is absent")


@pytest.fixture
def proxy(pebble):
    p = FaultProxy(pebble)
    yield p
    p.stop()


@pytest.fixture
def pebble2(workdir, challtestsrv, pebble, request):
    # validates on the same http-01 port as the first CA (the one nginx listens on);
    # 60-second certificates: the renewal is due 30 s after issue
    p = Pebble2(os.path.join(str(workdir), "ca2"), challtestsrv=challtestsrv,
                http_port=pebble.http_port, profiles={"minute": 60}).start()
    yield p
    p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("---- second CA log tail ----\n" + p.log_tail(40))


@pytest.fixture
def proxy2(pebble2):
    p = FaultProxy(pebble2)
    yield p
    p.stop()


class Both:
    """The first CA (through the proxy) as AutoSSL sees it, trusting both CAs' listeners."""

    def __init__(self, proxy, pebble2, workdir):
        self.directory_url = proxy.directory_url
        self.http_port = proxy.http_port
        self.tls_port = proxy.tls_port
        self.ca_pem = os.path.join(str(workdir), "both-cas.pem")
        with open(self.ca_pem, "w") as out:
            for path in (proxy.ca_pem, pebble2.ca_pem):
                with open(path) as f:
                    out.write(f.read())


def issuer_of(pebble):
    return x509.load_pem_x509_certificate(pebble.intermediates()[0].encode()).subject


def start(nginx_factory, proxy, pebble2, challtestsrv, workdir, name, extra="", second=None,
          **kw):
    issuers = 'issuers = { { api_uri = "%s" }, { api_uri = "%s" } },' % (
        proxy.directory_url, (second or pebble2).directory_url)
    return AutoSSL(nginx_factory, Both(proxy, pebble2, workdir), challtestsrv, workdir,
                   domains=[name], key_types=("ecc",),
                   extra=issuers + " failure_cooloff = 1, failure_cooloff_cap = 2,"
                   " failure_cooloff_jitter = 0, issuer_failover_after = 2," + extra, **kw)


def wait_renewed_by(a, name, pebble, old_serials, timeout=90):
    """Handshakes until `name` is served a certificate not in `old_serials` (a worker may still
    serve an older one from its cache); it must come from `pebble`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cert = a.handshake(name)
        if cert.serial_number not in old_serials:
            assert cert.issuer == issuer_of(pebble), (cert.issuer, a.nginx.log_tail(30))
            return cert
        time.sleep(0.5)
    raise AssertionError("not renewed:\n" + a.nginx.log_tail(30))


def ca_in_view(port, name):
    (c,) = [c for c in admin_view(port)["certificates"] if c["name"] == name]
    return c["ca"]


@pytest.mark.slow
def test_first_ca_down_second_issues_renewals_go_to_the_issuing_ca(
        pebble, proxy, pebble2, proxy2, challtestsrv, nginx_factory, workdir):
    """The first CA down: the second issues. The first is back, yet the renewal goes to the
    second, which issued the certificate. The second fails: the renewal goes over to the first,
    which renews it from then on (the admin view names the CA each time)."""
    name = "fo.example.test"
    port = free_port()
    proxy.fault("", "reset")
    a = start(nginx_factory, proxy, pebble2, challtestsrv, workdir, name,
              " renew_check_interval = 2, renew_min_interval = 1,", second=proxy2,
              extra_http=admin_server(port))
    cert = a.wait_issued(name, timeout=90)
    assert cert.issuer == issuer_of(pebble2), cert.issuer
    # two failed tries at the first CA (issuer_failover_after = 2), none of them got through
    assert pebble.orders_count() == 0
    assert a.nginx.error_log().count("failed to update ecc certificate for " + name) == 2
    assert pebble2.orders_count() == 1
    assert ca_in_view(port, name) == proxy2.directory_url
    proxy.clear()
    # the 60-second certificate is due after 30 s: the second CA renews what it issued,
    # although the first (first in the list) is back
    first = cert.serial_number
    cert = wait_renewed_by(a, name, pebble2, {first})
    assert pebble2.orders_count() == 2 and pebble.orders_count() == 0
    assert proxy.count("/order-plz") == 0
    # the issuing CA fails: after its two tries the renewal goes over to the first one
    proxy2.fault("", "reset")
    cert = wait_renewed_by(a, name, pebble, {first, cert.serial_number})
    assert pebble.orders_count() == 1 and pebble2.orders_count() == 2
    assert ca_in_view(port, name) == proxy.directory_url


def test_rate_limited_by_the_first_ca_the_second_issues_at_once(
        pebble, proxy, pebble2, challtestsrv, nginx_factory, workdir):
    """A 429 with Retry-After: 600 from the first CA: no waiting 10 minutes, the second CA
    issues on the next try."""
    name = "rl2.example.test"
    proxy.fault("/order-plz", "429", retry_after=600)
    a = start(nginx_factory, proxy, pebble2, challtestsrv, workdir, name)
    cert = a.wait_issued(name, timeout=60)
    assert cert.issuer == issuer_of(pebble2)
    assert proxy.count("/order-plz", "POST") == 1
    assert pebble2.orders_count() == 1
