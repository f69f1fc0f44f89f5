"""Three nginx nodes running nginx-conf/autossl.conf on one shared store (a real redis-server or
etcd), ordering from a real Pebble.

Pebble validates http-01 on one port only: node 1 listens there and answers every challenge
from the shared store, whichever node ordered (that is what a shared store is for). Each node
has its own prefix, worker and https port.
"""

import time

import pytest

from harness import AutoSSL, Etcd, Redis, free_port
from harness.autossl import crowd


class RedisStore:
    adapter = "redis"

    def __init__(self, workdir):
        self.server = Redis(workdir, appendonly=True)

    def start(self):
        self.server.start()

    def conf(self):
        return 'storage_adapter = "redis", storage_config = { port = %d },' % self.server.port

    def get(self, key):
        return self.server.command("GET", key)


class EtcdStore:
    adapter = "etcd"

    def __init__(self, workdir):
        self.server = Etcd(workdir)

    def start(self):
        self.server.start()

    def conf(self):
        return ('storage_adapter = "etcd", storage_config = { http_host = "%s", timeout = 2 },'
                % self.server.client_url)

    def get(self, key):
        return self.server.get("/" + key)


@pytest.fixture(params=["redis", "etcd"])
def store(request, workdir):
    s = (RedisStore if request.param == "redis" else EtcdStore)(workdir)
    s.start()
    yield s
    s.server.stop()


def cluster(nginx_factory, pebble, challtestsrv, workdir, store, domains, *, key_types=("ecc",),
            extra="", extras=("", "", "")):
    nodes = []
    for i in range(3):
        nodes.append(AutoSSL(
            nginx_factory, pebble, challtestsrv, workdir, domains=domains, workers=1,
            key_types=key_types, http_port=pebble.http_port if i == 0 else free_port(),
            extra=store.conf() + extra + extras[i], start=False))
    for n in nodes:
        n.nginx.start()
    return nodes


def no_errors(nodes, allow=()):
    for n in nodes:
        for line in n.nginx.error_log().splitlines():
            if "[error]" in line or "[crit]" in line or "[alert]" in line:
                assert any(a in line for a in allow), line


def test_cluster_concurrent_first_handshakes_order_once(pebble, challtestsrv, nginx_factory,
                                                        workdir, store):
    name = "crowd.example.test"
    nodes = cluster(nginx_factory, pebble, challtestsrv, workdir, store, [name],
                    key_types=("rsa", "ecc"))
    crowd(nodes, name, n=60, timeout=30)
    served = {}
    for kind in ("ecc", "rsa"):
        for i, node in enumerate(nodes):
            cert = node.wait_issued(name, kind=kind, timeout=90)
            served.setdefault(kind, set()).add(cert.serial_number)
    # every node serves the one certificate per key type
    assert len(served["ecc"]) == 1 and len(served["rsa"]) == 1
    # more handshakes everywhere: still one order per key type, one account for all nodes
    for _ in range(5):
        for node in nodes:
            assert not node.is_fallback(node.handshake(name, kind="ecc"))
    time.sleep(1)
    assert pebble.orders_count() == 2
    assert pebble.accounts_count() == 1
    assert store.get("domain:ecc:" + name) is not None
    assert store.get("domain:rsa:" + name) is not None
    assert store.get("update_lock:" + name) is None  # released
    no_errors(nodes)


def test_cluster_dead_node_blocks_a_name_no_longer_than_the_lock_ttl(
        pebble, challtestsrv, nginx_factory, workdir, store, account_key):
    name = "victim.example.test"
    lock_ttl = 4
    common = ('update_lock_ttl = %d, account_key_path = "%s", failure_cooloff = 1,'
              % (lock_ttl, account_key))
    # node 2 stalls before asking for validation, holding the lock
    nodes = cluster(nginx_factory, pebble, challtestsrv, workdir, store, [name], extra=common,
                    extras=("", "challenge_start_delay = 30,", ""))
    node1, node2, node3 = nodes
    assert node2.is_fallback(node2.handshake(name))
    deadline = time.monotonic() + 30
    while store.get("update_lock:" + name) is None:
        assert time.monotonic() < deadline, node2.nginx.log_tail(30)
        time.sleep(0.02)
    t_lock = time.monotonic()
    node2.nginx.wait_log(r"ordering ecc certificate for victim", timeout=20)
    deadline = time.monotonic() + 20
    while pebble.orders_count() < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    node2.kill()
    # the survivors keep asking; nobody orders while the dead node's lock lives
    issued = None
    while time.monotonic() < t_lock + lock_ttl + 30:
        for node in (node1, node3):
            cert = node.handshake(name)
            if not node.is_fallback(cert):
                issued = time.monotonic()
                break
            if time.monotonic() < t_lock + lock_ttl - 0.3:
                assert pebble.orders_count() == 1
        if issued:
            break
        time.sleep(0.2)
    assert issued, node1.nginx.log_tail(30)
    # ordered after the lock expired, and not much later
    assert pebble.orders_count() == 2
    assert t_lock + lock_ttl - 0.3 <= issued <= t_lock + lock_ttl + 15, issued - t_lock
    for node in (node1, node3):
        assert not node.is_fallback(node.wait_issued(name, timeout=10))
    no_errors([node1, node3])


def test_cluster_store_down_serves_cached_names_and_orders_after_restart(
        pebble, challtestsrv, nginx_factory, workdir, store, account_key):
    cached = "cached.example.test"
    # cache_ttl = 1: every second each node goes back to the store, so the outage is felt
    nodes = cluster(nginx_factory, pebble, challtestsrv, workdir, store,
                    [cached, "new1.example.test", "new2.example.test"],
                    extra='cache_ttl = 1, account_key_path = "%s",' % account_key)
    first = nodes[1].wait_issued(cached, timeout=60)
    for node in nodes:
        assert node.wait_issued(cached, timeout=10).serial_number == first.serial_number
    orders = pebble.orders_count()
    assert orders == 1

    store.server.kill()
    failures = []
    t_end = time.monotonic() + 4
    tried_new = False
    while time.monotonic() < t_end:
        for node in nodes:
            try:
                cert = node.handshake(cached)
                if cert.serial_number != first.serial_number:
                    failures.append("node served %s" % cert.subject)
            except Exception as e:  # noqa: BLE001 - counted
                failures.append(repr(e))
        if not tried_new:
            # a new name while the store is down: fallback, and no order without the lock
            assert nodes[0].is_fallback(nodes[0].handshake("new1.example.test"))
            tried_new = True
        time.sleep(0.1)
    assert failures == []
    assert pebble.orders_count() == orders
    for node in nodes:
        log = node.nginx.error_log()
        assert "serving cached certificate after a store error" in log
        assert store.adapter + ": " in log  # the error names the backend

    store.server.start()
    cert = nodes[2].wait_issued("new2.example.test", timeout=60)
    assert cert.serial_number != first.serial_number
    assert pebble.orders_count() >= orders + 1
    for node in nodes:
        assert node.handshake(cached).serial_number == first.serial_number
