"""Certificates of every lifetime (5 minutes to 90 days) against Pebble 2.10.1: one order per
name and key type on first issue, one renewal per certificate per renewal window across a
cluster, the 90-day boundary of the original's renew_threshold, and ARI (RFC 9773) incidents.

Pebble 2.10.1 is built from ../shared/pebble (scripts/build-pebble.sh, cached); without it these
tests are skipped. Its profiles give each lifetime: an order names the profile.
"""

import datetime
import json
import os
import re
import time

import pytest
from cryptography import x509

from fakes.ari_proxy import AriProxy
from harness import AutoSSL, ChallTestSrv2, Pebble2, Redis, TestCA, free_port, pebble2_bin_dir
from harness.autossl import crowd
from harness.ca import write_key
from harness.control import admin_server, admin_view, eval_server, lua_eval
from harness.storage import ari_windows, file_store, forget_ari_windows, put_entry, read_entry

pytestmark = pytest.mark.skipif(pebble2_bin_dir() is None,
                                reason="Pebble 2.10.1 source (../shared/pebble) is absent")

DAY = 86400
PROFILES = {
    "fiveminute": 300,
    "oneminute": 60,
    "twelvehour": 12 * 3600,
    "shortlived": 6 * DAY,
    "classic": 90 * DAY,
}
LIFETIMES = [("fiveminute", 300), ("twelvehour", 12 * 3600), ("shortlived", 6 * DAY),
             ("classic", 90 * DAY)]


@pytest.fixture
def challtestsrv(workdir):
    srv = ChallTestSrv2(workdir).start()
    yield srv
    srv.stop()


@pytest.fixture
def pebble(workdir, challtestsrv, request):
    p = Pebble2(workdir, challtestsrv=challtestsrv, profiles=PROFILES,
                retry_after={"authz": 1, "order": 1}).start()
    yield p
    p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("---- pebble 2.10 log tail ----\n" + p.log_tail(60))


@pytest.fixture(autouse=True)
def _shared_account_key(account_key):
    """Every node of a test with conftest's EC account key: no RSA-4096 key per node would eat
    into the renewal windows measured."""
    ACCOUNT_KEY[0] = account_key


ACCOUNT_KEY = [None]


def node(*args, extra="", **kw):
    """AutoSSL with this test's account key."""
    return AutoSSL(*args, extra='account_key_path = "%s", ' % ACCOUNT_KEY[0] + extra, **kw)


@pytest.fixture
def redis(workdir):
    r = Redis(workdir)
    r.start()
    yield r
    r.stop()


def redis_conf(r):
    return 'storage_adapter = "redis", storage_config = { port = %d },' % r.port


def validity(cert):
    return cert.not_valid_after - cert.not_valid_before


def check_first_issue(nodes, pebble, name, profile, lifetime, key_types):
    crowd(nodes, name)
    for kind in key_types:
        cert = nodes[0].wait_issued(name, kind=kind, timeout=90)
        # Pebble's notAfter is notBefore + validity - 1 s
        assert abs(validity(cert).total_seconds() - lifetime) <= 1, (profile, validity(cert))
    # renewal passes every 2 s on every node meanwhile: nothing just issued is ordered again
    time.sleep(5)
    for n in nodes:
        for _ in range(5):
            n.handshake(name)
    assert pebble.orders_count() == len(key_types), "\n".join(
        n.nginx.log_tail(30) for n in nodes)


@pytest.mark.parametrize("profile,lifetime", LIFETIMES, ids=[p for p, _ in LIFETIMES])
def test_first_issue_one_order_per_name_and_key_type(pebble, challtestsrv, nginx_factory,
                                                     workdir, profile, lifetime):
    name = "first-%s.example.test" % profile
    a = node(nginx_factory, pebble, challtestsrv, workdir, domains=[name],
                key_types=("rsa", "ecc"), workers=2,
                extra='profile = "%s", renew_check_interval = 2, renew_min_interval = 1,'
                      % profile)
    check_first_issue([a], pebble, name, profile, lifetime, ("rsa", "ecc"))


