"""One storage contract, run in nginx (content_by_lua) against every adapter.

Adapters are built with ``new(conf)`` in init_by_lua (no cosockets there) and called through
t/lua/storage_t.lua. Real servers: redis-server and etcd (Debian packages) on free loopback
ports; Vault is a real OpenBao 2.7.2 (t/harness/openbao.py); Consul is the fake in t/fakes/
(it also checks every request).
"""

import os
import threading
import time

import pytest

from harness import BaoUnavailable, Etcd, OpenBao, Redis, StorageNginx, bao_binary
from fakes.consul import MAX_VALUE as CONSUL_MAX_VALUE, FakeConsul

ADAPTERS = ["shm", "file", "redis", "redis-namespace-db", "redis-acl", "etcd", "etcd-prefix",
            "consul", "vault-kv2", "vault-kv1"]


class Backend:
    def __init__(self, adapter, conf, server=None, max_value=None):
        self.adapter = adapter
        self.conf = conf
        self.server = server
        self.max_value = max_value


@pytest.fixture
def backend(request, workdir):
    name = request.param
    servers = []
    try:
        if name == "shm":
            b = Backend("shm", {"shm_name": "acme"})
        elif name == "file":
            d = os.path.join(str(workdir), "filestore")
            os.makedirs(d)
            b = Backend("file", {"dir": d})
        elif name == "redis":
            r = Redis(workdir).start()
            servers.append(r)
            b = Backend("redis", {"host": "127.0.0.1", "port": r.port}, r)
        elif name == "redis-namespace-db":
            r = Redis(workdir).start()
            servers.append(r)
            b = Backend("redis", {"port": r.port, "namespace": "tenant-a:", "database": 3}, r)
        elif name == "redis-acl":
            r = Redis(workdir, password="default-secret", users={"acme": "acme-secret"}).start()
            servers.append(r)
            b = Backend("redis", {"port": r.port, "username": "acme", "password": "acme-secret"},
                        r)
        elif name in ("etcd", "etcd-prefix"):
            e = Etcd(workdir).start()
            servers.append(e)
            conf = {"http_host": e.client_url}
            if name == "etcd-prefix":
                conf["key_prefix"] = "/acme-certs"
            b = Backend("etcd", conf, e)
        elif name == "consul":
            c = FakeConsul(token="consul-token").start()
            servers.append(c)
            b = Backend("consul", {"port": c.port, "token": "consul-token"}, c,
                        max_value=CONSUL_MAX_VALUE)
        elif name in ("vault-kv2", "vault-kv1"):
            # a real OpenBao (t/harness/openbao.py); the mount's KV version is detected
            try:
                bao_binary()
            except BaoUnavailable as e:
                pytest.skip(str(e))
            v = OpenBao(workdir).start()
            servers.append(v)
            if name == "vault-kv2":
                v.mount_kv("acme", 2)
                b = Backend("vault", {"port": v.port, "token": v.root_token}, v)
            else:
                v.mount_kv("kv", 1)
                b = Backend("vault", {"port": v.port, "token": v.root_token,
                                      "kv_path": "/kv/acme"}, v)
        else:
            raise AssertionError(name)
        yield b
    finally:
        for s in servers:
            s.stop()


def wait_gone(store, keys, timeout):
    deadline = time.monotonic() + timeout
    left = list(keys)
    while left and time.monotonic() < deadline:
        left = [k for k in left if store.get(k) != (None, None)]
        if left:
            time.sleep(0.1)
    return left


