"""resty.acme.storage.redis beyond the contract, against a real redis-server."""

import os

import pytest

from harness import Redis, StorageNginx, TestCA


@pytest.fixture
def redis(workdir):
    r = Redis(workdir, unix_socket=True).start()
    yield r
    r.stop()


def start(workdir, stores, **kw):
    return StorageNginx(workdir, stores, **kw).start()


def test_redis_layout_is_the_originals(redis, workdir, core_so):
    n = start(workdir, {
        "plain": {"adapter": "redis", "conf": {"port": redis.port}},
        "ns": {"adapter": "redis", "conf": {"port": redis.port, "namespace": "tenant:"}},
    })
    plain, ns = n.store("plain"), n.store("ns")
    assert plain.set("domain:ecc:a.example.test", '{"x":"a\\/b"}') is None
    assert redis.command("GET", "domain:ecc:a.example.test") == b'{"x":"a\\/b"}'
    assert plain.set("failed_attempts:a", 3) is None
    assert redis.command("GET", "failed_attempts:a") == b"3"
    assert plain.set("ttl", "v", 30) is None
    assert 29000 < redis.command("PTTL", "ttl") <= 30000
    assert plain.add("lock", "v", 1.5) is None
    assert 1000 < redis.command("PTTL", "lock") <= 1500
    assert redis.command("TTL", "domain:ecc:a.example.test") == -1
    assert ns.set("k", "v") is None
    assert redis.command("GET", "tenant:k") == b"v"
    # a value written by the original (or redis-cli) is read as is
    redis.command("SET", "tenant:legacy", "from elsewhere")
    assert ns.get("legacy") == ("from elsewhere", None)
    assert sorted(ns.list("")[0]) == ["k", "legacy"]
    n.stop()


def test_redis_namespaces_are_isolated(redis, workdir, core_so):
    n = start(workdir, {
        "a": {"adapter": "redis", "conf": {"port": redis.port, "namespace": "a:"}},
        "b": {"adapter": "redis", "conf": {"port": redis.port, "namespace": "b:"}},
        "none": {"adapter": "redis", "conf": {"port": redis.port}},
    })
    a, b, none = n.store("a"), n.store("b"), n.store("none")
    assert a.set("domain:rsa:x", "from a") is None
    assert b.set("domain:rsa:x", "from b") is None
    assert a.get("domain:rsa:x") == ("from a", None)
    assert b.get("domain:rsa:x") == ("from b", None)
    assert a.add("update_lock:x", "1") is None
    assert b.add("update_lock:x", "1") is None  # a's lock is not b's
    assert a.add("update_lock:x", "1") == "exists"
    assert a.list("domain:") == (["domain:rsa:x"], None)
    assert a.delete("domain:rsa:x") is None
    assert b.get("domain:rsa:x") == ("from b", None)
    # without a namespace every key is seen with its full name
    assert none.list("b:") == (["b:domain:rsa:x", "b:update_lock:x"], None)
    n.stop()


def test_redis_list_walks_every_scan_page(redis, workdir, core_so):
    n = start(workdir, {
        "s": {"adapter": "redis", "conf": {"port": redis.port, "scan_count": 2}},
        "ns": {"adapter": "redis", "conf": {"port": redis.port, "scan_count": 2,
                                            "namespace": "ns:"}},
    })
    s, ns = n.store("s"), n.store("ns")
    want = sorted("domain:rsa:n%02d.example.test" % i for i in range(50))
    for k in want:
        assert s.set(k, "x") is None
        assert ns.set(k, "y") is None
    for i in range(50):
        assert s.set("other:%d" % i, "x") is None
    assert s.list("domain:") == (want, None)
    assert ns.list("domain:") == (want, None)
    assert len(s.list("")[0]) == 150
    n.stop()


def test_redis_auth_variants_and_failures(workdir, core_so):
    r = Redis(workdir, password="default-secret", users={"acme": "acme-secret"}).start()
    stores = {
        "userpass": {"username": "acme", "password": "acme-secret"},
        "password": {"password": "default-secret"},
        "legacy": {"auth": "default-secret"},
        "wrongpass": {"password": "not-the-secret"},
        "wronguserpass": {"username": "acme", "password": "wrong-secret"},
        "wronguser": {"username": "nobody", "password": "acme-secret"},
        "useronly": {"username": "acme"},
        "none": {},
        "baddb": {"password": "default-secret", "database": 99},
    }
    n = start(workdir, {k: {"adapter": "redis", "conf": dict(v, port=r.port)}
                        for k, v in stores.items()})
    for ok in ("userpass", "password", "legacy"):
        s = n.store(ok)
        assert s.set("k-" + ok, ok) is None
        assert s.get("k-" + ok) == (ok, None)
    for bad in ("wrongpass", "wronguserpass", "wronguser"):
        s = n.store(bad)
        err = s.set("k", "v")
        assert err.startswith("redis: authentication failed WRONGPASS"), err
        assert s.get("k")[1].startswith("redis: authentication failed WRONGPASS")
        assert s.list("")[1].startswith("redis: authentication failed")
    for noauth in ("useronly", "none"):
        err = n.store(noauth).set("k", "v")
        assert err.startswith("redis: set failed: NOAUTH"), err
    err = n.store("baddb").get("k")[1]
    assert err.startswith("redis: can't select database ERR"), err
    log = n.nginx.error_log()
    for secret in ("default-secret", "acme-secret", "not-the-secret", "wrong-secret"):
        assert secret not in log
    n.stop()
    r.stop()