def cluster(nginx_factory, pebble, challtestsrv, workdir, r, domains, extra,
            key_types=("rsa", "ecc")):
    nodes = [node(nginx_factory, pebble, challtestsrv, workdir, domains=domains, workers=1,
                     key_types=key_types,
                     http_port=pebble.http_port if i == 0 else free_port(),
                     extra=redis_conf(r) + extra, start=False)
             for i in range(3)]
    for n in nodes:
        n.nginx.start()
    return nodes


@pytest.mark.parametrize("profile,lifetime", LIFETIMES, ids=[p for p, _ in LIFETIMES])
def test_first_issue_one_order_per_name_and_key_type_on_three_nodes(
        pebble, challtestsrv, nginx_factory, workdir, redis, profile, lifetime):
    name = "nodes-%s.example.test" % profile
    nodes = cluster(nginx_factory, pebble, challtestsrv, workdir, redis, [name],
                    'profile = "%s", renew_check_interval = 2, renew_min_interval = 1,'
                    % profile)
    check_first_issue(nodes, pebble, name, profile, lifetime, ("rsa", "ecc"))


def stored_cert(r, typ, name):
    raw = r.command("GET", "domain:%s:%s" % (typ, name))
    if not raw:
        return None
    return x509.load_pem_x509_certificate(json.loads(raw)["cert"].encode())


@pytest.mark.slow
def test_one_minute_certificates_renew_once_per_window_across_three_nodes(
        pebble, challtestsrv, nginx_factory, workdir, redis):
    """Only the timer that wakes at each certificate's due point renews here (the periodic
    pass is an hour away): each renewal falls inside its window (half the lifetime, spread by
    at most a tenth of it), and every order Pebble saw is a certificate that was stored."""
    lifetime = PROFILES["oneminute"]
    names = ["r1.example.test", "r2.example.test"]
    nodes = cluster(nginx_factory, pebble, challtestsrv, workdir, redis, names,
                    'profile = "oneminute", renew_check_interval = 3600, '
                    'renew_min_interval = 2,', key_types=("ecc",))
    for i, name in enumerate(names):
        nodes[i].handshake(name)
    for i, name in enumerate(names):
        nodes[i].wait_issued(name, timeout=60)
    seen = {name: [] for name in names}  # distinct stored certificates, in order
    # two renewals each: the second at most 2 x (30 s + order time) after the first issue
    deadline = time.monotonic() + 2 * (lifetime / 2 + 10)
    watching = False
    while time.monotonic() < deadline:
        for name in names:
            c = stored_cert(redis, "ecc", name)
            if c is not None and (not seen[name] or seen[name][-1].serial_number
                                  != c.serial_number):
                seen[name].append(c)
        if not watching and all(len(c) >= 3 for c in seen.values()):
            # the first renewals were watched for their whole window; the last ones for the
            # spread of the nodes' due points (a tenth of the lifetime) and an order more
            watching = True
            deadline = min(deadline, time.monotonic() + lifetime / 10 + 5)
        time.sleep(0.25)
    for name in names:
        certs = seen[name]
        # issued, then renewed every 20-30 s: at least twice
        assert len(certs) >= 3, (name, [c.not_valid_before for c in certs])
        for old, new in zip(certs, certs[1:]):
            age = (new.not_valid_before - old.not_valid_before).total_seconds()
            # due at half the lifetime (spread earlier by at most a tenth of it), or at the
            # moment chosen in Pebble's ARI window (which opens at issuance) but not before a
            # third of the lifetime; renewed within a few seconds of that
            assert lifetime / 3 - 1 <= age <= lifetime / 2 + 10, (name, age)
    # no order beyond those: one renewal per certificate per window, whichever node woke
    assert pebble.orders_count() == sum(len(c) for c in seen.values())
    for n in nodes:
        n.nginx.stop()