def run_contract(s, backend):
    # missing keys
    assert s.get("missing:key") == (None, None)
    assert s.delete("missing:key") is None
    assert s.list("missing:") == ([], None)

    # set, get, overwrite; `.` calls with the adapter first work like `:` calls
    assert s.set("k1", "v1") is None
    assert s.get("k1") == ("v1", None)
    assert s.set("k1", "v2", dot=True) is None
    assert s.get("k1", dot=True) == ("v2", None)

    # the keys autossl and the challenge handlers use
    odd = ["domain:rsa:*.wild.example.test", "AbC_dEf-123#http-01", "account_key:",
           "update_lock:x.example.test", "name.example.test#tls-alpn-01"]
    for k in odd:
        assert s.set(k, "value of " + k) is None
    for k in odd:
        assert s.get(k) == ("value of " + k, None)

    # add only when absent
    assert s.add("lock:1", "first") is None
    assert s.add("lock:1", "second") == "exists"
    assert s.add("lock:1", "third", dot=True) == "exists"
    assert s.get("lock:1") == ("first", None)

    # delete (also of a missing key)
    assert s.delete("k1") is None
    assert s.get("k1") == (None, None)
    assert s.delete("k1", dot=True) is None
    assert s.add("k1", "again") is None
    assert s.get("k1") == ("again", None)

    # list by prefix: logical keys, nothing else
    for k in ("ls:a:1", "ls:a:2", "ls:b:1", "lsx"):
        assert s.set(k, "x") is None
    assert s.list("ls:a:") == (["ls:a:1", "ls:a:2"], None)
    assert s.list("ls:") == (["ls:a:1", "ls:a:2", "ls:b:1"], None)
    assert s.list("ls:a:", dot=True) == (["ls:a:1", "ls:a:2"], None)
    assert s.list("unknown:") == ([], None)
    assert s.list("domain:") == (["domain:rsa:*.wild.example.test"], None)
    # glob characters in a prefix are literal
    for k in ("g*:1", "g?:1", "g[1]:1", "gz:1", "g\\:1"):
        assert s.set(k, "x") is None
    assert s.list("g*") == (["g*:1"], None)
    assert s.list("g?") == (["g?:1"], None)
    assert s.list("g[") == (["g[1]:1"], None)
    assert s.list("g\\") == (["g\\:1"], None)

    # numbers are stored as decimal text and read back as strings (shm keeps the Lua number,
    # as the original did; callers tonumber() either)
    assert s.set("n:int", 5) is None
    assert s.get("n:int") == ("5" if backend.adapter != "shm" else 5, None)
    assert s.set("n:zero", 0) is None
    assert s.get("n:zero") == ("0" if backend.adapter != "shm" else 0, None)
    assert s.set("n:float", 1700000300.125) is None
    assert s.get("n:float") == ("1700000300.125" if backend.adapter != "shm" else 1700000300.125,
                                None)
    assert s.add("n:add", 12) is None
    assert s.get("n:add") == ("12" if backend.adapter != "shm" else 12, None)

    # binary-safe values: every byte, and text that looks like markup or JSON
    data = bytes(range(256)) * 3
    assert s.set("bin", data) is None
    assert s.get_bytes("bin") == (data, None)
    for v in ('{"a": "b\\/c"}', "a/b/c", "line1\r\nline2\n", "\"quoted\"", "ünïcødé ✓",
              "-----BEGIN PRIVATE KEY-----\nMIIB/+==\n-----END PRIVATE KEY-----\n"):
        assert s.set("text", v) is None
        assert s.get("text") == (v, None)

    # large values
    big = (bytes(range(33, 127)) * 12000)[:1024 * 1024]
    if backend.max_value is None:
        assert s.set("large", big) is None
        assert s.get_bytes("large") == (big, None)
    else:
        err = s.set("large", big)
        assert err and "413" in err and "exceeds" in err, err
        fits = big[:backend.max_value]
        assert s.set("large", fits) is None
        assert s.get_bytes("large") == (fits, None)

    # TTL: a TTL of 0 or less stores nothing (and set removes an older value)
    assert s.set("ttl:zero", "z", 0) is None
    assert s.get("ttl:zero") == (None, None)
    assert s.set("ttl:gone", "v") is None
    assert s.set("ttl:gone", "v", -1) is None
    assert s.get("ttl:gone") == (None, None)
    assert s.add("ttl:zero-add", "z", 0) is None
    assert s.get("ttl:zero-add") == (None, None)

    # TTL expiry
    t0 = time.monotonic()
    assert s.set("ttl:a", "x", 1) is None
    assert s.set("ttl:b", "x", 2) is None
    assert s.add("ttl:c", "y", 2) is None
    assert s.add("ttl:c", "w", 2) == "exists"
    assert s.set("ttl:keep", "old", 1) is None
    assert s.set("ttl:keep", "new") is None  # no TTL: the earlier TTL is gone
    assert s.get("ttl:b") == ("x", None)
    assert s.get("ttl:c") == ("y", None)
    assert s.list("ttl:b") == (["ttl:b"], None)
    left = wait_gone(s, ["ttl:a", "ttl:b", "ttl:c"], 6)
    assert not left, "still present after %.1fs: %s" % (time.monotonic() - t0, left)
    # an expired key can be added again
    assert s.add("ttl:c", "z", 2) is None
    assert s.get("ttl:c") == ("z", None)
    time.sleep(max(0, 2.6 - (time.monotonic() - t0)))
    assert s.get("ttl:keep") == ("new", None)
    # the earlier keys are all still there
    assert s.get("lock:1") == ("first", None)
    for k in odd:
        assert s.get(k) == ("value of " + k, None)


