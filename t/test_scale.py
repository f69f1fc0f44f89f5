"""Many names on a cluster (issue 17): three nginx nodes on one redis and on one etcd, ordering
from a real Pebble, with scaled-down lease TTLs and intervals.

Leases and the renewal owner (the ``test_lease_*`` and ``test_owner_*`` functions): the node
that holds ``renewal_owner:`` runs the renewal passes and a dead one is replaced within the
lease TTL; ``update_lock:<name>`` is extended while its order runs and never deleted by a
holder that lost it.
"""

import datetime
import json
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import AutoSSL, Etcd, Redis, TestCA, free_port

OWNER_KEY = "renewal_owner:"


class RedisStore:
    def __init__(self, workdir):
        self.server = Redis(workdir)

    def conf(self):
        return 'storage_adapter = "redis", storage_config = { port = %d },' % self.server.port

    def get(self, key):
        v = self.server.command("GET", key)
        return v.decode() if isinstance(v, bytes) else v

    def put(self, key, value, ttl=None):
        if ttl:
            self.server.command("SET", key, value, "PX", str(int(ttl * 1000)))
        else:
            self.server.command("SET", key, value)


class EtcdStore:
    def __init__(self, workdir):
        self.server = Etcd(workdir)

    def conf(self):
        return ('storage_adapter = "etcd", storage_config = { http_host = "%s", timeout = 2 },'
                % self.server.client_url)

    def get(self, key):
        v = self.server.get("/" + key)
        return None if v is None else json.loads(v)

    def put(self, key, value, ttl=None):
        # as lua-resty-etcd serialises a string; a TTL is not needed by these tests
        self.server.put("/" + key, json.dumps(value))


@pytest.fixture(params=["redis", "etcd"])
def store(request, workdir):
    s = (RedisStore if request.param == "redis" else EtcdStore)(workdir)
    s.server.start()
    yield s
    s.server.stop()


@pytest.fixture
def account_key(workdir):
    path = os.path.join(str(workdir), "account.pem")
    with open(path, "wb") as f:
        f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return path


def _nodes(nginx_factory, pebble, challtestsrv, workdir, store, domains, extra, extras=None,
           first=None):
    """Three nodes; node 0 answers Pebble's http-01 requests. ``first``: the node started (and
    made the renewal owner) before the others."""
    nodes = []
    for i in range(3):
        nodes.append(AutoSSL(
            nginx_factory, pebble, challtestsrv, workdir, domains=domains, workers=2,
            key_types=("ecc",), http_port=pebble.http_port if i == 0 else free_port(),
            extra=store.conf() + extra + (extras[i] if extras else ""), start=False))
    if first is not None:
        nodes[first].nginx.start()
        _wait("no renewal owner", lambda: _node_of(nodes, store.get(OWNER_KEY)) is nodes[first],
              15)
    for i, n in enumerate(nodes):
        if i != first:
            n.nginx.start()
    return nodes


def _due_entry(workdir, name):
    """A stored entry (docs/FORMAT.md) of a certificate from another CA, one hour from its end
    of a three-day life: due for renewal."""
    ca = TestCA(os.path.join(str(workdir), "oldca-" + name))
    with open(ca.ca_pem, "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=3))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca._ca_key, hashes.SHA256())
    )
    return json.dumps({
        "domain": name, "type": "ecc", "updated": (now - datetime.timedelta(days=3)).timestamp(),
        "cert": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "pkey": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
    }), cert.serial_number


def _node_of(nodes, token):
    """The node whose worker holds a lease token ("<pid>:<worker id>:<time>:<random>")."""
    if token is None:
        return None
    pid = int(token.split(":", 1)[0])
    for n in nodes:
        if pid in n.nginx.workers():
            return n
    return None


