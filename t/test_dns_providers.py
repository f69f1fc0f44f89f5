"""The HTTP dns providers (cloudflare, dynv6, dnspod-intl) and the dns-01 handler's account
selection, against a fake of each API over HTTPS (t/fakes/dns_apis.py), from inside nginx; and
one order through Pebble with the cloudflare provider, whose fake mirrors the records into
pebble-challtestsrv's DNS."""

import base64
import hashlib
import os

import pytest

from fakes.dns_apis import FakeDnsApis
from harness import TestCA, free_port
from harness.control import control_nginx
from harness.control import post as control_post
from pemutil import dns_names, leaf


CF_TOKEN = "cf-token-0123456789abcdef"
DV_TOKEN = "dv-token-0123456789abcdef"
DP_TOKEN = "123456,dp0123456789abcdef0123456789abcd"
TOKENS = {"cloudflare": CF_TOKEN, "dynv6": DV_TOKEN, "dnspod": DP_TOKEN}


def dns01_value(key_authorization):
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.fixture
def fake(workdir):
    ca = TestCA(os.path.join(str(workdir), "fake-ca"), name="fake dns api CA")
    f = FakeDnsApis(
        ca, TOKENS,
        # 60 zones: the ones used are on the second page of 50
        cloudflare_zones=["filler%02d.test" % i for i in range(57)]
        + ["example.test", "sub.example.test", "myexample.test"],
        dynv6_zones=["example.test", "sub.example.test"],
        dnspod_domains=["example.test", "shop.example.test"],
    ).start()
    yield f
    f.stop()


def dns_control_nginx(nginx_factory, workdir, ca_files, api_uri="https://127.0.0.1:1/dir"):
    bundle = os.path.join(str(workdir), "trusted.pem")
    with open(bundle, "w") as out:
        for path in ca_files:
            with open(path) as f:
                out.write(f.read())
    return control_nginx(
        nginx_factory, api_uri=api_uri, ca_pem=bundle,
        extra='enabled_challenge_handlers = { "dns-01" },',
        endpoints=["acme_t.order", "acme_t.keys", "dns_t.provider", "dns_t.dns01"])


def post(n, path, args, timeout=60):
    return control_post(n, path, args, timeout)


class Provider:
    def __init__(self, n, fake, name, api):
        self.n, self.fake, self.name, self.api = n, fake, name, api

    def secret(self, **kw):
        s = {"token": TOKENS[self.api], "api_base": self.fake.api_base(self.api)}
        s.update(kw)
        return s

    def call(self, method, *args, **secret):
        return post(self.n, "/provider", {"provider": self.name, "secret": self.secret(**secret),
                                          "method": method, "args": list(args)})

    def requests(self):
        return [r for r in self.fake.requests if r["api"] == self.api]


@pytest.fixture
def nginx_fake(nginx_factory, workdir, fake, core_so):
    return dns_control_nginx(nginx_factory, workdir, [fake.ca.ca_pem])


def no_secrets_logged(n):
    log = n.error_log()
    for t in TOKENS.values():
        assert t not in log
    assert "[alert]" not in log and "[crit]" not in log


# --- cloudflare ---------------------------------------------------------------------------

def test_cloudflare_creates_and_deletes_exactly_its_records(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "cloudflare", "cloudflare")
    fqdn = "_acme-challenge.www.example.test"
    zid = fake.cf_zone_id("example.test")
    # records that must survive: another type, another name, another value
    fake.add_cloudflare_record("example.test", "A", fqdn, "192.0.2.1")
    fake.add_cloudflare_record("example.test", "TXT", "x." + fqdn, "keep-me")
    fake.add_cloudflare_record("example.test", "TXT", fqdn, "other-value")

    assert p.call("post_txt_record", fqdn, "the-value") == {"ok": True}
    reqs = p.requests()
    # zones are listed page by page until the last page
    zone_pages = [r for r in reqs if r["path"] == "/zones"]
    assert [r["query"]["page"] for r in zone_pages] == ["1", "2"]
    assert all(r["method"] == "GET" and r["query"]["per_page"] == "50" for r in zone_pages)
    create = reqs[-1]
    assert (create["method"], create["path"]) == ("POST", "/zones/%s/dns_records" % zid)
    assert create["headers"]["authorization"] == "Bearer " + CF_TOKEN
    assert create["headers"]["content-type"] == "application/json"
    assert create["body"] == {"type": "TXT", "name": fqdn, "content": "the-value"}
    assert ("TXT", fqdn, "the-value") in fake.records("cloudflare")

    # posting the same record again: the API says 81058, which is fine
    assert p.call("post_txt_record", fqdn, "the-value") == {"ok": True}

    # delete with content: only that TXT record
    before = len(fake.requests)
    assert p.call("delete_txt_record", fqdn, "the-value") == {"ok": True}
    new = fake.requests[before:]
    listing = [r for r in new if r["path"] == "/zones/%s/dns_records" % zid]
    assert listing and listing[0]["query"]["type"] == "TXT" and listing[0]["query"]["name"] == fqdn
    deletes = [r for r in new if r["method"] == "DELETE"]
    assert len(deletes) == 1
    assert deletes[0]["path"].startswith("/zones/%s/dns_records/" % zid)
    assert deletes[0]["headers"]["authorization"] == "Bearer " + CF_TOKEN
    recs = fake.records("cloudflare")
    assert ("TXT", fqdn, "the-value") not in recs
    assert ("TXT", fqdn, "other-value") in recs
    # delete without content: every TXT record of exactly that name, nothing else
    assert p.call("delete_txt_record", fqdn) == {"ok": True}
    recs = fake.records("cloudflare")
    assert ("TXT", fqdn, "other-value") not in recs
    assert ("A", fqdn, "192.0.2.1") in recs and ("TXT", "x." + fqdn, "keep-me") in recs
    # nothing left to delete is not an error
    assert p.call("delete_txt_record", fqdn) == {"ok": True}
    no_secrets_logged(nginx_fake)


