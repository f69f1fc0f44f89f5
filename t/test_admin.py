"""The operator's control paths of resty.acme.autossl against a real Pebble: the admin API
(nginx-conf/admin.conf: list with filters and pages, one name, order / renew now, delete +
revoke, why), declared names issued at start, the events callback, and the metrics parsed with
prometheus_client."""

import datetime
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client.parser import text_string_to_metric_families
import pytest

from harness import AutoSSL, TestCA, free_port
from harness.control import eval_server
from harness.storage import file_store, put_entry
from pemutil import load_certs

TOKEN = "t0ken-for-tests"

EVENTS = """
      events_callback = function(event, data)
        ngx.log(ngx.NOTICE, "t: event ", event, " ", data.domain, " ", data.type)
        if event == "issued" then error("the callback is broken") end
      end,
"""


def ec_account(workdir):
    """An EC account key file for account_key_path: its signatures are made inline, so the
    tests never wait for the machine-wide RSA slot that parallel suites share."""
    path = os.path.join(str(workdir), "account-ec.pem")
    with open(path, "w") as f:
        f.write(pem_key(ec.generate_private_key(ec.SECP256R1())))
    return 'account_key_path = "%s", ' % path


def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(metrics, name, **labels):
    return metrics.get((name, tuple(sorted(labels.items()))))


