"""pytest fixtures for the end-to-end suites; the API is documented in t/harness/__init__.py."""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import CORE_SO, REPO, Bind, ChallTestSrv, Nginx, Pebble  # noqa: E402
from harness import nginx as harness_nginx  # noqa: E402
from harness import secrets  # noqa: E402
from harness.ca import write_key  # noqa: E402
from harness.pebble import EAB_KEY, EAB_KID  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "platform_independent: runs no nginx (the CLI, Pebble, pure Python), so "
        "`make test` runs it on the first platform only (PLATFORM_BOUND_ONLY=1 deselects it); "
        "starting nginx in such a test fails it")
    # `make test` (.ci/run) runs every test; `-m "not slow"` leaves these out of a quick run
    config.addinivalue_line("markers", "slow: a long test (half a minute or more), e.g. 100,000 "
                            "stored names; collected first")


def pytest_collection_modifyitems(config, items):
    # the long tests first: with two at a time (make e2e, pytest-xdist) one that started last
    # would run alone at the end
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # fixtures included: a platform_independent test may not start nginx in setup either
    marked = item.get_closest_marker("platform_independent") is not None
    harness_nginx.platform_independent_test[0] = item.nodeid if marked else None
    yield
    harness_nginx.platform_independent_test[0] = None


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so fixtures can tell at teardown whether it failed.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    for when in ("setup", "call"):
        rep = getattr(request.node, "rep_" + when, None)
        if rep is not None and rep.failed:
            return True
    return False


def _dump(title, text):
    print("\n===== %s =====\n%s" % (title, text))


def _running(request, server, title, lines):
    """A fixture's body for a started server: yields it, stops it, and prints the last `lines`
    of its log under `title` when the test failed."""
    yield server
    server.stop()
    if _failed(request):
        _dump(title, server.log_tail(lines))


def _stop_all(request, made, title, lines):
    """A factory fixture's teardown: stops every server it made and, when the test failed,
    prints the last `lines` of each one's log under `title % workdir`."""
    for server in made:
        server.stop()
    if _failed(request):
        for server in made:
            _dump(title % server.workdir, server.log_tail(lines))


@pytest.fixture
def workdir(tmp_path):
    """A fresh directory for the test's servers (pytest's tmp_path)."""
    return tmp_path


@pytest.fixture
def account_key(workdir):
    """An EC account key file in workdir that every node of a test shares (no RSA-4096 key
    made per node: seconds of CPU each on a loaded machine)."""
    return write_key(os.path.join(str(workdir), "account.pem"))


@pytest.fixture
def challtestsrv(workdir, request):
    """Started pebble-challtestsrv (mock DNS: every A query -> 127.0.0.1)."""
    yield from _running(request, ChallTestSrv(workdir).start(), "challtestsrv log tail", 30)


@pytest.fixture
def pebble(workdir, challtestsrv, request):
    """Started Pebble using challtestsrv as DNS; validation of any name hits 127.0.0.1."""
    yield from _running(request, Pebble(workdir, challtestsrv=challtestsrv).start(),
                        "pebble log tail", 60)


@pytest.fixture
def pebble_factory(workdir, challtestsrv, request):
    """``pebble_factory(name, **Pebble options)`` -> a started Pebble in ``<workdir>/<name>``
    using ``challtestsrv`` as DNS (beside the plain ``pebble``, if the test has it too); all
    stopped at teardown."""
    made = []

    def make(name, **options):
        p = Pebble(os.path.join(str(workdir), name), challtestsrv=challtestsrv, **options)
        made.append(p)
        return p.start()

    yield make
    _stop_all(request, made, "pebble log tail (%s)", 60)


@pytest.fixture
def eab_pebble(pebble_factory):
    """Started Pebble that requires EAB: kid ``harness.pebble.EAB_KID``, HMAC key ``EAB_KEY``."""
    return pebble_factory("eab", eab_keys={EAB_KID: EAB_KEY})


@pytest.fixture
def alt_pebble(pebble_factory):
    """Started Pebble with two alternate chains (three roots: ``roots()``)."""
    return pebble_factory("alt", alternate_roots=2)


@pytest.fixture
def nonce_pebble(pebble_factory):
    """Started Pebble that rejects half of all good nonces with badNonce."""
    return pebble_factory("nonce", nonce_reject=50)


@pytest.fixture
def bind(workdir, request):
    """Started Bind (BIND 9, authoritative for example.test, RFC 2136 updates with its key)."""
    yield from _running(request, Bind(workdir).start(), "named log tail", 40)


@pytest.fixture
def pebble_bind(workdir, bind, request):
    """Started Pebble 2.4 using ``bind`` as DNS (dns-01 records are real TXT records there)."""
    yield from _running(request, Pebble(workdir, dns_server=bind.server).start(),
                        "pebble log tail", 60)


@pytest.fixture
def nginx_factory(workdir, request):
    """``nginx_factory(conf_body, **Nginx kwargs)`` -> started Nginx; all stopped at teardown.

    Each call gets its own prefix directory ``<workdir>/nginx<N>``; pass ``start=False`` to get
    an unstarted instance.
    """
    made = []

    def make(conf_body, start=True, **kw):
        d = os.path.join(str(workdir), "nginx%d" % len(made))
        n = Nginx(d, conf_body, **kw)
        made.append(n)
        if start:
            n.start()
        return n

    yield make
    _stop_all(request, made, "nginx error.log tail (%s)", 80)


@pytest.fixture(scope="session")
def core_so():
    """Path of build/lua/resty/acme/core.so, fresh: runs `make lua-build` once per session
    (a no-op cargo call when nothing changed). ACME_RS_SKIP_BUILD=1 only checks it exists."""
    if os.environ.get("ACME_RS_SKIP_BUILD") != "1":
        subprocess.run(["make", "-s", "-C", REPO, "lua-build"], check=True,
                       stdin=subprocess.DEVNULL)
    if not os.path.exists(CORE_SO):
        pytest.fail("%s missing: run `make lua-build`" % CORE_SO)
    return CORE_SO


def pytest_sessionfinish(session, exitstatus):
    """No secret a test used (harness.secrets) and no private key in any error.log the
    harness wrote during the session: a leak fails the run."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller scans every worker's directory at the end
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except Exception:  # noqa: BLE001 - no tmp dir was made: nothing to scan
        return
    count, leaks = secrets.scan(base)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["secrets check: %d error logs, %d secrets, %d leaks"
             % (count, len(secrets.registered()), len(leaks))]
    lines += ["  %s:%d: %s" % leak for leak in leaks[:50]]
    if reporter is not None:
        reporter.write_line("\n".join(lines))
    else:
        print("\n".join(lines))
    if leaks:
        session.exitstatus = 1