def test_cloudflare_zone_is_the_longest_parent_not_a_substring(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "cloudflare", "cloudflare")
    assert p.call("post_txt_record", "_acme-challenge.a.sub.example.test", "v") == {"ok": True}
    assert p.requests()[-1]["path"] == "/zones/%s/dns_records" % fake.cf_zone_id("sub.example.test")
    # "example.test" occurs in "_acme-challenge.notmyexample.test" but is not its parent
    r = p.call("post_txt_record", "_acme-challenge.notmyexample.test", "v")
    assert r["err"] == ("cloudflare: no zone of this account contains "
                        "_acme-challenge.notmyexample.test (60 zones listed)"), r
    r = p.call("post_txt_record", "_acme-challenge.example.org", "v")
    assert r["err"].startswith("cloudflare: no zone of this account contains"), r


def test_cloudflare_api_errors_are_clear(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "cloudflare", "cloudflare")
    r = p.call("post_txt_record", "_acme-challenge.example.test", "v", token="wrong-token")
    assert r["err"] == ("cloudflare: GET /zones returned HTTP 403: Authentication error "
                        "(code 10000)"), r
    r = p.call("delete_txt_record", "_acme-challenge.example.test", token="wrong-token")
    assert "HTTP 403" in r["err"] and r["err"].startswith("cloudflare: "), r
    r = post(nginx_fake, "/provider", {"provider": "cloudflare", "secret": ""})
    assert r == {"new_err": "api token is needed"}
    # a plain string secret and the module-level api_base work as in the original
    r = post(nginx_fake, "/provider", {"provider": "cloudflare", "secret": CF_TOKEN,
                                       "api_base_field": fake.api_base("cloudflare"),
                                       "method": "post_txt_record",
                                       "args": ["_acme-challenge.plain.example.test", "v"]})
    assert r == {"ok": True}
    # an API that is not there
    r = p.call("post_txt_record", "_acme-challenge.example.test", "v",
               api_base="https://127.0.0.1:%d/client/v4" % free_port())
    assert r["err"].startswith("cloudflare: GET /zones failed: "), r
    no_secrets_logged(nginx_fake)


# --- dynv6 --------------------------------------------------------------------------------