def wait_served(a, name, serial, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cert = a.handshake(name, kind="ecc")
        if cert.serial_number == serial:
            return cert
        time.sleep(0.2)
    raise AssertionError("%s is not served serial %x" % (name, serial))


def test_admin_api_order_renew_delete_why_events_metrics(pebble, challtestsrv, nginx_factory,
                                                         workdir):
    challtestsrv.add_a("down.example.test", "127.0.0.2")
    challtestsrv.add_a("selftest.example.test", "127.0.0.2")
    domains = ["a.example.test", "b.example.test", "c.example.test", "down.example.test",
               "selftest.example.test"]
    unset_port = free_port()
    unset = """
    server {
      listen 127.0.0.1:%d;
      location / {
        content_by_lua_block {
          require("resty.acme.autossl").serve_admin({ token_env = "ACME_T_NEVER_SET" })
        }
      }
    }""" % unset_port
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=domains,
                key_types=("ecc",), admin_token=TOKEN, extra_http=unset,
                extra=ec_account(workdir) + "cache_ttl = 1, preflight_port = %d, %s"
                % (pebble.http_port, EVENTS))
    # a token variable that nginx does not pass refuses everything, with or without a token
    for tok in ("", TOKEN):
        req = urllib.request.Request("http://127.0.0.1:%d/acme/certificates" % unset_port,
                                     headers={"Authorization": "Bearer " + tok})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("the API answered without its token variable")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and b"ACME_T_NEVER_SET" in e.read()

    # the token is required, and compared whole
    assert a.admin("GET", "/acme/certificates", token="")[0] == 401
    assert a.admin("GET", "/acme/certificates", token=TOKEN + "x")[0] == 401
    assert a.admin("GET", "/acme/certificates", token=TOKEN[:-1])[0] == 401
    status, view = a.admin("GET", "/acme/certificates")
    assert status == 200 and view["total"] == 0 and view["certificates"] == []

    # order now: no handshake needed; the first one is served the real certificate
    orders0 = pebble.orders_count()
    status, res = a.admin("POST", "/acme/certificates/a.example.test")
    assert status == 200, res
    (r,) = res["results"]
    assert r["action"] == "order" and r["type"] == "ecc" and r["serial"]
    first = int(r["serial"], 16)
    assert a.handshake("a.example.test", kind="ecc").serial_number == first
    for name in ("b.example.test", "c.example.test"):
        assert a.admin("POST", "/acme/certificates/" + name)[0] == 200
    assert pebble.orders_count() == orders0 + 3

    # one name: every key type's facts, the CA, no backoff, no lock
    status, one = a.admin("GET", "/acme/certificates/A.example.test")
    assert status == 200, one
    c = one["certificates"]["ecc"]
    assert int(c["serial"], 16) == first and c["issuer"] and c["not_after"] > time.time()
    assert c["renewal_due_at"] < c["not_after"] and c["renewal_due"] is False
    assert "pkey" not in c and "cert" not in c  # no secrets
    assert one["allowed"] is True and one["rule"] == "domain_whitelist entry a.example.test"
    assert one["attempts"] == 0 and one["in_cooloff"] is False and one["lock_holder"] is None
    assert one["ca"] == pebble.directory_url
    assert a.admin("GET", "/acme/certificates/zzz.example.test")[0] == 404

    # list: filters and pages
    status, page = a.admin("GET", "/acme/certificates?limit=2")
    assert status == 200 and page["total"] == 3 and page["next_offset"] == 2
    assert [x["name"] for x in page["certificates"]] == ["a.example.test", "b.example.test"]
    status, page = a.admin("GET", "/acme/certificates?limit=2&offset=2")
    assert [x["name"] for x in page["certificates"]] == ["c.example.test"]
    assert "next_offset" not in page or page["next_offset"] is None
    status, page = a.admin("GET", "/acme/certificates?name=b.exa")
    assert page["total"] == 1 and page["certificates"][0]["name"] == "b.example.test"
    assert a.admin("GET", "/acme/certificates?type=rsa")[1]["total"] == 0
    assert a.admin("GET", "/acme/certificates?due=1")[1]["total"] == 0
    assert a.admin("GET", "/acme/certificates?expiring_within=%d" % (10 * 365 * 86400))[1][
        "total"] == 3
    for x in page["certificates"]:
        assert "pkey" not in x and "cert" not in x

    # renew now: the old serial is replaced, in the store and on the wire
    status, res = a.admin("POST", "/acme/certificates/a.example.test")
    assert status == 200, res
    (r,) = res["results"]
    assert r["action"] == "renew" and int(r["old_serial"], 16) == first
    second = int(r["serial"], 16)
    assert second != first
    wait_served(a, "a.example.test", second)

    # why: allowed and stored, refused, in backoff
    status, why = a.admin("GET", "/acme/why/a.example.test")
    assert why["allowed"] is True and why["stored"] == {"ecc": True}
    assert why["answer"] == "served from the store" and why["backoff"]["in_cooloff"] is False
    assert why["cached"]["ecc"] in ("cached", "no")
    status, why = a.admin("GET", "/acme/why/nope.other.test")
    assert status == 200 and why["allowed"] is False
    assert why["rule"] == "not in domain_whitelist" and why["answer"].startswith("fallback: not allowed")
    assert a.admin("POST", "/acme/certificates/nope.other.test")[0] == 403
    status, why = a.admin("GET", "/acme/why/bad_name!")
    assert why["valid_name"] is False

    # the self-test of the http-01 path fails before the CA is asked anything
    orders1 = pebble.orders_count()
    status, res = a.admin("POST", "/acme/certificates/selftest.example.test?self_test=1")
    assert status == 502 and "self-test failed" in res["error"], res
    assert pebble.orders_count() == orders1
    # ... and passes where the name reaches us (then the order runs)
    status, res = a.admin("POST", "/acme/certificates/c.example.test?self_test=1")
    assert status == 200, res

    # a failing order: 502, then the name is in backoff and a second POST is refused
    status, res = a.admin("POST", "/acme/certificates/down.example.test")
    assert status == 502 and res["results"][0]["error"], res
    status, why = a.admin("GET", "/acme/why/down.example.test")
    b = why["backoff"]
    assert b["in_cooloff"] is True and b["attempts"] == 1 and b["cooloff_until"] > time.time()
    assert b["last_error"] and why["answer"].startswith("fallback: in backoff")
    status, one = a.admin("GET", "/acme/certificates/down.example.test")
    assert status == 200 and one["stored"] is False and one["in_cooloff"] is True
    # the CA's problem document of the failed validation (Pebble could not connect)
    p = one["last_problem"]
    assert p["type"] == "urn:ietf:params:acme:error:connection", one
    assert "127.0.0.2" in p["detail"] and p.get("status") in (None, 400), p
    (st,) = [s for s in one["states"] if s["type"] == "ecc"]
    assert st["problem"] == p and st["cause"] == "validation" and st["issuer"] == 1, st
    assert a.admin("POST", "/acme/certificates/down.example.test")[0] == 409
    status, view = a.admin("GET", "/acme/certificates")
    assert [f["name"] for f in view["failures"]] == ["down.example.test"]

    # delete + revoke: gone from the store, Pebble says revoked
    status, res = a.admin("DELETE", "/acme/certificates/b.example.test?revoke=1")
    assert status == 200 and res["revoked"] == ["ecc"] and res["deleted"] == ["ecc"], res
    b_serial = page["certificates"][0]["serial"]
    assert pebble.cert_status(b_serial)["Status"] == "Revoked"
    assert a.admin("GET", "/acme/certificates/b.example.test")[0] == 404
    assert a.admin("DELETE", "/acme/certificates/b.example.test")[0] == 404
    # (no handshake for b here: an allowed name is ordered again by its next handshake)

    # events: the broken callback was logged once and serving went on
    a.nginx.wait_log(r"t: event renewed a\.example\.test ecc", timeout=10)
    a.nginx.wait_log(r"t: event failed down\.example\.test ecc", timeout=10)
    a.nginx.wait_log(r"t: event revoked b\.example\.test ecc", timeout=10)
    log = a.nginx.error_log()
    # three "issued" events: logged at most once per worker (two) and minute
    assert 1 <= log.count("events_callback failed for event issued") <= 2, log[-3000:]
    assert a.handshake("c.example.test", kind="ecc") is not None

    # PATCH: nothing is due; all=1 renews every stored certificate in the background
    assert a.admin("PATCH", "/acme/certificates") == (202, {"scheduled": 0})
    before = {c["name"]: c["serial"] for c in a.admin("GET", "/acme/certificates")[1][
        "certificates"]}
    assert a.admin("PATCH", "/acme/certificates?all=1") == (202, {"scheduled": 2})
    deadline = time.monotonic() + 30
    while True:
        now_serials = {c["name"]: c["serial"] for c in a.admin("GET", "/acme/certificates")[1][
            "certificates"]}
        if all(now_serials[n] != before[n] for n in before):
            break
        assert time.monotonic() < deadline, a.nginx.log_tail(20)
        time.sleep(0.3)

    # metrics, parsed as Prometheus parses them
    time.sleep(1.5)  # counters are folded into the shared dict once a second
    m = samples(a.metrics_text())
    ok_orders = sample(m, "acme_orders_total", type="ecc", result="success")
    assert ok_orders == 7  # a, b, c, a renewed, c renewed, a and c renewed by PATCH
    assert sample(m, "acme_orders_total", type="ecc", result="failure") == 1
    assert sample(m, "acme_issue_duration_seconds_count", type="ecc") == ok_orders
    assert sample(m, "acme_issue_duration_seconds_bucket", type="ecc", le="+Inf") == ok_orders
    assert 0 < sample(m, "acme_issue_duration_seconds_sum", type="ecc") < 60 * ok_orders
    assert sample(m, "acme_certificates", type="ecc") == 2
    by_issuer = {dict(k[1])["issuer"]: v for k, v in m.items()
                 if k[0] == "acme_certificates_by_issuer"}
    assert sum(by_issuer.values()) == 2 and all("Pebble" in i or i for i in by_issuer)
    assert sample(m, "acme_certificates_by_days_left", days="30+") == 2
    assert sample(m, "acme_certificates_by_days_left", days="0-1") == 0
    assert sample(m, "acme_backoff_names", state="cooloff") == 1
    assert sample(m, "acme_backoff_names", state="failing") == 1
    assert sample(m, "acme_renewal_lag_max_seconds") == 0
    assert "[alert]" not in log and "[crit]" not in log


