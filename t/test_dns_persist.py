"""dns-persist-01 (draft-ietf-acme-dns-persist-01) end to end: Pebble 2.10.1 validates
``_validation-persist.<name>`` TXT records served by a real BIND 9; the client and autossl
issue apex and wildcard certificates, the record is published once (by the operator or by the
rfc2136 provider) and later orders change nothing in DNS; a record for another account fails
with the record name and the expected value, and autossl does not retry before its cooloff."""

import os
import re
import shutil
import subprocess
import time

import pytest

from harness import REPO, AutoSSL, Pebble2, free_port, pebble2_bin_dir
from harness.ca import key_pem, write_key
from harness.control import admin_server, admin_view, control_nginx, http01_server, post
from pemutil import dns_names, leaf

from test_dns01 import lua

pytestmark = pytest.mark.skipif(pebble2_bin_dir() is None,
                                reason="Pebble 2.10.1 source (../shared/pebble) is absent")

ISSUER = "pebble.letsencrypt.org"  # Pebble's default caaIdentities / issuer-domain-names
RECORD = "_validation-persist.example.test"


@pytest.fixture
def pebble(workdir, bind, request):
    p = Pebble2(workdir, dns_server=bind.server).start()
    yield p
    p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n===== pebble log tail =====\n" + p.log_tail(60))


def provider_account(bind):
    return {"name": "bind", "provider": "rfc2136", "secret": bind.rfc2136_secret(),
            "domains": ["example.test"]}


def ctl(nginx_factory, pebble):
    return control_nginx(
        nginx_factory, api_uri=pebble.directory_url, ca_pem=pebble.ca_pem,
        extra='enabled_challenge_handlers = { "dns-persist-01" },',
        endpoints=["acme_t.order", "acme_t.call", "dns_t.provider"])


def order(n, names, conf):
    return post(n, "/order", {"names": names, "key_type": "EC", "curve": "prime256v1",
                              "conf": conf})


def expected_record(n, name, conf):
    r = post(n, "/call", {"method": "dns_persist_record", "args": [name], "conf": conf})
    assert r.get("r1"), r
    return r["r1"]


def publish(n, bind, name, value):
    r = post(n, "/provider", {"provider": "rfc2136", "secret": bind.rfc2136_secret(),
                              "method": "post_txt_record", "args": [name, value]})
    assert r == {"ok": True}, r


def updates(bind):
    """DNS UPDATEs named applied so far (one "updating zone" line per RR change)."""
    return len(re.findall(r"updating zone 'example\.test/IN'", bind.log()))


