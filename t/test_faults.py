"""Failures, rate limits and CA outages, against the real Pebble behind a fault proxy
(t/fakes/fault_proxy.py) that answers chosen paths with 429/503/resets/stalls/invalid JSON and
counts every request.

Every schedule is scaled down (failure_cooloff of a second, caps of a few seconds, a failed-
validation window of 12 s) and measured at the proxy: the lower bounds are exact (a try never
comes before its time), the upper bounds generous (a busy machine is slow, never early).
"""

import os
import threading
import time

import pytest

from fakes.fault_proxy import FaultProxy
from harness import AutoSSL, free_port
from harness.control import admin_server, admin_view

NEW_ORDER = "/order-plz"  # Pebble's newOrder path
SLACK = 8.0  # seconds a try may come late: handshake loop, timer, account setup in another
#             worker, a loaded machine (2 cores shared by parallel test runs)


@pytest.fixture
def proxy(pebble):
    p = FaultProxy(pebble)
    yield p
    p.stop()


def start(nginx_factory, proxy, challtestsrv, workdir, names, extra, **kw):
    return AutoSSL(nginx_factory, proxy, challtestsrv, workdir, domains=names,
                   key_types=("ecc",), workers=kw.pop("workers", 2),
                   extra="failure_cooloff_jitter = 0, " + extra, **kw)


def knock(node, name, until, stop_when_issued=True):
    """Handshakes for `name` every 0.2 s until `until` (monotonic) or, when asked, until a
    certificate of the CA is served; returns that certificate or None."""
    while time.monotonic() < until:
        try:
            cert = node.handshake(name)
            if stop_when_issued and not node.is_fallback(cert):
                return cert
        except OSError:
            pass
        time.sleep(0.2)
    return None


def knock_after_first_order(node, proxy, name, seconds):
    """Handshakes until the first newOrder (nginx start and account setup take their time on
    a busy machine), then for `seconds` more."""
    deadline = time.monotonic() + 60
    while not orders(proxy) and time.monotonic() < deadline:
        knock(node, name, time.monotonic() + 0.5, stop_when_issued=False)
    assert orders(proxy), node.nginx.log_tail(30)
    knock(node, name, orders(proxy)[0] + seconds, stop_when_issued=False)


def orders(proxy):
    return proxy.times_of(NEW_ORDER, "POST")


def gaps(ts):
    return [round(b - a, 3) for a, b in zip(ts, ts[1:])]


def test_retry_after_of_a_429_is_waited_for_exactly(pebble, proxy, challtestsrv, nginx_factory,
                                                    workdir):
    """newOrder answers 429 rateLimited with Retry-After: 7; failure_cooloff is 1 s, so only
    the Retry-After explains a wait: the next newOrder comes no earlier than 7 s later."""
    proxy.fault(NEW_ORDER, "429", retry_after=7, times=1)
    a = start(nginx_factory, proxy, challtestsrv, workdir, ["rl.example.test"],
              "failure_cooloff = 1,")
    cert = knock(a, "rl.example.test", time.monotonic() + 7 + 30)
    assert cert is not None, a.nginx.log_tail(30)
    ts = orders(proxy)
    assert len(ts) == 2, (ts, a.nginx.log_tail(30))
    # ngx.now() is cached per event-loop turn (ms): 20 ms of clock granularity, no more
    assert ts[1] - ts[0] >= 7 - 0.02, gaps(ts)
    assert ts[1] - ts[0] <= 7 + SLACK, gaps(ts)
    assert "rate_limited" in a.nginx.error_log()