def test_ninety_day_certificate_is_renewed_at_6_days_left_not_at_8(pebble, challtestsrv,
                                                                  nginx_factory, workdir):
    """The original's renew_threshold (7 days) for 90-day certificates, exactly."""
    ca = TestCA(os.path.join(str(workdir), "oldca"))
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    now = datetime.datetime.now(datetime.timezone.utc)
    entries = {}
    for name, left in (("eight.example.test", 8), ("six.example.test", 6)):
        nb = now - datetime.timedelta(days=90 - left)
        cert_pem, key_pem = ca.leaf_pem([name], not_before=nb,
                                        not_after=nb + datetime.timedelta(days=90))
        put_entry(store, name, cert_pem, key_pem, updated=nb.timestamp())
        entries[name] = cert_pem
    a = node(nginx_factory, pebble, challtestsrv, workdir,
                domains=list(entries), key_types=("ecc",), workers=2,
                extra=file_store(store, 'profile = "classic", renew_check_interval = 2,'))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and read_entry(store, "six.example.test")["cert"] == \
            entries["six.example.test"]:
        time.sleep(0.5)
    renewed = x509.load_pem_x509_certificate(read_entry(store, "six.example.test")["cert"]
                                             .encode())
    assert validity(renewed) >= datetime.timedelta(days=89)
    # several passes later: the 8-day one stays, nothing else was ordered
    time.sleep(6)
    assert read_entry(store, "eight.example.test")["cert"] == entries["eight.example.test"]
    assert pebble.orders_count() == 1
    # the renewal named the certificate it replaces, which this CA never issued (a CA change):
    # Pebble's 400 malformed, then the same order without `replaces`
    assert re.search(r"refused the order as a replacement of \S+ \(400 \S+malformed",
                     a.nginx.error_log()), a.nginx.log_tail(20)


def reask(a, store):
    """The windows forgotten, and the workers restarted: the new renewal owner's first listing
    reads every entry and asks its window again (between listings an entry is read when its
    window's next query comes: Pebble's Retry-After is 6 h)."""
    forget_ari_windows(store)
    a.nginx.reload()