def test_dynv6_creates_and_deletes_exactly_its_records(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "dynv6", "dynv6")
    zid = fake.dv_zone_id("example.test")
    # the original deleted any record whose name occurs in the fqdn (even "" and other types)
    fake.add_dynv6_record("example.test", "A", "", "192.0.2.1")
    fake.add_dynv6_record("example.test", "A", "_acme-challenge.www", "192.0.2.2")
    fake.add_dynv6_record("example.test", "TXT", "www", "keep-me")
    fake.add_dynv6_record("example.test", "TXT", "_acme-challenge.www", "other-value")

    fqdn = "_acme-challenge.www.example.test"
    assert p.call("post_txt_record", fqdn, "the-value") == {"ok": True}
    create = p.requests()[-1]
    assert (create["method"], create["path"]) == ("POST", "/zones/%d/records" % zid)
    assert create["headers"]["authorization"] == "Bearer " + DV_TOKEN
    assert create["body"] == {"type": "TXT", "name": "_acme-challenge.www", "data": "the-value"}
    assert p.requests()[-2]["path"] == "/zones" and p.requests()[-2]["method"] == "GET"

    assert p.call("delete_txt_record", fqdn, "the-value") == {"ok": True}
    dels = [r for r in p.requests() if r["method"] == "DELETE"]
    assert len(dels) == 1 and dels[0]["path"].startswith("/zones/%d/records/" % zid)
    recs = fake.records("dynv6")
    assert ("TXT", fqdn, "the-value") not in recs and ("TXT", fqdn, "other-value") in recs
    assert p.call("delete_txt_record", fqdn) == {"ok": True}
    assert fake.records("dynv6") == sorted([
        ("A", "example.test", "192.0.2.1"), ("A", fqdn, "192.0.2.2"),
        ("TXT", "www.example.test", "keep-me")])

    # the apex record name is "" relative to the zone; a deeper zone wins over its parent
    assert p.call("post_txt_record", "_acme-challenge.x.sub.example.test", "v") == {"ok": True}
    create = p.requests()[-1]
    assert create["path"] == "/zones/%d/records" % fake.dv_zone_id("sub.example.test")
    assert create["body"]["name"] == "_acme-challenge.x"
    no_secrets_logged(nginx_fake)


def test_dynv6_api_errors_are_clear(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "dynv6", "dynv6")
    r = p.call("post_txt_record", "_acme-challenge.example.test", "v", token="wrong")
    assert r["err"] == "dynv6: GET /zones returned HTTP 401 unauthorized (bad token): Unauthorized", r
    r = p.call("post_txt_record", "_acme-challenge.example.org", "v")
    assert r["err"] == "dynv6: no zone of this account contains _acme-challenge.example.org", r
    r = p.call("post_txt_record", "_acme-challenge.myexample.test", "v")
    assert r["err"].startswith("dynv6: no zone of this account contains"), r
    r = post(nginx_fake, "/provider", {"provider": "dynv6", "secret": None})
    assert r == {"new_err": "api token is needed"}
    no_secrets_logged(nginx_fake)


# --- dnspod-intl --------------------------------------------------------------------------

def test_dnspod_creates_and_deletes_exactly_its_records(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "dnspod-intl", "dnspod")
    fake.add_dnspod_record("example.test", "A", "_acme-challenge.www", "192.0.2.1")
    fake.add_dnspod_record("example.test", "TXT", "_acme-challenge.www", "other-value")
    fqdn = "_acme-challenge.www.example.test"

    assert p.call("post_txt_record", fqdn, "the-value") == {"ok": True}
    create = p.requests()[-1]
    assert (create["method"], create["path"]) == ("POST", "/Record.Create")
    assert create["headers"]["user-agent"] == "lua-resty-acme/0.0.0 (noreply@github.com)"
    assert create["headers"]["content-type"] == "application/json"
    assert "authorization" not in create["headers"]
    assert create["body"] == {
        "login_token": DP_TOKEN, "format": "json", "lang": "en", "error_on_empty": "no",
        "domain": "example.test", "sub_domain": "_acme-challenge.www", "record_type": "TXT",
        "record_line": "default", "value": "the-value", "ttl": 600}

    assert p.call("delete_txt_record", fqdn, "the-value") == {"ok": True}
    calls = [(r["path"], r["body"].get("sub_domain"), r["body"].get("record_id"))
             for r in p.requests()[-2:]]
    assert calls[0] == ("/Record.List", "_acme-challenge.www", None)
    assert calls[1][0] == "/Record.Remove" and calls[1][2]
    recs = fake.records("dnspod")
    assert ("TXT", fqdn, "other-value") in recs and ("TXT", fqdn, "the-value") not in recs
    assert p.call("delete_txt_record", fqdn) == {"ok": True}
    assert fake.records("dnspod") == [("A", fqdn, "192.0.2.1")]

    # a configured zone for names below a domain of more than two labels; "@" at the apex
    assert p.call("post_txt_record", "_acme-challenge.shop.example.test", "v",
                  zone="shop.example.test") == {"ok": True}
    assert p.requests()[-1]["body"]["domain"] == "shop.example.test"
    assert p.requests()[-1]["body"]["sub_domain"] == "_acme-challenge"
    no_secrets_logged(nginx_fake)