def _assert_clean(n, backend):
    """No error in nginx's log, no request the fake server refused."""
    log = n.nginx.error_log()
    assert "[error]" not in log and "[crit]" not in log, log[-3000:]
    if backend.server is not None and hasattr(backend.server, "violations"):
        assert backend.server.violations == []


@pytest.mark.parametrize("backend", ADAPTERS, indirect=True)
def test_storage_contract(backend, workdir, core_so):
    n = StorageNginx(workdir, {"s": {"adapter": backend.adapter, "conf": backend.conf}})
    n.start()
    try:
        s = n.store("s")
        assert s.new_error() is None
        run_contract(s, backend)
        _assert_clean(n, backend)
    finally:
        n.stop()


@pytest.mark.parametrize("backend", ["redis", "etcd", "consul", "vault-kv2", "shm", "file"],
                         indirect=True)
def test_add_is_atomic_under_concurrency(backend, workdir, core_so):
    """Racing adds from two workers (as nodes racing for update_lock:): exactly one wins.
    (file's add is check-then-write in the original; this repo's file store makes it atomic.)"""
    n = StorageNginx(workdir, {"s": {"adapter": backend.adapter, "conf": backend.conf}},
                     workers=2)
    n.start()
    try:
        s = n.store("s")
        for round_ in range(3):
            key = "update_lock:race%d.example.test" % round_
            results = [None] * 12
            barrier = threading.Barrier(len(results))

            def one(i):
                barrier.wait()
                results[i] = s.add(key, "holder-%d" % i, 30)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [i for i, r in enumerate(results) if r is None]
            assert len(winners) == 1, results
            assert all(r == "exists" for r in results if r is not None), results
            assert s.get(key) == ("holder-%d" % winners[0], None)
    finally:
        n.stop()


def _text_ret(v):
    return v.decode() if isinstance(v, bytes) else v


@pytest.mark.parametrize("backend", ADAPTERS, indirect=True)
def test_lease_operations_touch_only_the_expected_holder(backend, workdir, core_so):
    """compare_and_set / compare_and_delete (docs/STORAGE.md, "Leases"): an extended lease
    outlives its first TTL; neither a stranger's token nor an expired holder's changes or
    removes the key another holder took."""
    n = StorageNginx(workdir, {"s": {"adapter": backend.adapter, "conf": backend.conf}})
    n.start()
    try:
        s = n.store("s")

        def cas(k, old, v, ttl=None):
            return _text_ret(s.call("compare_and_set", k, old, v, ttl)[0])

        def cad(k, old):
            return _text_ret(s.call("compare_and_delete", k, old)[0])

        key = "update_lock:lease.example.test"
        assert cas(key, "me", "me", 3) == "mismatch"  # nothing to extend
        assert cad(key, "me") == "mismatch"
        assert s.add(key, "me", 3) is None
        t0 = time.monotonic()
        assert cas(key, "stranger", "stranger", 30) == "mismatch"
        assert cad(key, "stranger") == "mismatch"
        # extended twice, it is still there well after its first TTL
        time.sleep(1.5)
        assert cas(key, "me", "me", 3) is None
        time.sleep(1.5)
        assert cas(key, "me", "me", 3) is None
        time.sleep(max(0, 4.0 - (time.monotonic() - t0)))
        assert s.get(key) == ("me", None)
        # once it expired and another took it, the old holder neither extends nor deletes it
        assert not wait_gone(s, [key], 8)
        assert s.add(key, "next", 30) is None
        assert cas(key, "me", "me", 30) == "mismatch"
        assert cad(key, "me") == "mismatch"
        assert s.get(key) == ("next", None)
        assert cad(key, "next") is None
        assert s.get(key) == (None, None)
        # a released key can be taken again at once
        assert s.add(key, "third", 30) is None
        assert s.get(key) == ("third", None)
        _assert_clean(n, backend)
    finally:
        n.stop()
