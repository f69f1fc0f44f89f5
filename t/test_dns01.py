"""dns-01 end to end with the rfc2136 provider against a real BIND 9 (named) and a real Pebble
whose VA resolves through that BIND (no challtestsrv): the client issues example.test plus
*.example.test, autossl serves the wildcard certificate for any sub-name after one order, and
TSIG failures, propagation timeouts and cleanup behave."""

import json
import time

from harness import AutoSSL, free_port
from harness.control import control_nginx, post
from pemutil import dns_names, leaf



def lua(v):
    """A Python value as Lua source (dicts, lists, strings, numbers, booleans)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "{ %s }" % ", ".join(lua(x) for x in v)
    if isinstance(v, dict):
        return "{ %s }" % ", ".join("[%s] = %s" % (json.dumps(k), lua(x)) for k, x in v.items())
    raise TypeError(v)


def account(bind, **secret_overrides):
    extra = {k: secret_overrides.pop(k) for k in list(secret_overrides)
             if k in ("propagation_timeout", "propagation_interval", "nameservers")}
    a = {"name": "bind", "provider": "rfc2136", "secret": bind.rfc2136_secret(**secret_overrides),
         "domains": ["example.test"]}
    a.update(extra)
    return a


def dns_control_nginx(nginx_factory, pebble):
    """nginx with the client and dns-01 test endpoints (t/lua/acme_t.lua, t/lua/dns_t.lua)."""
    return control_nginx(
        nginx_factory,
        api_uri=pebble.directory_url if pebble else "https://127.0.0.1:1/dir",
        ca_pem=pebble.ca_pem if pebble else "/etc/ssl/certs/ca-certificates.crt",
        extra='enabled_challenge_handlers = { "dns-01" },',
        endpoints=["acme_t.order", "acme_t.keys", "dns_t.provider", "dns_t.dns01",
                   "dns_t.query"])


def order(n, acct, names, **conf):
    conf = dict(conf)
    conf["dns_provider_accounts"] = [acct]
    return post(n, "/order", {"names": names, "key_type": "EC", "curve": "prime256v1",
                              "conf": conf})


# --- the provider and the DNS client against named ----------------------------------------

def test_rfc2136_provider_adds_and_deletes_txt_records(bind, nginx_factory, core_so):
    n = dns_control_nginx(nginx_factory, None)
    fqdn = "_acme-challenge.www.example.test"

    def call(method, *args, **secret):
        return post(n, "/provider", {"provider": "rfc2136", "secret": bind.rfc2136_secret(**secret),
                                     "method": method, "args": list(args)})

    assert call("post_txt_record", fqdn, "value-one") == {"ok": True}
    assert call("post_txt_record", fqdn, "value-two") == {"ok": True}
    assert sorted(bind.txt(fqdn)) == ["value-one", "value-two"]
    # zone discovery through an SOA query when no zone is configured
    assert call("post_txt_record", "_acme-challenge.example.test", "apex", zone=None) == {"ok": True}
    assert bind.txt("_acme-challenge.example.test") == ["apex"]
    # deleting with content removes that record only; without content the whole TXT RRset
    assert call("delete_txt_record", fqdn, "value-one", tsig_algorithm=None) == {"ok": True}
    assert bind.txt(fqdn) == ["value-two"]
    assert call("delete_txt_record", fqdn) == {"ok": True}
    assert bind.txt(fqdn) == []
    assert call("delete_txt_record", "_acme-challenge.example.test", zone=None) == {"ok": True}
    assert bind.txt("_acme-challenge.example.test") == []
    # the DNS client reads it back (UDP), with the zone from the SOA
    r = post(n, "/query", {"server": bind.server, "name": "nothing.example.test", "qtype": "TXT"})
    assert r["res"]["rcode"] == "NOERROR" and not r["res"]["txt"], r
    r = post(n, "/query", {"server": bind.server, "name": "_x.example.test", "qtype": "SOA",
                           "opts": {"tcp": True}})
    assert r["res"]["zone"] == "example.test", r
    # a reply too large for UDP comes back truncated and is fetched again over TCP
    big = "_acme-challenge.big.example.test"
    values = ["%02d-%s" % (i, "v" * 70) for i in range(12)]
    for v in values:
        assert call("post_txt_record", big, v) == {"ok": True}
    r = post(n, "/query", {"server": bind.server, "name": big, "qtype": "TXT"})
    assert sorted(r["res"]["txt"]) == values, r
    # an update too large for a datagram goes over TCP
    huge = "h" * 700
    assert call("post_txt_record", big, huge) == {"ok": True}
    r = post(n, "/query", {"server": bind.server, "name": big, "qtype": "TXT"})
    assert huge in r["res"]["txt"], r
    assert call("delete_txt_record", big) == {"ok": True}
    assert bind.txt(big) == []
    # named logged signed, approved updates
    assert "signer \"acme-key\" approved" in bind.log()
    log = n.error_log()
    assert bind.secret not in log
    assert "[error]" not in log


def test_rfc2136_provider_errors_name_provider_server_and_rcode(bind, nginx_factory, core_so):
    n = dns_control_nginx(nginx_factory, None)
    fqdn = "_acme-challenge.www.example.test"

    def call(method, *args, **secret):
        return post(n, "/provider", {"provider": "rfc2136", "secret": bind.rfc2136_secret(**secret),
                                     "method": method, "args": list(args)})

    wrong = call("post_txt_record", fqdn, "v", tsig_secret="d3JvbmctIHNlY3JldC0xMjM0NTY3ODkwMTIzNDU2")
    assert wrong.get("ok") is None, wrong
    assert wrong["err"].startswith("rfc2136: server %s did not add %s in zone example.test: "
                                   "NOTAUTH/BADSIG: " % (bind.server, fqdn)), wrong
    badkey = call("post_txt_record", fqdn, "v", tsig_key_name="other-key.")
    assert "NOTAUTH/BADKEY" in badkey["err"] and "rfc2136" in badkey["err"], badkey
    badalg = call("post_txt_record", fqdn, "v", tsig_algorithm="hmac-sha512")
    assert "NOTAUTH/BADKEY" in badalg["err"], badalg
    refused = call("post_txt_record", fqdn, "v", tsig_key_name=bind.ro_key_name,
                   tsig_secret=bind.ro_secret)
    assert refused["err"] == ("rfc2136: server %s did not add %s in zone example.test: REFUSED: "
                              "the server refused the update: check allow-update / update-policy "
                              "for the key and zone" % (bind.server, fqdn)), refused
    notzone = call("post_txt_record", "_acme-challenge.example.org", "v")
    assert notzone["err"] == ("rfc2136: add _acme-challenge.example.org: invalid input: "
                              "_acme-challenge.example.org is not within zone example.test"), notzone
    # a zone the server does not serve: named refuses it (NOTAUTH for a zone it is not
    # authoritative for)
    other = call("post_txt_record", "_acme-challenge.example.org", "v", zone="example.org")
    assert "rfc2136" in other["err"] and "NOTAUTH" in other["err"], other
    # no server listening: the exchange times out, naming the server
    dead = "127.0.0.1:%d" % free_port()
    gone = call("post_txt_record", fqdn, "v", server=dead, timeout=300, retries=1)
    assert gone["err"] == ("rfc2136: add %s at %s failed: no reply from %s over udp after 2 "
                           "tries: timeout" % (fqdn, dead, dead)) or "connection refused" in gone["err"], gone
    # configuration errors
    r = post(n, "/provider", {"provider": "rfc2136", "secret": "just-a-token"})
    assert r["new_err"].startswith("rfc2136: secret must be a table"), r
    r = post(n, "/provider", {"provider": "rfc2136",
                              "secret": bind.rfc2136_secret(tsig_secret=None)})
    assert r["new_err"] == "rfc2136: tsig_secret is required", r
    r = post(n, "/provider", {"provider": "rfc2136",
                              "secret": bind.rfc2136_secret(tsig_algorithm="hmac-md5")})
    assert "unsupported tsig algorithm" in r["new_err"], r
    assert bind.txt(fqdn) == []
    assert bind.secret not in n.error_log()


# --- the client: example.test + *.example.test through dns-01 -----------------------------

def test_rfc2136_client_issues_apex_and_wildcard(bind, pebble_bind, nginx_factory, core_so):
    n = dns_control_nginx(nginx_factory, pebble_bind)
    res = order(n, account(bind, zone=None), ["example.test", "*.example.test"])
    assert res.get("err") is None, res
    cert = leaf(res["cert"])
    assert dns_names(cert) == ["*.example.test", "example.test"]
    # both TXT records were published, seen on the server, then removed
    log = n.error_log()
    assert log.count("is visible on %s" % bind.server) == 2, log
    assert log.count("deleted TXT record _acme-challenge.example.test through rfc2136") == 2, log
    assert bind.txt("_acme-challenge.example.test") == []
    keys = post(n, "/keys", {})["keys"]
    assert not [k for k in keys if k.endswith("#dns-01")], keys
    # Pebble validated through BIND, not some other resolver
    assert "Using custom DNS resolver for ACME challenges: %s" % bind.server in pebble_bind.log()
    assert "[error]" not in log
    assert bind.secret not in log


def test_rfc2136_wrong_secret_fails_the_order_and_leaves_no_record(bind, pebble_bind,
                                                                   nginx_factory, core_so):
    n = dns_control_nginx(nginx_factory, pebble_bind)
    res = order(n, account(bind, tsig_secret="d3JvbmctIHNlY3JldC0xMjM0NTY3ODkwMTIzNDU2"),
                ["example.test"])
    err = res.get("err") or ""
    assert "rfc2136" in err and "NOTAUTH/BADSIG" in err and bind.server in err, res
    assert "account bind" in err, err
    assert bind.txt("_acme-challenge.example.test") == []
    keys = post(n, "/keys", {})["keys"]
    assert not [k for k in keys if k.endswith("#dns-01")], keys


def test_rfc2136_propagation_timeout_fails_and_removes_the_record(bind, pebble_bind,
                                                                 nginx_factory, core_so):
    n = dns_control_nginx(nginx_factory, pebble_bind)
    dead = "127.0.0.1:%d" % free_port()
    t0 = time.monotonic()
    res = order(n, account(bind, nameservers=[bind.server, dead], propagation_timeout=3,
                           propagation_interval=1), ["www.example.test"])
    took = time.monotonic() - t0
    err = res.get("err") or ""
    assert ("timeout (3s) exceeded waiting for TXT record _acme-challenge.www.example.test on %s"
            % dead) in err, res
    assert "rfc2136" in err
    assert took < 20, took
    # the record was created (the server did answer it) and removed after the failure
    log = n.error_log()
    assert "created TXT record _acme-challenge.www.example.test through rfc2136" in log
    assert "deleted TXT record _acme-challenge.www.example.test through rfc2136" in log
    assert bind.txt("_acme-challenge.www.example.test") == []
    # the CA was never asked to validate
    assert "POST /chalZ/" not in pebble_bind.log()


# --- autossl: one wildcard order serves every sub-name -------------------------------------

def autossl_extra(acct, cooloff=300):
    return """
      enabled_challenge_handlers = { "dns-01" },
      failure_cooloff = %d,
      dns_provider_accounts = { %s },""" % (cooloff, lua(acct))


def test_rfc2136_autossl_serves_wildcard_for_new_sub_names(bind, pebble_bind, nginx_factory,
                                                          workdir, core_so):
    a = AutoSSL(nginx_factory, pebble_bind, bind, workdir, domains=["*.example.test"],
                key_types=("ecc",), workers=2, extra=autossl_extra(account(bind)))
    first = a.wait_issued("new.example.test", timeout=60)
    assert dns_names(first) == ["*.example.test"]
    assert pebble_bind.orders_count() == 1
    # another sub-name: the same certificate, no second order (a worker that cached "not in
    # the store" before the issuance sees it within negative_cache_ttl)
    for name in ("other.example.test", "x1.example.test", "new.example.test"):
        cert = a.wait_issued(name, timeout=10)
        assert cert.serial_number == first.serial_number, name
    # a name two labels down is not covered by the wildcard: never served with it
    deep = a.handshake("a.b.example.test")
    assert deep.serial_number != first.serial_number
    time.sleep(1)
    assert bind.txt("_acme-challenge.example.test") == []
    log = a.nginx.error_log()
    assert "ordering ecc certificate for *.example.test" in log
    assert "is visible on %s" % bind.server in log
    assert bind.secret not in log


def test_rfc2136_autossl_native_serving_serves_wildcard_sub_names(bind, pebble_bind,
                                                                 nginx_factory, workdir,
                                                                 core_so):
    """native_serving: a sub-name the Lua phase served once from the wildcard's entry is
    served from the certificate callback from then on; a name the wildcard does not cover
    still runs the Lua block each time."""
    a = AutoSSL(nginx_factory, pebble_bind, bind, workdir, domains=["*.example.test"],
                key_types=("ecc",), workers=1,
                extra=autossl_extra(account(bind)) + " native_serving = true,",
                trace_lua_phase=True)
    first = a.wait_issued("new.example.test", timeout=60)
    for name in ("new.example.test", "other.example.test"):
        assert a.handshake(name).serial_number == first.serial_number, name
        n = a.lua_phase_runs(name)
        assert n >= 1, name
        for _ in range(3):
            assert a.handshake(name).serial_number == first.serial_number, name
        assert a.lua_phase_runs(name) == n, name
    deep = "a.b.example.test"
    for _ in range(2):
        assert a.handshake(deep).serial_number != first.serial_number
    assert a.lua_phase_runs(deep) == 2
    # the wildcard was ordered once and served its sub-names; the deep name (allowed by the
    # suffix rule, not covered by the wildcard) gets an order of its own in the background
    log = a.nginx.error_log()
    assert log.count("ordering ecc certificate for *.example.test") == 1
    for name in ("new.example.test", "other.example.test"):
        assert "ordering ecc certificate for %s," % name not in log


def test_rfc2136_autossl_bad_key_fails_with_cooloff(bind, pebble_bind, nginx_factory, workdir,
                                                   core_so):
    acct = account(bind, tsig_key_name="unknown-key.")
    a = AutoSSL(nginx_factory, pebble_bind, bind, workdir, domains=["*.example.test"],
                key_types=("ecc",), workers=1, extra=autossl_extra(acct, cooloff=300))
    assert a.is_fallback(a.handshake("new.example.test"))
    m = a.nginx.wait_log(r"failed to order ecc certificate for \*\.example\.test: (.*)", timeout=30)
    assert "rfc2136" in m.group(1) and "NOTAUTH/BADKEY" in m.group(1), m.group(1)
    assert pebble_bind.orders_count() == 1
    # cooloff: more handshakes, no new order
    for name in ("new.example.test", "other.example.test"):
        assert a.is_fallback(a.handshake(name))
    a.nginx.wait_log(r"cooling off", timeout=10)
    time.sleep(1)
    assert pebble_bind.orders_count() == 1
    assert bind.txt("_acme-challenge.example.test") == []