def test_dnspod_errors_inside_http_200_are_detected(nginx_fake, fake):
    p = Provider(nginx_fake, fake, "dnspod-intl", "dnspod")
    r = p.call("post_txt_record", "_acme-challenge.example.test", "v", token="1,wrong")
    assert r["err"] == "dnspod-intl: Record.Create failed: Login failed. (code -1)", r
    r = p.call("delete_txt_record", "_acme-challenge.example.test", token="1,wrong")
    assert r["err"] == "dnspod-intl: Record.List failed: Login failed. (code -1)", r
    r = p.call("post_txt_record", "_acme-challenge.example.org", "v")
    assert r["err"] == "dnspod-intl: Record.Create failed: Domain id is invalid. (code 6)", r
    # with the original's last-two-labels rule, shop.example.test's records go to example.test
    r = p.call("post_txt_record", "_acme-challenge.shop.example.test", "v")
    assert r == {"ok": True} and p.requests()[-1]["body"]["domain"] == "example.test"
    no_secrets_logged(nginx_fake)


# --- the dns-01 handler: accounts, selection, errors --------------------------------------

def accounts(fake):
    return [
        {"name": "cf", "provider": "cloudflare",
         "secret": {"token": CF_TOKEN, "api_base": fake.api_base("cloudflare")},
         "domains": ["example.test"]},
        {"name": "dv", "provider": "dynv6",
         "secret": {"token": DV_TOKEN, "api_base": fake.api_base("dynv6")},
         "domains": ["sub.example.test", "*.other.test"]},
    ]


def test_dns01_picks_accounts_by_exact_then_parent_domain(nginx_fake, fake):
    ka = "token-abc.thumbprint-xyz"
    value = dns01_value(ka)
    steps = [{"action": "register", "token": "t", "key_authorization": ka, "names": [name]}
             for name in ("www.example.test", "*.example.test", "a.b.sub.example.test",
                          "*.sub.example.test", "example.test")]
    r = post(nginx_fake, "/dns01", {"accounts": accounts(fake), "steps": steps})
    assert [s.get("err") for s in r["results"]] == [None] * 5, r
    cf = fake.records("cloudflare")
    assert ("TXT", "_acme-challenge.www.example.test", value) in cf
    assert ("TXT", "_acme-challenge.example.test", value) in cf
    dv = fake.records("dynv6")
    assert ("TXT", "_acme-challenge.a.b.sub.example.test", value) in dv
    assert ("TXT", "_acme-challenge.sub.example.test", value) in dv
    assert sorted(k for k in r["keys"] if k.endswith("#dns-01")) == sorted(
        ["www.example.test#dns-01", "*.example.test#dns-01", "a.b.sub.example.test#dns-01",
         "*.sub.example.test#dns-01", "example.test#dns-01"])
    # no nameservers configured: the check is skipped, and the log says so
    assert "not checking that _acme-challenge.www.example.test is visible" in nginx_fake.error_log()

    # cleanup removes the stored challenge and the records
    steps = [{"action": "cleanup", "token": "t", "names": s["names"]} for s in steps]
    r = post(nginx_fake, "/dns01", {"accounts": accounts(fake), "steps": steps})
    assert [s.get("err") for s in r["results"]] == [None] * 5, r
    assert not [k for k in r["keys"] if k.endswith("#dns-01")]
    assert not [x for x in fake.records("cloudflare") if x[0] == "TXT"]
    assert not [x for x in fake.records("dynv6") if x[0] == "TXT"]

    # no account for the name; an exact wildcard entry does not cover other names
    steps = [{"action": "register", "token": "t", "key_authorization": ka, "names": [n]}
             for n in ("www.example.org", "a.other.test", "*.other.test")]
    r = post(nginx_fake, "/dns01", {"accounts": accounts(fake), "steps": steps})
    errs = [s.get("err") for s in r["results"]]
    assert errs[0] == "no dns provider key configured for domain www.example.org"
    assert errs[1] == "no dns provider key configured for domain a.other.test"
    # *.other.test is dv's: dynv6 has no zone for it
    assert errs[2] == ("dns provider dynv6 (account dv) failed to create TXT record "
                       "_acme-challenge.other.test: no zone of this account contains "
                       "_acme-challenge.other.test"), errs
    no_secrets_logged(nginx_fake)


