"""resty.acme.storage.consul against the fake Consul (t/fakes/consul.py), which checks every
request against Consul's KV API and keeps the KV state."""

import os
import time

import pytest

from harness import StorageNginx, TestCA
from fakes.consul import FakeConsul

TOKEN = "consul-secret-token"


@pytest.fixture
def consul():
    c = FakeConsul(token=TOKEN).start()
    yield c
    c.stop()
    assert c.violations == []


def nginx(workdir, consul, **conf):
    base = {"port": consul.port, "token": TOKEN}
    base.update(conf)
    return StorageNginx(workdir, {"s": {"adapter": "consul", "conf": base}}).start()


def test_consul_requests_and_layout(consul, workdir, core_so):
    n = nginx(workdir, consul)
    s = n.store("s")
    consul.requests.clear()

    assert s.set("domain:rsa:*.example.test", "cert json") is None
    r = consul.requests[-1]
    assert (r.method, r.raw_path) == ("PUT", "/v1/kv/acme/domain:rsa:%2A.example.test")
    assert r.body == b"cert json" and r.query == {}
    assert r.headers["x-consul-token"] == TOKEN
    assert consul.value("acme/domain:rsa:*.example.test") == b"cert json"
    assert consul.flags("acme/domain:rsa:*.example.test") == 0

    t = time.time()
    assert s.set("tok#http-01", "keyauth", 3600) is None
    r = consul.requests[-1]
    assert r.path == "/v1/kv/acme/tok#http-01"
    assert r.raw_path.startswith("/v1/kv/acme/tok%23http-01?flags=")
    flags = int(r.query["flags"][0])
    assert abs(flags - (t + 3600) * 1000) < 2000

    assert s.set("a/b/c", "slashes") is None
    assert consul.requests[-1].path == "/v1/kv/acme/a-b-c"

    assert s.set("failed_attempts:x", 7) is None
    assert consul.value("acme/failed_attempts:x") == b"7"

    consul.requests.clear()
    assert s.add("update_lock:x", "1", 300) is None
    r = consul.requests[-1]
    assert r.method == "PUT" and r.query["cas"] == ["0"] and "flags" in r.query
    assert len(consul.requests) == 1  # atomic: no read first

    assert s.get("update_lock:x") == ("1", None)
    assert consul.requests[-1].method == "GET" and consul.requests[-1].query == {}

    assert s.delete("update_lock:x") is None
    r = consul.requests[-1]
    assert (r.method, r.path, r.query) == ("DELETE", "/v1/kv/acme/update_lock:x", {})

    assert s.list("domain:") == (["domain:rsa:*.example.test"], None)
    r = consul.requests[-1]
    assert (r.method, r.path, r.query) == ("GET", "/v1/kv/acme/domain:", {"keys": [""]})
    n.stop()


def test_consul_reads_the_originals_store_and_ignores_other_paths(consul, workdir, core_so):
    consul.kv["acme/domain:ecc:old.example.test"] = {
        "Value": b'{"domain":"old.example.test"}', "Flags": 0, "CreateIndex": 3,
        "ModifyIndex": 3}
    consul.kv["acme/nested/deeper"] = {"Value": b"x", "Flags": 0, "CreateIndex": 4,
                                       "ModifyIndex": 4}
    consul.kv["acmeother/domain:rsa:x"] = {"Value": b"x", "Flags": 0, "CreateIndex": 5,
                                           "ModifyIndex": 5}
    n = nginx(workdir, consul, kv_path="acme")  # "/" is prepended
    s = n.store("s")
    assert s.get("domain:ecc:old.example.test") == ('{"domain":"old.example.test"}', None)
    assert s.list("") == (["domain:ecc:old.example.test"], None)
    n.stop()


def test_consul_custom_kv_path(consul, workdir, core_so):
    n = nginx(workdir, consul, kv_path="/certs/prod/")
    s = n.store("s")
    assert s.set("k", "v") is None
    assert consul.requests[-1].path == "/v1/kv/certs/prod/k"
    assert s.list("") == (["k"], None)
    n.stop()


def test_consul_expiry_is_lazy_and_exact(consul, workdir, core_so):
    n = nginx(workdir, consul)
    s = n.store("s")
    assert s.set("k", "v", 1) is None
    time.sleep(1.1)
    consul.requests.clear()
    assert s.get("k") == (None, None)
    get, delete = consul.requests
    assert get.method == "GET"
    assert delete.method == "DELETE" and delete.query == {"cas": [str(consul.index - 1)]}
    assert "acme/k" not in consul.kv

    # add over an expired key: create fails, the expired version is removed, create again
    assert s.add("lock", "a", 1) is None
    time.sleep(1.1)
    consul.requests.clear()
    assert s.add("lock", "b", 30) is None
    methods = [(r.method, sorted(r.query)) for r in consul.requests]
    assert methods == [("PUT", ["cas", "flags"]), ("GET", []), ("DELETE", ["cas"]),
                       ("PUT", ["cas", "flags"])]
    assert consul.value("acme/lock") == b"b"
    n.stop()


def test_consul_errors_name_the_cause_not_the_token(workdir, core_so):
    c = FakeConsul(token="the-right-token").start()
    n = StorageNginx(workdir, {
        "bad": {"adapter": "consul", "conf": {"port": c.port, "token": TOKEN}},
        "dead": {"adapter": "consul", "conf": {"port": 1,
                                               "token": TOKEN}},
    }).start()
    err = n.store("bad").set("k", "v")
    assert err == "consul: PUT returned status 403: ACL not found", err
    assert n.store("bad").get("k")[1] == "consul: GET returned status 403: ACL not found"
    err = n.store("dead").get("k")[1]
    assert err.startswith("consul: GET failed: failed to connect to 127.0.0.1:1"), err
    assert TOKEN not in n.nginx.error_log()
    n.stop()
    c.stop()


def test_consul_https(workdir, core_so):
    ca = TestCA(os.path.join(str(workdir), "consul-ca"))
    c = FakeConsul(tls=(ca.cert_pem, ca.key_pem)).start()
    n = StorageNginx(workdir, {
        "verify": {"adapter": "consul", "conf": {"host": "localhost", "port": c.port,
                                                 "https": True}},
        "plain": {"adapter": "consul", "conf": {"port": c.port}},
    }, trusted_ca=ca.ca_pem).start()
    assert n.store("verify").set("k", "over tls") is None
    assert n.store("verify").get("k") == ("over tls", None)
    assert c.requests[-1].sni == "localhost"
    assert n.store("plain").get("k")[1].startswith("consul: GET failed")
    n.stop()
    c.stop()