def acme_rs():
    """$ACME_RS_BIN, else target/release/acme-rs (built by cargo when missing or stale)."""
    if os.environ.get("ACME_RS_BIN"):
        return os.environ["ACME_RS_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if os.path.exists(cargo):
        subprocess.run([cargo, "build", "--release", "--bin", "acme-rs"], cwd=REPO, check=True)
    return os.path.join(target, "release", "acme-rs")


def test_client_provider_publishes_once_then_no_dns_change(bind, pebble, nginx_factory, workdir,
                                                            core_so):
    n = ctl(nginx_factory, pebble)
    until = int(time.time()) + 86400
    conf = {"account_key": key_pem(), "dns_provider_accounts": [provider_account(bind)],
            "dns_persist": {"persist_until": until}}
    before = updates(bind)
    res = order(n, ["example.test", "*.example.test"], conf)
    assert res.get("err") is None, res
    assert dns_names(leaf(res["cert"])) == ["*.example.test", "example.test"]
    published = updates(bind) - before
    assert published >= 1, bind.log_tail(20)
    kid = res["kid"]
    wild = expected_record(n, "*.example.test", conf)
    assert wild["name"] == RECORD
    assert wild["value"] == "%s; accounturi=%s; policy=wildcard; persistUntil=%d" % (
        ISSUER, kid, until)
    txts = bind.txt(RECORD)
    assert wild["value"] in txts, txts
    # acme-rs shows the same records for this account
    keyfile = os.path.join(str(workdir), "account.pem")
    with open(keyfile, "w") as f:
        f.write(conf["account_key"])
    store = os.path.join(str(workdir), "cli-store")
    os.makedirs(store, exist_ok=True)
    r = subprocess.run([acme_rs(), "account", "persist-record", "--directory",
                        pebble.directory_url, "--ca-bundle", pebble.ca_pem, "--store", store,
                        "--account-key", keyfile, "--domain", "*.example.test", "--domain",
                        "example.test", "--persist-until", str(until)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        '%s TXT "%s"' % (RECORD, wild["value"]),
        '%s TXT "%s; accounturi=%s; persistUntil=%d"' % (RECORD, ISSUER, kid, until)], r.stdout
    # the second order, same account: the records are in place, no UPDATE at all
    mid = updates(bind)
    res2 = order(n, ["*.example.test", "example.test"], conf)
    assert res2.get("err") is None, res2
    assert res2["kid"] == kid
    assert updates(bind) == mid
    assert sorted(bind.txt(RECORD)) == sorted(txts)  # never removed
    assert bind.txt("_acme-challenge.example.test") == []  # not dns-01
    log = n.error_log()
    assert "publishing %s TXT" % RECORD in log
    assert log.count("dns-persist-01 for *.example.test: %s TXT" % RECORD) == 2, log
    assert "[error]" not in log
    assert bind.secret not in log


def test_client_operator_record_wrong_account_then_right(bind, pebble, nginx_factory, core_so):
    n = ctl(nginx_factory, pebble)
    checked = {"account_key": key_pem(), "dns_persist": {"nameservers": [bind.server]}}
    want = expected_record(n, "*.example.test", checked)
    wrong = "%s; accounturi=https://127.0.0.1:1/my-account/999; policy=wildcard" % ISSUER
    publish(n, bind, RECORD, wrong)
    # checked on the zone's server before the CA is asked: a clear error, no validation
    res = order(n, ["*.example.test"], checked)
    err = res.get("err") or ""
    assert "dns-persist-01 record for *.example.test is not in place" in err, res
    assert "accounturi is https://127.0.0.1:1/my-account/999" in err, err
    assert 'publish %s TXT "%s"' % (RECORD, want["value"]) in err, err
    assert "the CA checks" not in err, err
    assert "POST /chalZ/" not in pebble.log()
    # unchecked (no server to ask): the CA refuses, and the error still names the record
    unchecked = {"account_key": checked["account_key"]}
    res = order(n, ["*.example.test"], unchecked)
    err = res.get("err") or ""
    assert "accounturi mismatch" in err, res
    assert 'expected %s TXT "%s"' % (RECORD, want["value"]) in err, err
    # the operator publishes the shown value once; both names issue without a DNS change
    publish(n, bind, RECORD, want["value"])
    mid = updates(bind)
    res = order(n, ["*.example.test", "example.test"], checked)
    assert res.get("err") is None, res
    assert dns_names(leaf(res["cert"])) == ["*.example.test", "example.test"]
    assert updates(bind) == mid
    assert want["value"] in bind.txt(RECORD)


def autossl_extra(workdir, dns_persist, accounts=None, cooloff=300):
    # an EC account key: no RSA work, which waits for the machine-wide CPU slot
    keyfile = write_key(os.path.join(str(workdir), "autossl-account.pem"))
    return """
      enabled_challenge_handlers = { "dns-persist-01" },
      account_key_path = %s,
      failure_cooloff = %d,
      dns_persist = %s,
      dns_provider_accounts = %s,""" % (lua(keyfile), cooloff, lua(dns_persist),
                                       lua(accounts or []))


def test_autossl_wildcard_through_provider_once(bind, pebble, nginx_factory, workdir, core_so):
    admin_port = free_port()
    a = AutoSSL(nginx_factory, pebble, bind, workdir, domains=["*.example.test"],
                key_types=("ecc",), workers=1, extra_http=admin_server(admin_port),
                extra=autossl_extra(workdir, {"domains": ["*.example.test"]},
                                      [provider_account(bind)]))
    # the start log line shows the record for the configured name
    m = a.nginx.wait_log(r'dns-persist-01 for \*\.example\.test: publish once (\S+) TXT "([^"]+)"',
                         timeout=60)
    assert m.group(1) == RECORD and m.group(2).startswith(ISSUER + "; accounturi=https://")
    assert m.group(2).endswith("; policy=wildcard")
    first = a.wait_issued("new.example.test", timeout=60)
    assert dns_names(first) == ["*.example.test"]
    assert m.group(2) in bind.txt(RECORD)
    mid = updates(bind)
    for name in ("other.example.test", "x1.example.test"):
        assert a.handshake(name).serial_number == first.serial_number, name
    assert pebble.orders_count() == 1
    assert updates(bind) == mid
    assert bind.secret not in a.nginx.error_log()
    # the admin view lists the record to publish
    view = admin_view(admin_port)
    assert view["dns_persist"] == [{"domain": "*.example.test", "name": RECORD,
                                    "value": m.group(2)}], view


def test_autossl_wrong_record_clear_error_no_tight_retry(bind, pebble, nginx_factory, workdir,
                                                         core_so):
    n = ctl(nginx_factory, pebble)
    publish(n, bind, RECORD, "%s; accounturi=https://127.0.0.1:1/my-account/999" % ISSUER)
    a = AutoSSL(nginx_factory, pebble, bind, workdir, domains=["*.example.test"],
                key_types=("ecc",), workers=1,
                extra=autossl_extra(workdir, {"nameservers": [bind.server]}, cooloff=300))
    assert a.is_fallback(a.handshake("new.example.test"))
    m = a.nginx.wait_log(r"failed to order ecc certificate for \*\.example\.test: (.*)",
                         timeout=60)
    assert "_validation-persist.example.test" in m.group(1), m.group(1)
    assert "accounturi is https://127.0.0.1:1/my-account/999" in m.group(1), m.group(1)
    assert re.search(r'publish %s TXT "%s; accounturi=https://\S+; policy=wildcard"'
                     % (re.escape(RECORD), re.escape(ISSUER)), m.group(1)), m.group(1)
    orders = pebble.orders_count()
    for name in ("new.example.test", "other.example.test", "new.example.test"):
        assert a.is_fallback(a.handshake(name))
    time.sleep(2)
    assert pebble.orders_count() == orders
    assert "POST /chalZ/" not in pebble.log()


def test_client_falls_back_where_the_record_is_not_in_place(bind, pebble, nginx_factory,
                                                            core_so):
    """{dns-persist-01, http-01}: dns-persist-01 for the name whose record is in place,
    http-01 (served by this nginx) for the one without."""
    n = control_nginx(
        nginx_factory, api_uri=pebble.directory_url, ca_pem=pebble.ca_pem,
        extra='enabled_challenge_handlers = { "dns-persist-01", "http-01" },',
        http_ports=[pebble.http_port],
        endpoints=["acme_t.order", "acme_t.call", "dns_t.provider"],
        servers=http01_server(pebble.http_port))
    conf = {"account_key": key_pem(), "dns_persist": {"nameservers": [bind.server]}}
    www = expected_record(n, "www.example.test", conf)
    assert "policy" not in www["value"]
    publish(n, bind, www["name"], www["value"])
    res = order(n, ["example.test", "www.example.test"], conf)
    assert res.get("err") is None, res
    assert dns_names(leaf(res["cert"])) == ["example.test", "www.example.test"]
    log = n.error_log()
    assert "dns-persist-01 is not used for example.test: the record is not in place" in log, log
    assert "dns-persist-01 is not used for www.example.test" not in log
    assert "dns-persist-01 for www.example.test: _validation-persist.www.example.test TXT" in log