def test_dns01_provider_errors_name_provider_and_account(nginx_fake, fake):
    accts = accounts(fake)
    accts[0]["secret"]["token"] = "bad-token"
    ka = "token-abc.thumbprint-xyz"
    r = post(nginx_fake, "/dns01", {"accounts": accts, "steps": [
        {"action": "register", "token": "t", "key_authorization": ka, "names": ["example.test"]},
        {"action": "cleanup", "token": "t", "names": ["example.test"]}]})
    reg, clean = [s.get("err") for s in r["results"]]
    assert reg == ("dns provider cloudflare (account cf) failed to create TXT record "
                   "_acme-challenge.example.test: GET /zones returned HTTP 403: "
                   "Authentication error (code 10000)"), reg
    assert clean.startswith("dns provider cloudflare (account cf) failed to delete TXT record "
                            "_acme-challenge.example.test: GET /zones returned HTTP 403"), clean
    assert not [k for k in r["keys"] if k.endswith("#dns-01")]
    accts[0]["secret"] = {"token": ""}
    r = post(nginx_fake, "/dns01", {"accounts": accts, "steps": [
        {"action": "register", "token": "t", "key_authorization": ka, "names": ["example.test"]}]})
    assert r["results"][0]["err"] == ("dns provider cloudflare (account cf) cannot be used: "
                                      "dns provider init error: api token is needed"), r


@pytest.mark.parametrize("acct,err", [
    ({"provider": "cloudflare", "secret": "x"},
     "#1 element in dns_provider_accounts doesn't have a name"),
    ({"name": "a", "provider": "cloudflare"}, "dns provider account a doesn't have a secret"),
    ({"name": "a", "secret": "x"}, "dns provider account a doesn't have a provider"),
    ({"name": "a", "provider": "no-such-provider", "secret": "x"},
     "dns provider no-such-provider failed to load: "),
    ({"name": "a", "provider": "cloudflare", "secret": "x", "nameservers": ["127.0.0.1:99999"]},
     "dns provider account a: invalid port in dns server 127.0.0.1:99999"),
])
def test_dns01_account_config_errors(nginx_fake, acct, err):
    r = post(nginx_fake, "/dns01", {"accounts": [acct]})
    assert r["info_err"].startswith(err), r


def test_dns01_propagation_check_uses_configured_nameservers(nginx_fake, fake):
    accts = accounts(fake)
    dead = "127.0.0.1:%d" % free_port()
    accts[0]["nameservers"] = [dead]
    accts[0]["propagation_timeout"] = 2
    accts[0]["propagation_interval"] = 1
    r = post(nginx_fake, "/dns01", {"accounts": accts, "steps": [
        {"action": "register", "token": "t", "key_authorization": "k.t", "names": ["example.test"]},
        {"action": "cleanup", "token": "t", "names": ["example.test"]}]})
    reg, clean = r["results"]
    assert reg["err"].startswith(
        "dns provider cloudflare (account cf) published TXT record _acme-challenge.example.test "
        "but it did not show: timeout (2s) exceeded waiting for TXT record "
        "_acme-challenge.example.test on %s, latest error was: " % dead), reg
    assert 1.5 < reg["took"] < 8, reg
    assert clean.get("err") is None
    assert not [x for x in fake.records("cloudflare") if x[0] == "TXT"]


# --- an order through Pebble with the cloudflare provider ---------------------------------

def test_cloudflare_order_through_pebble(pebble, challtestsrv, nginx_factory, workdir, core_so):
    ca = TestCA(os.path.join(str(workdir), "fake-ca"), name="fake dns api CA")

    def mirror(fqdn, values):
        challtestsrv.clear_txt(fqdn)
        for v in values:
            challtestsrv.set_txt(fqdn, v)

    fake = FakeDnsApis(ca, TOKENS, cloudflare_zones=["example.test"], on_change=mirror).start()
    try:
        n = dns_control_nginx(nginx_factory, workdir, [ca.ca_pem, pebble.ca_pem],
                          api_uri=pebble.directory_url)
        acct = accounts(fake)[0]
        acct["nameservers"] = [challtestsrv.dns_server]
        res = post(n, "/order", {"names": ["www.example.test", "*.example.test"],
                                 "key_type": "EC", "curve": "prime256v1",
                                 "conf": {"dns_provider_accounts": [acct]}}, timeout=120)
        assert res.get("err") is None, res
        assert dns_names(leaf(res["cert"])) == ["*.example.test", "www.example.test"]
        assert not [x for x in fake.records("cloudflare") if x[0] == "TXT"]
        creates = [r for r in fake.requests if r["method"] == "POST"]
        assert sorted(r["body"]["name"] for r in creates) == [
            "_acme-challenge.example.test", "_acme-challenge.www.example.test"]
        log = n.error_log()
        assert log.count("is visible on %s" % challtestsrv.dns_server) == 2
        assert "[error]" not in log
        no_secrets_logged(n)
    finally:
        fake.stop()


# --- the generic providers: exec (a command) and webhook (an HTTPS endpoint) ---------------
# Both publish into a real BIND through t/hooks/nsupdate-hook.sh; Pebble validates there.

HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks", "nsupdate-hook.sh")
WEBHOOK_TOKEN = "wh-token-0123456789abcdef"


def hook_argv(bind, workdir):
    keyfile = os.path.join(str(workdir), "hook.key")
    with open(keyfile, "w") as f:
        f.write('key "%s" { algorithm %s; secret "%s"; };\n'
                % (bind.key_name, bind.algorithm, bind.secret))
    calllog = os.path.join(str(workdir), "hook-calls.log")
    open(calllog, "w").close()
    return [HOOK, bind.server, keyfile, calllog], calllog


def calls(calllog):
    with open(calllog) as f:
        return [line.split() for line in f.read().splitlines()]


def generic_order(n, acct, names):
    # EC keys only: RSA work waits for the machine-wide CPU slot
    return post(n, "/order", {"names": names, "key_type": "EC", "curve": "prime256v1",
                              "account_key_type": "EC", "account_key_curve": "prime256v1",
                              "conf": {"dns_provider_accounts": [acct]}}, timeout=120)


def exec_setup(bind, pebble_bind, nginx_factory, workdir, mode):
    """The control nginx and an exec provider account running the test hook in `mode`
    -> (nginx, account, hook argv, call log path)."""
    argv, calllog = hook_argv(bind, workdir)
    n = dns_control_nginx(nginx_factory, workdir, [pebble_bind.ca_pem],
                          api_uri=pebble_bind.directory_url)
    acct = {"name": "hook", "provider": "exec", "domains": ["example.test"],
            "secret": {"command": argv + [mode], "timeout": 20}, "nameservers": [bind.server]}
    return n, acct, argv, calllog


def test_exec_provider_issues_wildcard_and_cleans_up(bind, pebble_bind, nginx_factory, workdir,
                                                     core_so):
    n, acct, argv, calllog = exec_setup(bind, pebble_bind, nginx_factory, workdir, "ok")
    res = generic_order(n, acct, ["*.example.test", "example.test"])
    assert res.get("err") is None, res
    assert dns_names(leaf(res["cert"])) == ["*.example.test", "example.test"]
    c = calls(calllog)
    assert [x[:2] for x in c] == [["add", "_acme-challenge.example.test"]] * 2 + [
        ["remove", "_acme-challenge.example.test"]] * 2, c
    assert bind.txt("_acme-challenge.example.test") == []
    log = n.error_log()
    assert log.count("is visible on %s" % bind.server) == 2, log
    assert bind.secret not in log


def test_exec_provider_failure_output_and_timeout(bind, pebble_bind, nginx_factory, workdir,
                                                  core_so):
    import time
    n, acct, argv, calllog = exec_setup(bind, pebble_bind, nginx_factory, workdir, "fail")
    res = generic_order(n, acct, ["*.example.test"])
    err = res.get("err") or ""
    assert ("dns provider exec (account hook) failed to create TXT record "
            "_acme-challenge.example.test: %s add _acme-challenge.example.test exited with "
            "status 4: the zone is frozen" % HOOK) in err, res
    assert "the zone is frozen for _acme-challenge.example.test" in err, err
    # cleaned up after the failure: remove was called and the record is gone
    assert [x[0] for x in calls(calllog)] == ["add", "remove"]
    assert bind.txt("_acme-challenge.example.test") == []
    assert "output: the zone is frozen" in n.error_log()
    # a hung command is killed at its timeout, nginx goes on meanwhile
    acct["secret"] = {"command": argv + ["slow"], "timeout": 1}
    t0 = time.time()
    res = generic_order(n, acct, ["*.example.test"])
    took = time.time() - t0
    assert "timed out after 1s (killed)" in (res.get("err") or ""), res
    assert "sleeping" in res["err"]
    assert took < 15, took
    assert bind.secret not in n.error_log()