def test_declared_names_are_served_on_the_first_handshake(pebble, challtestsrv, nginx_factory,
                                                          workdir):
    """declared_names = "domain_whitelist": its exact entries are ordered at start, once
    across two workers, without any handshake and without blocking; the first handshake is
    served the real certificate; a reload orders nothing again."""
    domains = ["d1.example.test", "d2.example.test", "*.wild.example.test"]
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=domains,
                key_types=("ecc",), admin_token=TOKEN, workers=2,
                extra=ec_account(workdir)
                + 'declared_names = "domain_whitelist", renew_min_interval = 1,')
    deadline = time.monotonic() + 60
    while True:
        status, view = a.admin("GET", "/acme/certificates")
        if status == 200 and view["total"] == 2:
            break
        assert time.monotonic() < deadline, a.nginx.log_tail(40)
        time.sleep(0.3)
    assert sorted(c["name"] for c in view["certificates"]) == ["d1.example.test",
                                                               "d2.example.test"]
    assert "ssl_certificate" not in a.nginx.error_log()
    for name in ("d1.example.test", "d2.example.test"):
        cert = a.handshake(name, kind="ecc")
        assert not a.is_fallback(cert), name
    assert pebble.orders_count() == 2
    a.nginx.reload()  # the shm store lives on; the new workers' first pass orders nothing
    time.sleep(6)  # the first pass after start runs within 1-5 s
    assert pebble.orders_count() == 2
    assert not a.is_fallback(a.handshake("d1.example.test", kind="ecc"))


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def post_order(a, body, content_type, token=TOKEN):
    req = urllib.request.Request("http://127.0.0.1:%d/acme/order" % a.admin_port, data=body,
                                 method="POST", headers={"Content-Type": content_type})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def multipart(fields):
    boundary = "----acme-t-boundary-42"
    parts = []
    for name, value in fields:
        parts.append('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                     % (boundary, name, value))
    body = "".join(parts) + "--%s--\r\n" % boundary
    return body.encode(), "multipart/form-data; boundary=" + boundary


def verify_bundle(workdir, pebble, bundle, names):
    """openssl verify of the bundle's leaf against Pebble's root; returns (leaf, key PEM)."""
    certs = load_certs(bundle)
    assert len(certs) >= 2, bundle
    key_pem = re.search(r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.+?-----END (?:RSA |EC )?"
                        r"PRIVATE KEY-----\n", bundle, re.S).group(0)
    d = os.path.join(str(workdir), "verify%d" % len(os.listdir(str(workdir))))
    os.makedirs(d)
    paths = {}
    for what, pem in (("root", pebble.roots()[0]),
                      ("leaf", certs[0].public_bytes(serialization.Encoding.PEM).decode()),
                      ("chain", "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                                        for c in certs[1:]))):
        paths[what] = os.path.join(d, what + ".pem")
        with open(paths[what], "w") as f:
            f.write(pem)
    out = subprocess.run(["openssl", "verify", "-CAfile", paths["root"], "-untrusted",
                          paths["chain"], paths["leaf"]], capture_output=True, text=True)
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    assert (key.public_key().public_bytes(serialization.Encoding.PEM, pub)
            == certs[0].public_key().public_bytes(serialization.Encoding.PEM, pub))
    from cryptography import x509
    sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sorted(sans.value.get_values_for_type(x509.DNSName)) == sorted(names)
    return certs[0], key_pem


def test_order_endpoint_returns_a_verified_bundle(pebble, challtestsrv, nginx_factory, workdir):
    """The HAProxy seed's endpoint: POST names (+ keys), get the chain + key. Uploaded RSA
    domain and account keys (JSON), generated keys (multipart); `openssl verify` accepts the
    chain against Pebble's root; nothing is stored; refusals before any order."""
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                domains=["lb1.example.test", "www.lb1.example.test", "lb2.example.test"],
                key_types=("ecc",), admin_token=TOKEN, extra=ec_account(workdir))
    domain_key = pem_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    account_key = pem_key(ec.generate_private_key(ec.SECP256R1()))
    accounts0 = pebble.accounts_count()
    body = json.dumps({"names": ["lb1.example.test", "www.lb1.example.test"],
                       "domain_key": domain_key, "account_key": account_key}).encode()
    status, ctype, bundle = post_order(a, body, "application/json")
    assert status == 200, bundle
    assert ctype == "application/x-pem-file"
    leaf, key = verify_bundle(workdir, pebble, bundle, ["lb1.example.test", "www.lb1.example.test"])
    assert key.strip() == domain_key.strip()
    assert pebble.accounts_count() == accounts0 + 1  # the uploaded account key's own account

    # multipart, names only: an EC key is generated and returned, autossl's account is used
    body, ctype = multipart([("names", "lb2.example.test"), ("key_type", "ecc")])
    status, _, bundle = post_order(a, body, ctype)
    assert status == 200, bundle
    _, key = verify_bundle(workdir, pebble, bundle, ["lb2.example.test"])
    assert "PRIVATE KEY" in key
    # and an RSA key when no key type is named
    body, ctype = multipart([("names", "lb2.example.test")])
    status, _, bundle = post_order(a, body, ctype)
    assert status == 200, bundle
    _, key = verify_bundle(workdir, pebble, bundle, ["lb2.example.test"])
    assert isinstance(serialization.load_pem_private_key(key.encode(), None),
                      rsa.RSAPrivateKey)

    # nothing was stored: the endpoint's certificates belong to its callers
    assert a.admin("GET", "/acme/certificates")[1]["total"] == 0
    orders = pebble.orders_count()
    assert post_order(a, body, ctype, token="")[0] == 401
    assert post_order(a, b'{"names": []}', "application/json")[0] == 400
    assert post_order(a, b'{"names": ["evil.other.test"]}', "application/json")[0] == 403
    assert post_order(a, b'{"names": ["lb2.example.test"], "domain_key": "junk"}',
                      "application/json")[0] == 400
    assert pebble.orders_count() == orders
    log = a.nginx.error_log()
    assert domain_key.splitlines()[1] not in log  # keys never logged
    time.sleep(1.5)
    m = samples(a.metrics_text())
    assert sample(m, "acme_endpoint_orders_total", result="success") == 3
    assert sample(m, "acme_endpoint_orders_total", result="refused") == 4


def test_admin_list_pages_through_a_hundred_thousand_names(pebble, challtestsrv, nginx_factory,
                                                           workdir):
    """10^5 stored names: a page, a name filter and the failures list answer in well under a
    second each, reading only the entries of the page (the rest is never parsed)."""
    port = free_port()
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["x.example.test"],
                key_types=("ecc",), admin_token=TOKEN, extra_http=eval_server(port), workers=1,
                extra=ec_account(workdir))
    req = urllib.request.Request("http://127.0.0.1:%d/eval" % port, method="POST", data=b"""
      local storage = require("resty.acme.autossl").storage
      for i = 1, 100000 do
        local err = storage:set(string.format("domain:ecc:n%06d.example.test", i), "x")
        if err then return { err = err } end
      end
      return { ok = true }""")
    with urllib.request.urlopen(req, timeout=120) as r:
        assert json.loads(r.read()).get("ok") is True
    t0 = time.monotonic()
    status, page = a.admin("GET", "/acme/certificates?offset=50000&limit=100")
    took = time.monotonic() - t0
    assert status == 200 and page["total"] == 100000 and page["next_offset"] == 50100
    names = [c["name"] for c in page["certificates"]]
    assert names[0] == "n050001.example.test" and len(names) == 100
    assert all(c.get("error") for c in page["certificates"])  # "x" is no entry: each says so
    assert took < 3, took
    t0 = time.monotonic()
    status, page = a.admin("GET", "/acme/certificates?name=n09999")
    assert page["total"] == 10 and time.monotonic() - t0 < 3


@pytest.mark.slow
def test_expiring_event_fires_once_per_window(pebble, challtestsrv, nginx_factory, workdir):
    """A stored certificate two days from its end (within events_expiring_within, 3 days)
    whose renewal keeps failing (for Pebble's VA the name resolves to 127.0.0.2): every renewal
    pass (each second, in the worker that holds renewal_owner:) comes to it again, yet
    `expiring` fires once per events_expiring_interval (8 s), marked in storage for the whole
    cluster, with the certificate's end."""
    name = "exp.example.test"
    challtestsrv.add_a(name, "127.0.0.2")
    ca = TestCA(os.path.join(str(workdir), "oldca"))
    store = os.path.join(str(workdir), "store")
    os.makedirs(store)
    now = datetime.datetime.now(datetime.timezone.utc)
    nb = now - datetime.timedelta(days=88)
    not_after = nb + datetime.timedelta(days=90)
    cert_pem, key_pem = ca.leaf_pem([name], not_before=nb, not_after=not_after)
    put_entry(store, name, cert_pem, key_pem, updated=nb.timestamp())
    callback = """
      events_callback = function(event, data)
        ngx.log(ngx.NOTICE, "t: event ", event, " ", data.domain, " ", data.type, " ",
                tostring(data.not_after), " at ", string.format("%.3f", ngx.now()))
      end,"""
    a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=[name],
                key_types=("ecc",), workers=2,
                extra=ec_account(workdir) + file_store(store, callback +
                " events_expiring_interval = 8, renew_check_interval = 1,"
                " renew_min_interval = 1, failure_cooloff = 1, failure_cooloff_cap = 1,"))
    pat = re.compile(r"t: event expiring %s ecc (\d+) at ([\d.]+)" % re.escape(name))
    a.nginx.wait_log(pat.pattern, timeout=30)
    time.sleep(26)
    log = a.nginx.error_log()
    fired = [(int(na), float(at)) for na, at in pat.findall(log)]
    passes = log.count("renewing ecc certificate for " + name)
    assert all(na == int(not_after.timestamp()) for na, _ in fired), fired
    ts = [at for _, at in fired]
    # about 26 s after the first: at 0, 8, 16, 24 (a pass comes each second: a little later)
    assert 3 <= len(ts) <= 4, (ts, passes)
    for prev, nxt in zip(ts, ts[1:]):
        assert 8 - 0.02 <= nxt - prev <= 8 + 4, ts
    # every pass came to the renewal (and would have fired it), all in the one renewal owner
    assert passes >= 3 * len(ts), (passes, ts)
    workers = set(re.findall(r"\[info\] (\d+)#\d+: \*\d+ \[acme\] \S+ renewing ecc", log))
    assert len(workers) == 1, workers