def test_transient_failures_double_to_the_cap(pebble, proxy, challtestsrv, nginx_factory,
                                              workdir):
    """Five transient failures of newOrder, one of each kind (503 serverInternal, a reset
    connection, a 500 HTML page, invalid JSON, a stalled read), with failure_cooloff 1 and
    failure_cooloff_cap 4: tries 1, 2, 4, 4, 4 s apart, then the order goes through."""
    kinds = [("503", {}), ("reset", {}), ("500-html", {}), ("badjson", {}),
             ("stall", {"seconds": 2})]
    for kind, kw in reversed(kinds):  # the most recently added rule applies first
        proxy.fault(NEW_ORDER, kind, times=1, **kw)
    a = start(nginx_factory, proxy, challtestsrv, workdir, ["tr.example.test"],
              "failure_cooloff = 1, failure_cooloff_cap = 4,")
    cert = knock(a, "tr.example.test", time.monotonic() + 60)
    assert cert is not None, a.nginx.log_tail(40)
    seen = [w for t, m, p, w in proxy.seen if p == NEW_ORDER and m == "POST"]
    assert seen == [k for k, _ in kinds] + ["forwarded"], seen
    ts = orders(proxy)
    want = [1, 2, 4, 4, 4]
    for i, (g, w) in enumerate(zip(gaps(ts), want)):
        assert g >= w - 0.02, (i, gaps(ts))
        # the stalled request fails 2 s after it arrived
        assert g <= w + SLACK + (2 if kinds[i][0] == "stall" else 0), (i, gaps(ts))
    log = a.nginx.error_log()
    assert "(transient, 5 in a row)" in log


@pytest.mark.slow
def test_failed_validations_stay_within_the_ca_allowance(pebble, proxy, challtestsrv, nginx_factory,
                                                   workdir):
    """The name resolves (for Pebble's VA) to 127.0.0.2, where nothing listens: every order
    fails its http-01 validation (connection). With failed_validation_limit 2 per 12 s, any two
    tries after the first are at least 12 s apart, although failure_cooloff is 1 s."""
    name = "val.example.test"
    challtestsrv.add_a(name, "127.0.0.2")
    a = start(nginx_factory, proxy, challtestsrv, workdir, [name],
              "failure_cooloff = 1, failure_cooloff_cap = 1, failed_validation_limit = 2,"
              " failed_validation_window = 12,")
    knock_after_first_order(a, proxy, name, 28)
    ts = orders(proxy)
    assert len(ts) >= 3, (ts, a.nginx.log_tail(30))
    # 0, 1, then no third within 12 s of the first: 12, 13, 24, 25, ...
    assert ts[1] - ts[0] >= 1 - 0.02, gaps(ts)
    for i in range(len(ts) - 2):
        assert ts[i + 2] - ts[i] >= 12 - 0.02, gaps(ts)
    assert len(ts) <= 6, gaps(ts)
    assert ts[2] - ts[0] <= 12 + SLACK, gaps(ts)
    assert "(validation, " in a.nginx.error_log()


def test_rejected_identifier_stops_and_is_shown(pebble, proxy, challtestsrv, nginx_factory,
                                                workdir):
    """newOrder refused with rejectedIdentifier: one order, none again (failure_cooloff 1 s,
    handshakes for 8 s), and the admin view lists the name as stopped, with the problem
    document and its subproblem."""
    name = "rej.example.test"
    sub = {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "policy forbids it",
           "identifier": {"type": "dns", "value": name}}
    proxy.fault(NEW_ORDER, "problem", problem="rejectedIdentifier", status=400,
                subproblems=[sub])
    port = free_port()
    a = start(nginx_factory, proxy, challtestsrv, workdir, [name], "failure_cooloff = 1,",
              extra_http=admin_server(port))
    knock_after_first_order(a, proxy, name, 8)
    assert len(orders(proxy)) == 1, gaps(orders(proxy))
    view = admin_view(port)
    entry = [b for b in view["backoff"] if b["name"] == name]
    assert entry and entry[0]["cause"] == "permanent" and entry[0]["stopped"] is True, view
    assert "rejectedIdentifier" in entry[0]["error"], view
    assert entry[0]["problem"] == {
        "type": "urn:ietf:params:acme:error:rejectedIdentifier",
        "detail": "refused (fault proxy)", "status": 400,
        "subproblems": [{"type": sub["type"], "detail": sub["detail"], "status": 400,
                         "identifier": "dns:" + name}]}, entry[0]