def test_redis_database_select_and_pools_do_not_mix(redis, workdir, core_so):
    n = start(workdir, {
        "db0": {"adapter": "redis", "conf": {"port": redis.port}},
        "db5": {"adapter": "redis", "conf": {"port": redis.port, "database": 5}},
    })
    db0, db5 = n.store("db0"), n.store("db5")
    before = int(redis.command("INFO", "stats").decode().split(
        "total_connections_received:")[1].split()[0])
    for i in range(30):
        # alternating on pooled connections: each keeps its own database
        assert db0.set("k", "zero-%d" % i) is None
        assert db5.set("k", "five-%d" % i) is None
        assert db0.get("k") == ("zero-%d" % i, None)
        assert db5.get("k") == ("five-%d" % i, None)
    assert redis.command("GET", "k") == b"zero-29"
    assert redis.command("SELECT", "5") == "OK"
    after = int(redis.command("INFO", "stats").decode().split(
        "total_connections_received:")[1].split()[0])
    # 120 operations over a handful of pooled connections (plus our own 2 INFO connections)
    assert after - before <= 6, after - before
    n.stop()


def test_redis_unix_socket(redis, workdir, core_so):
    n = start(workdir, {"s": {"adapter": "redis", "conf": {"host": "unix:" + redis.unix_path}}})
    s = n.store("s")
    assert s.set("via-unix", "yes") is None
    assert redis.command("GET", "via-unix") == b"yes"
    assert s.list("via-") == (["via-unix"], None)
    n.stop()


def test_redis_tls(workdir, core_so):
    ca = TestCA(os.path.join(str(workdir), "redis-ca"))
    other = TestCA(os.path.join(str(workdir), "other-ca"), name="unrelated CA")
    cert, key = ca.issue(["redis.example.test"], "redis-named")
    r = Redis(workdir, tls_ca=ca, tls_cert=(cert, key)).start()
    base = {"port": r.tls_port, "ssl": True}
    n = start(workdir, {
        "verified": {"adapter": "redis", "conf": dict(base, ssl_verify=True,
                                                      ssl_server_name="redis.example.test")},
        "wrongname": {"adapter": "redis", "conf": dict(base, ssl_verify=True,
                                                       ssl_server_name="other.example.test")},
        "noverify": {"adapter": "redis", "conf": dict(base, ssl_verify=False)},
        "plain": {"adapter": "redis", "conf": {"port": r.tls_port}},
    }, trusted_ca=ca.ca_pem)
    assert n.store("verified").set("k", "tls") is None
    assert n.store("verified").get("k") == ("tls", None)
    assert n.store("noverify").get("k") == ("tls", None)
    # A failed verification fails the handshake. lua-nginx-module 0.10.23 reports only the
    # first failure per TLS context: later handshakes "succeed" on a socket it has closed,
    # which transport.tls_handshake reports as a failed verification (nothing is sent).
    err = n.store("wrongname").get("k")[1]
    assert err.startswith("redis: tls handshake with 127.0.0.1:%d failed" % r.tls_port), err
    assert 'certificate does not match host "other.example.test"' in n.nginx.error_log()
    err = n.store("plain").get("k")[1]
    assert err.startswith("redis: get failed"), err
    n.stop()
    # a CA nginx does not trust
    n2 = StorageNginx(workdir, {"v": {"adapter": "redis", "conf": dict(
        base, ssl_verify=True, ssl_server_name="redis.example.test")}},
        trusted_ca=other.ca_pem, name="untrusting").start()
    for _ in range(3):
        err = n2.store("v").get("k")[1]
        assert err.startswith("redis: tls handshake"), err
        assert "self-signed certificate" in err or "certificate verification failed" in err, err
    n2.stop()
    r.stop()


def test_redis_survives_a_restart_and_reports_a_dead_server(workdir, core_so):
    r = Redis(workdir, appendonly=True).start()
    n = start(workdir, {"s": {"adapter": "redis", "conf": {"port": r.port}}})
    s = n.store("s")
    assert s.set("k", "v") is None
    r.restart()
    # the pooled connection is dead: retried once on a new one, no error
    assert s.get("k") == ("v", None)
    assert s.set("k2", "v2") is None
    r.kill()
    err = s.set("k3", "v3")
    assert err == "redis: failed to connect to 127.0.0.1:%d: connection refused" % r.port, err
    assert s.get("k")[1].startswith("redis: failed to connect")
    assert s.list("")[1].startswith("redis: failed to connect")
    r.start()
    assert s.get("k2") == ("v2", None)
    n.stop()
    r.stop()


@pytest.mark.parametrize("namespace,error", [
    ("update_lock:", "update_lock:"),
    ("domain:x", "domain:"),
    ("account_key:", "account_key:"),
    ("failure_lock:abc", "failure_lock:"),
    ("failed_attempts:", "failed_attempts:"),
    ("tenant-domain:", None),
    ("my-update_lock:-ns", None),
    ("tenant:", None),
])
def test_autossl_refuses_a_reserved_redis_namespace(workdir, core_so, namespace, error):
    n = start(workdir, {})
    err = n.autossl_init("redis", {"namespace": namespace})
    if error is None:
        assert err is None
    else:
        assert err.endswith("namespace can't be prefixed with reserved word: " + error), err
    n.stop()


def test_redis_each_key_gives_every_key_page_by_page(redis, workdir, core_so):
    n = start(workdir, {"s": {"adapter": "redis", "conf": {"port": redis.port, "scan_count": 3,
                                                          "namespace": "ek:"}}})
    s = n.store("s")
    want = sorted("domain:rsa:n%02d.example.test" % i for i in range(40))
    for k in want:
        assert s.set(k, "x") is None
    assert s.set("other", "x") is None
    keys, err, own = s.each_key("domain:")
    assert err is None and own is True
    assert sorted(set(keys)) == want
    n.stop()