def test_webhook_provider_issues_wildcard_and_cleans_up(bind, pebble_bind, nginx_factory,
                                                        workdir, core_so):
    from fakes.webhook import Webhook
    argv, _ = hook_argv(bind, workdir)
    ca = TestCA(os.path.join(str(workdir), "webhook-ca"), name="webhook test CA")
    wh = Webhook(ca, WEBHOOK_TOKEN, argv).start()
    other_ca = TestCA(os.path.join(str(workdir), "other-ca"), name="untrusted CA")
    untrusted = Webhook(other_ca, WEBHOOK_TOKEN, argv).start()
    try:
        n = dns_control_nginx(nginx_factory, workdir, [pebble_bind.ca_pem, ca.ca_pem],
                              api_uri=pebble_bind.directory_url)
        acct = {"name": "wh", "provider": "webhook", "domains": ["example.test"],
                "secret": {"url": wh.url, "token": WEBHOOK_TOKEN}, "nameservers": [bind.server]}
        res = generic_order(n, acct, ["*.example.test", "example.test"])
        assert res.get("err") is None, res
        assert dns_names(leaf(res["cert"])) == ["*.example.test", "example.test"]
        import json as _json
        seen = [(r.method, _json.loads(r.body)) for r in wh.requests]
        assert [m for m, _ in seen] == ["POST", "POST", "DELETE", "DELETE"], seen
        assert all(b["name"] == "_acme-challenge.example.test" and
                   b["fqdn"] == "_acme-challenge.example.test." and b["value"] for _, b in seen)
        assert all(r.headers["authorization"] == "Bearer " + WEBHOOK_TOKEN and
                   r.headers["content-type"] == "application/json" for r in wh.requests)
        assert bind.txt("_acme-challenge.example.test") == []
        # the endpoint fails after adding: the order fails, the record is still removed
        wh.fail_post = True
        res = generic_order(n, acct, ["*.example.test"])
        assert "(account wh) failed to create TXT record _acme-challenge.example.test: POST %s " \
            "for _acme-challenge.example.test returned HTTP 500" % wh.url \
            in (res.get("err") or ""), res
        assert wh.requests[-1].method == "DELETE"
        assert bind.txt("_acme-challenge.example.test") == []
        # TLS is verified: an endpoint whose CA is not trusted is refused before any request
        acct["secret"] = {"url": untrusted.url, "token": WEBHOOK_TOKEN}
        res = generic_order(n, acct, ["*.example.test"])
        assert "(account wh) failed to create TXT record _acme-challenge.example.test: POST %s " \
            "failed" % untrusted.url in (res.get("err") or ""), res
        assert untrusted.requests == []
        log = n.error_log()
        assert WEBHOOK_TOKEN not in log and bind.secret not in log
        assert wh.violations == []
    finally:
        wh.stop()
        untrusted.stop()


def test_propagation_waits_for_the_authoritative_servers(bind, pebble_bind, nginx_factory,
                                                         workdir, core_so):
    """No nameservers configured: the zone's servers are found from the SOA and NS of the
    name (asked at a resolver: here BIND itself), and the order waits until they answer the
    record (added 3 s after the command returned), or gives up at propagation_timeout."""
    import time
    argv, calllog = hook_argv(bind, workdir)
    n = dns_control_nginx(nginx_factory, workdir, [pebble_bind.ca_pem],
                          api_uri=pebble_bind.directory_url)
    acct = {"name": "hook", "provider": "exec", "domains": ["example.test"],
            "secret": {"command": argv + ["late"], "timeout": 20},
            "propagation_resolver": bind.server, "propagation_port": bind.port,
            "propagation_timeout": 20, "propagation_interval": 0.5}
    t0 = time.time()
    res = generic_order(n, acct, ["*.example.test"])
    assert res.get("err") is None, res
    assert time.time() - t0 >= 3
    log = n.error_log()
    assert "authoritative servers of _acme-challenge.example.test: 127.0.0.1:%d" % bind.port \
        in log, log
    assert "is visible on 127.0.0.1:%d" % bind.port in log
    assert bind.txt("_acme-challenge.example.test") == []
    # never published: the wait ends at its bound, the record is cleaned up (remove called)
    acct["secret"] = {"command": argv + ["never"], "timeout": 20}
    acct["propagation_timeout"] = 2
    t0 = time.time()
    res = generic_order(n, acct, ["*.example.test"])
    took = time.time() - t0
    assert ("timeout (2s) exceeded waiting for TXT record _acme-challenge.example.test on "
            "127.0.0.1:%d" % bind.port) in (res.get("err") or ""), res
    assert took < 12, took
    assert calls(calllog)[-1][0] == "remove"


# --- route53 against moto's server (PyPI moto[server], installed by scripts/setup-moto.sh) --

MOTO_SETUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "scripts", "setup-moto.sh")
AWS_KEY_ID = "AKIAMOTOTEST00000000"
AWS_SECRET = "moto-secret-key-0123456789abcdefghijklmn"
# moto's server picks the service from the credential scope of the Authorization header
MOTO_AUTH = {"Authorization": "AWS4-HMAC-SHA256 Credential=%s/20260101/us-east-1/route53/"
             "aws4_request, SignedHeaders=host, Signature=0" % AWS_KEY_ID}