def test_directory_rate_limit_before_any_order_waits_its_retry_after(
        pebble, proxy, challtestsrv, nginx_factory, workdir):
    """Before an order exists: the directory answers 429 rateLimited with Retry-After: 7
    (failure_cooloff 1 s): the failure is classified by the CA's problem type, so the next
    directory request waits the 7 s, and the name is issued after it."""
    name = "dirrl.example.test"
    proxy.fault("/dir", "429", retry_after=7, times=1)
    a = start(nginx_factory, proxy, challtestsrv, workdir, [name], "failure_cooloff = 1,")
    cert = knock(a, name, time.monotonic() + 7 + 40)
    assert cert is not None, a.nginx.log_tail(30)
    ts = proxy.times_of("/dir", "GET")
    assert len(ts) >= 2, (ts, a.nginx.log_tail(30))
    assert ts[1] - ts[0] >= 7 - 0.02, gaps(ts)
    assert ts[1] - ts[0] <= 7 + SLACK, gaps(ts)
    assert len(orders(proxy)) == 1
    assert "failed (rate_limited, 1 in a row)" in a.nginx.error_log()


def test_malformed_new_account_stops_with_its_problem_shown(pebble, proxy, challtestsrv,
                                                            nginx_factory, workdir):
    """newAccount refused with malformed (400): one account request, none again (failure_cooloff
    1 s, handshakes for 8 s), no order; the admin view shows the stop and the CA's problem."""
    name = "acct.example.test"
    proxy.fault("/sign-me-up", "problem", problem="malformed", status=400)
    port = free_port()
    a = start(nginx_factory, proxy, challtestsrv, workdir, [name], "failure_cooloff = 1,",
              extra_http=admin_server(port))
    deadline = time.monotonic() + 60
    while not proxy.count("/sign-me-up", "POST") and time.monotonic() < deadline:
        knock(a, name, time.monotonic() + 0.5, stop_when_issued=False)
    first = proxy.times_of("/sign-me-up", "POST")
    assert first, a.nginx.log_tail(30)
    knock(a, name, first[0] + 8, stop_when_issued=False)
    assert proxy.count("/sign-me-up", "POST") == 1, proxy.times_of("/sign-me-up", "POST")
    assert orders(proxy) == []
    view = admin_view(port)
    entry = [b for b in view["backoff"] if b["name"] == name]
    assert entry and entry[0]["cause"] == "permanent" and entry[0]["stopped"] is True, view
    assert entry[0]["problem"] == {"type": "urn:ietf:params:acme:error:malformed",
                                   "detail": "refused (fault proxy)", "status": 400}, entry


@pytest.mark.slow
def test_order_budget_paces_a_flood_and_serves_every_name(pebble, proxy, challtestsrv,
                                                          nginx_factory, workdir):
    """40 new names at once with an order budget of 5, refilled by one a second (scaled from
    Let's Encrypt's 300, one per 36 s): the names beyond the budget are queued, not dropped;
    at the proxy no stretch of time sees more newOrders than the bucket allows, and every name
    is served in the end."""
    names = ["b%02d.example.test" % i for i in range(40)]
    a = start(nginx_factory, proxy, challtestsrv, workdir, names,
              "failure_cooloff = 1, order_budget = { capacity = 5, refill_every = 1,"
              " drain_interval = 0.5 },")
    for name in names:
        try:
            a.handshake(name)
        except OSError:
            pass
    deadline = time.monotonic() + 150
    for name in names:
        assert a.wait_issued(name, timeout=max(1, deadline - time.monotonic()))
    ts = sorted(orders(proxy))
    assert len(ts) == len(names), len(ts)
    # A token is taken before its newOrder reaches the proxy (domain key, JWS, nonce, and the
    # proxy itself: one TLS connection per request, 40 orders in flight on 2 shared cores):
    # arrivals bunch by a few seconds. Without a budget all 40 arrive within a few seconds,
    # which both checks below refuse.
    lag = 5.0
    for i in range(len(ts)):
        for j in range(i + 1, len(ts)):
            allowed = 5 + (ts[j] - ts[i] + lag) / 1.0
            assert j - i + 1 <= allowed, (i, j, gaps(ts))
    assert ts[-1] - ts[0] >= (len(names) - 5) * 1.0 - lag, gaps(ts)
    log = a.nginx.error_log()
    assert "waits in the queue" in log
    # 40 first orders at once with no account key yet: each worker creates one key (the
    # store keeps the first), not one per name
    assert 1 <= log.count("account key generated") <= 2, log.count("account key generated")