def test_ari_past_window_and_already_replaced(pebble, challtestsrv, nginx_factory, workdir):
    """A window moved into the past (mass revocation) renews at once with `replaces`; its
    explanationURL reaches the log and the admin view. Then the old certificate comes back (a
    restored backup) and is found due again: Pebble answers the `replaces` order 409
    alreadyReplaced, and the certificate is ordered once more without `replaces`."""
    name = "ari.example.test"
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    admin_port = free_port()
    a = node(nginx_factory, pebble, challtestsrv, workdir, domains=[name],
                key_types=("ecc",), workers=1, extra_http=admin_server(admin_port),
                extra=file_store(store, 'profile = "twelvehour", renew_check_interval = 1, '
                                        'cache_ttl = 1, renewal_owner_ttl = 1,'))
    a.wait_issued(name)
    first = read_entry(store, name)
    deadline = time.monotonic() + 10
    while not ari_windows(store) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ari_windows(store), "the renewal window was never asked for"
    time.sleep(2)
    assert pebble.orders_count() == 1  # Pebble's own window: not due yet
    t = time.time()

    def iso(x):
        return datetime.datetime.fromtimestamp(x, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")

    # a malformed answer is a warning and a retry after 60 s, never a renewal
    pebble.set_renewal_info(first["cert"], '{"suggestedWindow": {"start": "soon"')
    off = a.nginx.log_offset()
    reask(a, store)
    a.nginx.wait_log(r"renewal information for .*renewalInfo", since=off, timeout=15)
    time.sleep(2)
    assert pebble.orders_count() == 1
    url = "https://ca.example.test/incident-42"
    # first the CA explains a window that is still ahead: logged, in the admin view, no order
    pebble.set_renewal_info(first["cert"], {
        "suggestedWindow": {"start": iso(t + 3 * 3600), "end": iso(t + 4 * 3600)},
        "explanationURL": url})
    off = a.nginx.log_offset()
    reask(a, store)
    a.nginx.wait_log(r"incident-42", since=off, timeout=15)
    view = json.dumps(admin_view(admin_port))
    assert url in view, view
    assert pebble.orders_count() == 1
    # then the window moves into the past (mass revocation): renewed at once, with replaces
    pebble.set_renewal_info(first["cert"], {
        "suggestedWindow": {"start": iso(t - 7200), "end": iso(t - 3600)},
        "explanationURL": url})
    off = a.nginx.log_offset()
    reask(a, store)
    deadline = time.monotonic() + 30
    while read_entry(store, name)["cert"] == first["cert"] and time.monotonic() < deadline:
        time.sleep(0.2)
    second = read_entry(store, name)
    assert second["cert"] != first["cert"], a.nginx.log_tail(30)
    assert pebble.orders_count() == 2
    a.nginx.wait_log(r"ended in the past", since=off)

    # the replaced certificate is back in the store and its window still says "now"
    put_entry(store, name, first["cert"], first["pkey"], updated=first["updated"])
    off = a.nginx.log_offset()
    reask(a, store)
    a.nginx.wait_log(r"refused the order as a replacement.*alreadyReplaced", timeout=30,
                     since=off)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and read_entry(store, name)["cert"] in (first["cert"],
                                                                              second["cert"]):
        time.sleep(0.2)
    third = read_entry(store, name)
    assert third["cert"] not in (first["cert"], second["cert"]), a.nginx.log_tail(30)
    assert pebble.orders_count() == 3


def test_ari_asked_once_per_certificate_per_retry_after_on_three_nodes(
        pebble, challtestsrv, nginx_factory, workdir, redis):
    """Every node runs a renewal pass every second; Pebble's renewalInfo (Retry-After 6 h)
    is asked once per certificate for the whole cluster, counted at a proxy."""
    proxy = AriProxy(pebble, None)
    names = ["q1.example.test", "q2.example.test"]
    try:
        nodes = cluster(nginx_factory, proxy, challtestsrv, workdir, redis, names,
                        'profile = "twelvehour", renew_check_interval = 1,', key_types=("ecc",))
        for name in names:
            nodes[0].handshake(name)
            nodes[0].wait_issued(name)
        time.sleep(10)
        ids = proxy.ari_queries
        assert len(set(ids)) == 2, ids
        assert len(ids) == 2, ids
        assert len(redis.keys("ari_window:*")) == 2
    finally:
        proxy.stop()


def test_profile_per_name_from_a_function_and_the_allow_list_callback(pebble, challtestsrv,
                                                                      nginx_factory, workdir):
    """`profile` as a function of the domain, a `profile` in what domain_whitelist_callback
    returns, and a profile the CA does not offer (checked against the directory: no order)."""
    extra = '''
      profile = function(domain)
        if domain:find("^six%.") then return "shortlived" end
        if domain:find("^nope%.") then return "no-such-profile" end
      end,
      domain_whitelist_callback = function(domain)
        if domain:find("^half%.") then return { profile = "twelvehour" } end
        return domain:find("%.example%.test$") ~= nil
      end,
      renew_check_interval = 2,'''
    a = node(nginx_factory, pebble, challtestsrv, workdir,
                domains=["unused.example.test"], key_types=("ecc",), workers=1, extra=extra)
    six = a.wait_issued("six.example.test")
    half = a.wait_issued("half.example.test")
    assert abs(validity(six).total_seconds() - 6 * DAY) <= 1
    assert abs(validity(half).total_seconds() - 12 * 3600) <= 1
    assert a.is_fallback(a.handshake("nope.example.test"))
    a.nginx.wait_log(r"profile no-such-profile is not offered by the CA", timeout=15)
    time.sleep(2)
    assert a.is_fallback(a.handshake("nope.example.test"))
    assert pebble.orders_count() == 2


def test_ip_address_certificate_asks_for_ip_profile(pebble, challtestsrv, nginx_factory,
                                                    workdir):
    """`ip_profile`: IP-address names (RFC 8738, ordered through update_cert: SNI carries no
    IP) get the profile a CA requires for them (Let's Encrypt: `shortlived`), other names the
    configured one."""
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    port = free_port()
    node(nginx_factory, pebble, challtestsrv, workdir,
         domains=["127.0.0.1", "dns.example.test"], key_types=("ecc",), workers=1,
         extra_http=eval_server(port),
         extra=file_store(store, 'profile = function(d) if not d:find("^%d") then '
                                 'return "twelvehour" end end, ip_profile = "shortlived",'))
    res = lua_eval(port, 'return { err = require("resty.acme.autossl").update_cert('
                         '{ domain = "127.0.0.1", type = "ecc" }) or "" }', timeout=90)
    assert res["err"] == "", res
    cert = x509.load_pem_x509_certificate(read_entry(store, "127.0.0.1")["cert"].encode())
    assert abs(validity(cert).total_seconds() - 6 * DAY) <= 1
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in ips.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    res = lua_eval(port, 'return { err = require("resty.acme.autossl").update_cert('
                         '{ domain = "dns.example.test", type = "ecc" }) or "" }', timeout=90)
    assert res["err"] == "", res
    cert = x509.load_pem_x509_certificate(read_entry(store, "dns.example.test")["cert"]
                                          .encode())
    assert abs(validity(cert).total_seconds() - 12 * 3600) <= 1


def test_retry_after_clamp_and_ari_moment(pebble, challtestsrv, nginx_factory, workdir):
    """resty.acme.renewal in nginx: Retry-After kept in [60 s, 24 h] (6 h when absent); the
    moment in a window opening at issuance is not before a third of the lifetime; a window
    that ended is due at once and urgent; a failed query is never due."""
    port = free_port()
    node(nginx_factory, pebble, challtestsrv, workdir, domains=["x.example.test"],
         key_types=("ecc",), workers=1, extra_http=eval_server(port))
    res = lua_eval(port, '''
      local r = require("resty.acme.renewal")
      local now = 1e9
      local nb, na = now, now + 300
      local win = { start = nb, ["end"] = na, next_query = 0 }
      local d1, u1, at1 = r.ari_due(win, "00", nb, na, nb + 10)
      local d2, _, at2 = r.ari_due(win, "80000000", nb, na, nb + 201)
      local d3, u3 = r.ari_due({ start = nb - 100, ["end"] = nb - 1, next_query = 0 }, "00",
                               nb, na, nb)
      local d4 = r.ari_due({ error = "x", next_query = 0 }, "00", nb, na, na)
      return {
        low = r.next_query(now + 1, now) - now,
        high = r.next_query(now + 1e7, now) - now,
        none = r.next_query(nil, now) - now,
        mid = r.next_query(now + 3600, now) - now,
        d1 = d1, u1 = u1, at1 = at1 - nb, d2 = d2, at2 = at2 - nb, d3 = d3, u3 = u3, d4 = d4,
      }''', timeout=90)
    assert (res["low"], res["high"], res["none"], res["mid"]) == (60, 86400, 21600, 3600)
    assert res["d1"] is False and res["u1"] is False and res["at1"] == 100
    assert res["d2"] is True and 199.9 <= res["at2"] <= 200.1
    assert res["d3"] is True and res["u3"] is True
    assert res["d4"] is False


def test_ari_replacement_refused_after_an_account_change(pebble, challtestsrv, nginx_factory,
                                                         workdir):
    """The store outlives the account: the certificate was ordered by another account, so
    Pebble answers the `replaces` order 403 unauthorized; the renewal orders without it."""
    name = "moved.example.test"
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    a = node(nginx_factory, pebble, challtestsrv, workdir, domains=[name], key_types=("ecc",),
             workers=1, extra=file_store(store, 'profile = "twelvehour",'))
    a.wait_issued(name)
    a.nginx.stop()
    first = read_entry(store, name)
    t = time.time()
    iso = "%Y-%m-%dT%H:%M:%SZ"
    pebble.set_renewal_info(first["cert"], {"suggestedWindow": {
        "start": datetime.datetime.fromtimestamp(t - 7200, datetime.timezone.utc).strftime(iso),
        "end": datetime.datetime.fromtimestamp(t - 3600, datetime.timezone.utc).strftime(iso)}})
    forget_ari_windows(store)
    other = write_key(os.path.join(str(workdir), "other-account.pem"))
    b = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=[name], key_types=("ecc",),
                workers=1, extra=file_store(store, 'account_key_path = "%s", profile = '
                                                   '"twelvehour", renew_check_interval = 1,'
                                            % other))
    b.nginx.wait_log(r"refused the order as a replacement of \S+ \(403 \S+unauthorized",
                     timeout=30)
    deadline = time.monotonic() + 30
    while read_entry(store, name)["cert"] == first["cert"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert read_entry(store, name)["cert"] != first["cert"], b.nginx.log_tail(30)
    assert pebble.orders_count() == 2
