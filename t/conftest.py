"""pytest fixtures for the end-to-end suites; the API is documented in t/harness/__init__.py."""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import CORE_SO, REPO, Bind, ChallTestSrv, Nginx, Pebble  # noqa: E402
from harness import secrets  # noqa: E402


def pytest_configure(config):
    # `make test` (.ci/run) runs every test; `-m "not slow"` leaves these out of a quick run
    config.addinivalue_line("markers", "slow: a long test (minutes), e.g. 100,000 stored names")


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


@pytest.fixture
def workdir(tmp_path):
    """A fresh directory for the test's servers (pytest's tmp_path)."""
    return tmp_path


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
    for n in made:
        n.stop()
    if _failed(request):
        for n in made:
            _dump("nginx error.log tail (%s)" % n.workdir, n.log_tail(80))


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