@pytest.fixture
def moto(workdir):
    import subprocess
    import urllib.request
    from harness import proc
    r = subprocess.run([MOTO_SETUP], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.skip("moto[server] cannot be installed: %s" % r.stderr.strip()[-300:])
    port = free_port()
    log = os.path.join(str(workdir), "moto.log")
    p = proc.spawn([r.stdout.strip(), "-H", "127.0.0.1", "-p", str(port)], log)
    proc.wait_ports([port], p, 60, "moto_server", lambda n=20: open(log).read()[-3000:])
    base = "http://127.0.0.1:%d" % port
    body = ('<?xml version="1.0" encoding="UTF-8"?><CreateHostedZoneRequest '
            'xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>example.test.</Name>'
            '<CallerReference>t-%d</CallerReference></CreateHostedZoneRequest>' % port)
    req = urllib.request.Request(base + "/2013-04-01/hostedzone", data=body.encode(),
                                 method="POST", headers=dict(MOTO_AUTH, **{"Content-Type": "application/xml"}))
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    import re
    zone_id = re.search(r"<Id>/hostedzone/([^<]+)</Id>", text).group(1)
    yield {"base": base, "zone_id": zone_id, "log": log}
    proc.stop(p)


def moto_txt(moto):
    """{name: [values]} of the TXT record sets in moto's zone (quotes stripped)."""
    import urllib.request
    import xml.etree.ElementTree as ET
    url = "%s/2013-04-01/hostedzone/%s/rrset" % (moto["base"], moto["zone_id"])
    with urllib.request.urlopen(urllib.request.Request(url, headers=MOTO_AUTH),
                                timeout=10) as resp:
        root = ET.fromstring(resp.read())
    out = {}
    for s in root.iter():
        if s.tag.endswith("ResourceRecordSet"):
            f = {c.tag.split("}")[-1]: c for c in s}
            if f["Type"].text == "TXT":
                out[f["Name"].text.rstrip(".")] = [
                    v.text.strip('"') for v in s.iter() if v.tag.endswith("Value")]
    return out


def test_route53_issues_wildcard_against_moto(moto, pebble, challtestsrv, nginx_factory,
                                              workdir, core_so):
    """route53 signs with SigV4, writes the record set through a change batch and waits for
    INSYNC; a mirror copies moto's TXT sets into challtestsrv, where Pebble's VA reads them
    (and the propagation check waits for them)."""
    import threading
    import time
    stop = threading.Event()

    def mirror():
        last = {}
        while not stop.is_set():
            try:
                now = moto_txt(moto)
            except Exception:  # noqa: BLE001 - moto busy; next round
                now = last
            for name in set(last) | set(now):
                if last.get(name) != now.get(name):
                    challtestsrv.clear_txt(name)
                    for v in now.get(name, []):
                        challtestsrv.set_txt(name, v)
            last = now
            time.sleep(0.2)

    t = threading.Thread(target=mirror, daemon=True)
    t.start()
    try:
        n = dns_control_nginx(nginx_factory, workdir, [pebble.ca_pem], api_uri=pebble.directory_url)
        secret = {"access_key_id": AWS_KEY_ID, "secret_access_key": AWS_SECRET,
                  "api_base": moto["base"]}
        acct = {"name": "aws", "provider": "route53", "domains": ["example.test"],
                "secret": secret, "nameservers": [challtestsrv.dns_server],
                "propagation_timeout": 30, "propagation_interval": 0.5}
        res = generic_order(n, acct, ["*.example.test", "example.test"])
        assert res.get("err") is None, res
        assert dns_names(leaf(res["cert"])) == ["*.example.test", "example.test"]
        assert "_acme-challenge.example.test" not in moto_txt(moto)  # cleaned up
        # a failure after publishing (the record never shows where it is checked): cleaned up
        acct["nameservers"] = ["127.0.0.1:%d" % free_port()]
        acct["propagation_timeout"] = 1
        res = generic_order(n, acct, ["*.example.test"])
        assert "did not show" in (res.get("err") or ""), res
        assert "_acme-challenge.example.test" not in moto_txt(moto)
        # a bad zone id: the API's own error
        r = post(n, "/provider", {"provider": "route53",
                                  "secret": dict(secret, hosted_zone_id="NOPE"),
                                  "method": "post_txt_record",
                                  "args": ["_acme-challenge.example.test", "v"]})
        assert r["err"].startswith("route53: GET /2013-04-01/hostedzone/NOPE/rrset returned HTTP 404"), r
        log = n.error_log()
        assert AWS_SECRET not in log
        with open(moto["log"]) as f:
            mlog = f.read()
        assert "ChangeResourceRecordSets" in mlog or "/rrset" in mlog
    finally:
        stop.set()
        t.join(timeout=5)