def _wait(what, cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(step)


def _renewals(node, name):
    return node.nginx.error_log().count("renewing ecc certificate for %s " % name)


def _no_errors(nodes):
    for n in nodes:
        for line in n.nginx.error_log().splitlines():
            assert "[error]" not in line and "[crit]" not in line and "[alert]" not in line, line


OWNER_TTL = 3
COMMON = ("renewal_owner_ttl = %d, renew_check_interval = 2, renew_min_interval = 1, ari = false,"
          " cache_ttl = 1,"
          ' failure_cooloff = 1, account_key_path = "%s",')


def test_owner_exactly_one_node_renews_a_due_certificate(pebble, challtestsrv, nginx_factory,
                                                         workdir, store, account_key):
    name = "due.example.test"
    entry, old_serial = _due_entry(workdir, name)
    store.put("domain:ecc:" + name, entry)
    nodes = _nodes(nginx_factory, pebble, challtestsrv, workdir, store, [name],
                   COMMON % (OWNER_TTL, account_key))
    owner = _wait("no renewal owner", lambda: _node_of(nodes, store.get(OWNER_KEY)), 15)
    cert = _wait("not renewed", lambda: (lambda c: c if c.serial_number != old_serial else None)(
        nodes[1].handshake(name)), 60, step=0.5)
    assert not nodes[1].is_fallback(cert)
    # several more passes of every node: still the one renewal, by the owner alone
    time.sleep(3 * 2 + 1)
    assert [_renewals(n, name) for n in nodes] == [1 if n is owner else 0 for n in nodes]
    assert pebble.orders_count() == 1
    # one worker of the cluster: the lease token is the same all along (extended, not retaken)
    assert _node_of(nodes, store.get(OWNER_KEY)) is owner
    assert sum(n.nginx.error_log().count("renewal owner: this worker runs") for n in nodes) == 1
    _no_errors(nodes)


def test_owner_killed_another_node_runs_the_next_pass_within_the_lease_ttl(
        pebble, challtestsrv, nginx_factory, workdir, store, account_key):
    name = "after-owner.example.test"
    # node 1 owns the passes (node 0, which answers the CA's validation, must survive)
    nodes = _nodes(nginx_factory, pebble, challtestsrv, workdir, store, [name],
                   COMMON % (OWNER_TTL, account_key), first=1)
    owner = nodes[1]
    token = store.get(OWNER_KEY)
    # held past its TTL: extended
    time.sleep(OWNER_TTL + 1)
    assert store.get(OWNER_KEY) == token
    owner.kill()
    t_kill = time.monotonic()
    entry, old_serial = _due_entry(workdir, name)
    store.put("domain:ecc:" + name, entry)
    survivors = [n for n in nodes if n is not owner]
    new_owner = _wait("no new owner", lambda: _node_of(survivors, store.get(OWNER_KEY)),
                      OWNER_TTL + 3, step=0.05)
    took = time.monotonic() - t_kill
    assert took <= OWNER_TTL + 1, took
    cert = _wait("not renewed", lambda: (lambda c: c if c.serial_number != old_serial else None)(
        survivors[0].handshake(name)), 60, step=0.5)
    assert not survivors[0].is_fallback(cert)
    assert [_renewals(n, name) for n in survivors] == [
        1 if n is new_owner else 0 for n in survivors]
    assert pebble.orders_count() == 1
    _no_errors(survivors)


def test_lease_an_order_held_up_past_the_lock_ttl_is_still_the_only_order(
        pebble, challtestsrv, nginx_factory, workdir, store, account_key):
    name = "slow.example.test"
    lock_ttl = 2
    # node 2 waits 7 s (three and a half lock TTLs) before asking for validation
    nodes = _nodes(nginx_factory, pebble, challtestsrv, workdir, store, [name],
                   COMMON % (OWNER_TTL, account_key) + " update_lock_ttl = %d," % lock_ttl,
                   extras=("", "challenge_start_delay = 7,", ""))
    n1, n2, n3 = nodes
    assert n2.is_fallback(n2.handshake(name))
    token = _wait("no lock", lambda: store.get("update_lock:" + name), 10, step=0.02)
    assert _node_of(nodes, token) is n2
    t0 = time.monotonic()

    def stored():
        return "stored ecc certificate for " + name in n2.nginx.error_log()

    # the other nodes keep asking for the name (each handshake starts a background update)
    while not stored():
        assert time.monotonic() < t0 + 40, n2.nginx.log_tail(30)
        for n in (n1, n3):
            n.handshake(name)
        held = store.get("update_lock:" + name)
        if not stored():
            assert held == token  # extended, never expired, nobody else took it
        time.sleep(0.2)
    assert time.monotonic() - t0 >= 7 - 1
    for n in nodes:
        assert not n.is_fallback(n.wait_issued(name, timeout=15))
    assert pebble.orders_count() == 1
    # released by its holder (a node that looked after the order may hold it for a moment)
    _wait("lock not released", lambda: store.get("update_lock:" + name) is None, 5)
    _no_errors(nodes)


def test_lease_a_lock_taken_by_another_node_is_never_deleted_by_the_previous_owner(
        pebble, challtestsrv, nginx_factory, workdir, store, account_key):
    name = "taken.example.test"
    nodes = _nodes(nginx_factory, pebble, challtestsrv, workdir, store, [name],
                   COMMON % (OWNER_TTL, account_key) + " update_lock_ttl = 3,",
                   extras=("challenge_start_delay = 5,", "", ""))
    n1 = nodes[0]
    assert n1.is_fallback(n1.handshake(name))
    token = _wait("no lock", lambda: store.get("update_lock:" + name), 10, step=0.02)
    assert _node_of(nodes, token) is n1
    # as if n1's lease had run out and another node had taken the name, and stored a newer
    # certificate meanwhile
    other = "999999:0:1.0:12345"
    store.put("update_lock:" + name, other, 60)
    newer, newer_serial = _due_entry(workdir, name)
    newer_doc = json.loads(newer)
    newer_doc["updated"] = time.time()
    store.put("domain:ecc:" + name, json.dumps(newer_doc))
    n1.nginx.wait_log(r"update_lock:%s was taken over" % name.replace(".", r"\."), timeout=10)
    n1.nginx.wait_log(r"lock of %s was lost" % name.replace(".", r"\."), timeout=30)
    # the previous holder neither deleted the new holder's lock nor overwrote its certificate
    time.sleep(1)
    assert store.get("update_lock:" + name) == other
    assert json.loads(store.get("domain:ecc:" + name))["cert"] == newer_doc["cert"]
