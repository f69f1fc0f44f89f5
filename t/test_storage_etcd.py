"""resty.acme.storage.etcd beyond the contract, against a real etcd 3.4 (v3 JSON gateway)."""

import json

import pytest

from harness import Etcd, StorageNginx


@pytest.fixture
def etcd(workdir):
    e = Etcd(workdir).start()
    yield e
    e.stop()


def test_etcd_layout_is_lua_resty_etcds(etcd, workdir, core_so):
    n = StorageNginx(workdir, {
        "plain": {"adapter": "etcd", "conf": {"http_host": etcd.client_url}},
        "prefixed": {"adapter": "etcd", "conf": {"http_host": etcd.client_url,
                                                 "key_prefix": "/apisix/acme"}},
    }).start()
    plain, prefixed = n.store("plain"), n.store("prefixed")
    cert_json = '{"cert":"-----BEGIN CERTIFICATE-----\\nMII/+\\n","domain":"a.example.test"}'
    assert plain.set("domain:rsa:a.example.test", cert_json) is None
    raw = etcd.get("/domain:rsa:a.example.test")
    # a JSON string, with "/" escaped as lua-resty-etcd's cjson serializer did
    assert raw.startswith(b'"') and b"\\/" in raw and b"MII/" not in raw
    assert json.loads(raw) == cert_json
    assert plain.set("failed_attempts:a.example.test", 2) is None
    assert etcd.get("/failed_attempts:a.example.test") == b"2"
    assert prefixed.set("update_lock:b.example.test", "1", 30) is None
    assert etcd.get("/apisix/acme/update_lock:b.example.test") == b'"1"'
    assert etcd.keys("/apisix/acme/") == [b"/apisix/acme/update_lock:b.example.test"]
    # the TTL is a lease
    leases = etcd.leases()
    assert len(leases) == 1
    ttl = etcd.api("lease/timetolive", {"ID": leases[0], "keys": True})
    assert 28 <= int(ttl["TTL"]) <= 30
    assert plain.list("domain:") == (["domain:rsa:a.example.test"], None)
    # without a key_prefix every key below "/" is seen, the prefixed ones too
    assert plain.list("") == (["apisix/acme/update_lock:b.example.test",
                               "domain:rsa:a.example.test", "failed_attempts:a.example.test"],
                              None)
    assert prefixed.list("") == (["update_lock:b.example.test"], None)
    n.stop()


def test_etcd_reads_values_as_other_writers_stored_them(etcd, workdir, core_so):
    n = StorageNginx(workdir, {"s": {"adapter": "etcd", "conf": {
        "http_host": etcd.client_url, "key_prefix": "/p"}}}).start()
    s = n.store("s")
    etcd.put("/p/escaped", '"a\\/b\\/c"')     # cjson's form
    etcd.put("/p/unescaped", '"a/b/c"')       # another JSON encoder's form
    etcd.put("/p/number", "1700000300.5")     # a JSON number (the original's counters)
    etcd.put("/p/notjson", "plain text")      # not JSON at all (etcdctl put)
    assert s.get("escaped") == ("a/b/c", None)
    assert s.get("unescaped") == ("a/b/c", None)
    assert s.get("number") == ("1700000300.5", None)
    assert s.get("notjson") == ("plain text", None)
    assert s.list("") == (["escaped", "notjson", "number", "unescaped"], None)
    n.stop()


def test_etcd_add_holding_key_costs_no_lease(etcd, workdir, core_so):
    n = StorageNginx(workdir, {"s": {"adapter": "etcd", "conf": {
        "http_host": etcd.client_url}}}).start()
    s = n.store("s")
    assert s.add("update_lock:x", "1", 300) is None
    for _ in range(10):
        assert s.add("update_lock:x", "1", 300) == "exists"
    assert len(etcd.leases()) == 1
    n.stop()


def test_etcd_restart_and_dead_server(workdir, core_so):
    e = Etcd(workdir).start()
    n = StorageNginx(workdir, {"s": {"adapter": "etcd", "conf": {
        "http_host": e.client_url, "timeout": 2}}}).start()
    s = n.store("s")
    assert s.set("k", "v") is None
    e.restart()
    assert s.get("k") == ("v", None)
    e.kill()
    err = s.set("k2", "v")
    assert err == ("etcd: kv/put failed: failed to connect to 127.0.0.1:%d: connection refused"
                   % e.port), err
    assert s.get("k")[1].startswith("etcd: kv/range failed: failed to connect")
    assert s.add("k3", "v", 5).startswith("etcd: kv/range failed: failed to connect")
    assert s.list("")[1].startswith("etcd: kv/range failed")
    e.start()
    assert s.get("k") == ("v", None)
    n.stop()
    e.stop()


def test_etcd_several_endpoints_fail_over(etcd, workdir, core_so):
    from harness import free_port
    dead = "http://127.0.0.1:%d" % free_port()
    n = StorageNginx(workdir, {"s": {"adapter": "etcd", "conf": {
        "http_host": [dead, etcd.client_url]}}}).start()
    s = n.store("s")
    assert s.set("k", "v") is None
    assert s.get("k") == ("v", None)
    n.stop()


def test_etcd_config_errors(workdir, core_so):
    n = StorageNginx(workdir, {
        "v2": {"adapter": "etcd", "conf": {"protocol": "v2"}},
        "badhost": {"adapter": "etcd", "conf": {"http_host": "127.0.0.1:2379"}},
    }).start()
    assert n.store("v2").new_error() == "etcd: only protocol v3 is supported, got v2"
    assert n.store("badhost").new_error() == \
        "etcd: conf.http_host[1] must be an http:// or https:// URL"
    n.stop()


def test_etcd_list_pages_with_a_limit(etcd, workdir, core_so):
    n = StorageNginx(workdir, {
        "s": {"adapter": "etcd", "conf": {"http_host": etcd.client_url, "key_prefix": "/pg",
                                          "page_size": 3}},
        "bad": {"adapter": "etcd", "conf": {"http_host": etcd.client_url, "page_size": 0}},
    }).start()
    s = n.store("s")
    want = sorted("domain:ecc:n%02d.example.test" % i for i in range(20))
    for k in want:
        etcd.put("/pg/" + k, '"x"')
    etcd.put("/pg/update_lock:x", '"1"')
    etcd.put("/pgz/domain:ecc:outside", '"x"')
    assert s.list("domain:") == (want, None)
    keys, err, own = s.each_key("domain:")
    assert (keys, err, own) == (want, None, True)  # in key order, each once
    assert len(s.list("")[0]) == 21
    assert n.store("bad").new_error() == "etcd: conf.page_size must be a positive integer"
    n.stop()