@pytest.mark.slow
def test_ca_down_cached_names_served_requests_bounded_resumes(pebble, proxy, challtestsrv,
                                                              nginx_factory, workdir):
    """The CA goes down (every connection reset) after one name was issued: after a reload
    (empty worker caches) the stored certificate is served on every handshake; a new name
    tries on the transient schedule only (failure_cooloff 1, cap 4: at most 8 tries in 24 s,
    each a single request), and is issued by itself once the CA is back."""
    up, new = "up.example.test", "new.example.test"
    a = start(nginx_factory, proxy, challtestsrv, workdir, [up, new],
              "failure_cooloff = 1, failure_cooloff_cap = 4,")
    assert a.wait_issued(up, timeout=60)
    proxy.fault("", "reset")
    a.nginx.reload()
    t0 = time.monotonic()
    n0 = len(proxy.seen)
    failed = []
    served = 0
    until = t0 + 24
    while time.monotonic() < until:
        try:
            cert = a.handshake(up)
            if a.is_fallback(cert):
                failed.append("fallback")
            served += 1
        except OSError as e:
            failed.append(repr(e))
        try:
            a.handshake(new)
        except OSError:
            pass
        time.sleep(0.2)
    assert not failed and served > 50, (failed, served)
    during = proxy.seen[n0:]
    assert all(w == "reset" for _, _, _, w in during), during
    # 0, 1, 3, 7, 11, 15, 19, 23: eight tries of the new name, each one request (the
    # directory, or with a cached directory the nonce or newOrder) since none gets an answer;
    # besides, each worker's first renewal pass after the reload asks for the directory once
    tries = a.nginx.error_log().count("failed to update ecc certificate for " + new)
    assert 1 <= tries <= 8, tries
    assert len(during) <= 8 + 2, [(round(t - t0, 2), p) for t, _, p, _ in during]
    proxy.clear()
    assert a.wait_issued(new, timeout=4 + SLACK + 10)


@pytest.mark.slow
def test_order_budget_serves_a_renewal_before_queued_new_names(challtestsrv, nginx_factory,
                                                               workdir):
    """A budget of one order per 4 s, 8 new names queued at once, and a 40-second
    certificate (Pebble 2.10 profile "short"; the new names get one day) whose renewal falls
    due (at 20 s) while they wait: the renewal is ordered before new names queued earlier than
    it, and nothing is dropped."""
    from harness import Pebble2, pebble2_bin_dir
    if pebble2_bin_dir() is None:
        pytest.skip("Pebble 2.10.1 source (../shared/pebble) is absent")
    p40 = Pebble2(os.path.join(str(workdir), "p40"), challtestsrv=challtestsrv,
                  profiles={"long": 86400, "short": 40}).start()
    px = FaultProxy(p40)
    try:
        first = "r.example.test"
        names = ["n%d.example.test" % i for i in range(8)]
        a = start(nginx_factory, px, challtestsrv, workdir, [first] + names,
                  "failure_cooloff = 1, renew_check_interval = 1, renew_min_interval = 1,"
                  " profile = function(d) return d == '%s' and 'short' or 'long' end," % first +
                  " order_budget = { capacity = 1, refill_every = 4, drain_interval = 0.5 },")
        assert a.wait_issued(first, timeout=60)
        for name in names:
            try:
                a.handshake(name)
            except OSError:
                pass
        deadline = time.monotonic() + 120
        for name in names:
            assert a.wait_issued(name, timeout=max(1, deadline - time.monotonic()))
        seq = [n[0] for _, n in px.orders]
        assert seq.count(first) >= 2, seq  # issued, renewed
        renewal_at = seq.index(first, 1)
        # queued in FIFO order the renewal would come after every new name
        after = [n for n in seq[renewal_at + 1:] if n != first]
        assert after, seq
        assert sorted(set(seq) - {first}) == sorted(names), seq
    finally:
        px.stop()
        p40.stop()
