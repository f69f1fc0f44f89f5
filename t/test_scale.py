"""Issue 17, many names on a cluster, on a real redis-server, etcd and Pebble: the node-wide shared
certificate cache (test_l2_*), 100,000 names in one redis behind three nodes (test_100k_*), and
leases (test_lease_*, test_owner_*): the node that holds ``renewal_owner:`` runs the renewal
passes and a dead one is replaced within the lease TTL; ``update_lock:<name>`` is extended while
its order runs and never deleted by a holder that lost it (scaled-down TTLs and intervals).

The shared cache is checked from outside: redis MONITOR counts the store reads of a name, and
every https answer names the worker that served it (``reuseport`` spreads connections over the
workers).
"""

import datetime
import json
import os
import random
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import AutoSSL, Etcd, Pebble, Redis, StorageNginx, TestCA, bulk, free_port
from harness.client import tls_handshake

L2_DICT = "acme_l2"


class Monitor:
    """``redis-cli MONITOR`` into a file; ``gets(key)`` counts the GETs of `key` seen since."""

    def __init__(self, redis, path):
        self.path = path
        self.out = open(path, "w")
        self.proc = subprocess.Popen(["redis-cli", "-p", str(redis.port), "monitor"],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        # MONITOR answers OK before it reports anything
        while time.monotonic() < deadline:
            with open(path) as f:
                if "OK" in f.read():
                    return
            time.sleep(0.05)
        raise AssertionError("redis-cli monitor did not start")

    def gets(self, key):
        time.sleep(0.3)  # what redis-cli has not written yet
        with open(self.path) as f:
            return sum(1 for line in f if '"get" "%s"' % key in line.lower())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


def entry_json(name, typ, cert_pem, key_pem):
    """A stored certificate entry as lua-resty-acme writes it (docs/FORMAT.md)."""
    return json.dumps({"domain": name, "pkey": key_pem, "cert": cert_pem, "type": typ,
                       "updated": time.time()}).replace("/", "\\/")


def seed(redis, ca, name):
    """Stores a chain (leaf + CA) and key for `name` in redis; returns the leaf's serial."""
    cert_path, key_path = ca.issue([name], name.split(".")[0])
    with open(cert_path) as f:
        leaf = f.read()
    with open(ca.ca_pem) as f:
        chain = leaf + f.read()
    with open(key_path) as f:
        key = f.read()
    redis.command("SET", "domain:ecc:" + name, entry_json(name, "ecc", chain, key))
    return x509.load_pem_x509_certificate(leaf.encode()).serial_number


def l2_node(nginx_factory, pebble, challtestsrv, workdir, redis, domains, *, cache_ttl=60,
            admin_token=None, extra=""):
    """One node, two workers, redis storage and the shared cache; its ``pid_port`` serves
    https through autossl from every worker (reuseport) and answers with the worker's pid,
    ``ctl_port`` tells what the shared cache holds for a name."""
    static = TestCA(os.path.join(str(workdir), "static-fallback"), name="static fallback")
    pid_port, ctl_port = free_port(), free_port()
    extra_http = """
  lua_shared_dict %(dict)s 4m;
  server {
    listen 127.0.0.1:%(pid_port)d ssl reuseport;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_certificate_by_lua_block { require("resty.acme.autossl").ssl_certificate() }
    location / { content_by_lua_block { ngx.say(ngx.worker.pid()) } }
    location = /native {
      content_by_lua_block {
        ngx.say(ngx.worker.pid(), " ", require("resty.acme.tls_cert").native_served())
      }
    }
  }
  server {
    listen 127.0.0.1:%(ctl_port)d;
    location = /l2 {
      content_by_lua_block {
        local autossl = require("resty.acme.autossl")
        local typ, name = ngx.var.arg_type, ngx.var.arg_name
        local shared = require("resty.acme.sharedcache").new("%(dict)s")
        local _, expires, digest = shared:peek(typ, name)
        local raw = autossl.storage:get("domain:" .. typ .. ":" .. name)
        ngx.say(require("cjson").encode({
          digest = digest and digest:gsub(".", function(c)
            return string.format("%%02x", c:byte())
          end) or ngx.null,
          store = raw and ngx.md5(raw) or ngx.null,
          ttl = expires and expires - ngx.now() or ngx.null,
        }))
      }
    }
  }
""" % {"dict": L2_DICT, "pid_port": pid_port, "ctl_port": ctl_port, "cert": static.cert_pem,
       "key": static.key_pem}
    extra = ('storage_adapter = "redis", storage_config = { port = %d }, shared_cache = "%s", '
             'cache_size = 10, cache_ttl = %s, %s' % (redis.port, L2_DICT, cache_ttl, extra))
    node = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=domains, extra=extra,
                   workers=2, key_types=("ecc",), extra_http=extra_http,
                   admin_token=admin_token)
    node.pid_port, node.ctl_port = pid_port, ctl_port
    return node


def served_by(node, name):
    """(serial, worker pid) of one new connection to the node's reuseport listener."""
    cert, _, data = tls_handshake(node.pid_port, name, send=b"GET / HTTP/1.0\r\n\r\n")
    return cert.serial_number, int(data.split(b"\r\n\r\n", 1)[1])


def until_every_worker(node, name, workers=2, tries=200):
    """Connections until every worker has served `name`: {pid: {serials}}."""
    seen = {}
    for _ in range(tries):
        serial, pid = served_by(node, name)
        seen.setdefault(pid, set()).add(serial)
        if len(seen) >= workers:
            return seen
    raise AssertionError("only workers %r served %s in %d connections" % (sorted(seen), name,
                                                                          tries))


def l2_state(node, name, typ="ecc"):
    import urllib.request
    url = "http://127.0.0.1:%d/l2?type=%s&name=%s" % (node.ctl_port, typ, name)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def redis(workdir):
    r = Redis(workdir).start()
    yield r
    r.stop()


def test_l2_config_names_a_dict_that_exists(workdir, core_so):
    n = StorageNginx(workdir, {}).start()
    try:
        shm = {"shm_name": "acme"}
        assert n.autossl_init("shm", shm, shared_cache="acme") is None
        err = n.autossl_init("shm", shm, shared_cache="no_such_dict")
        assert "lua_shared_dict no_such_dict is not defined (shared_cache)" in err, err
        err = n.autossl_init("shm", shm, shared_cache=5)
        assert "shared_cache must be the name of a lua_shared_dict, got number" in err, err
    finally:
        n.stop()


def test_l2_filled_by_one_worker_used_by_another(nginx_factory, pebble, challtestsrv, workdir,
                                                 redis):
    ca = TestCA(os.path.join(str(workdir), "store-ca"), name="l2 store CA")
    serial = seed(redis, ca, "l2.example.test")
    node = l2_node(nginx_factory, pebble, challtestsrv, workdir, redis, ["l2.example.test"])
    time.sleep(1)  # the workers' first renewal passes read the store
    mon = Monitor(redis, os.path.join(str(workdir), "monitor.log"))
    try:
        seen = until_every_worker(node, "l2.example.test")
        # every worker served the stored certificate, and the store was read once for them all
        assert all(s == {serial} for s in seen.values()), seen
        assert mon.gets("domain:ecc:l2.example.test") == 1
        state = l2_state(node, "l2.example.test")
        assert state["digest"] == state["store"] and 50 < state["ttl"] <= 60, state
    finally:
        mon.stop()
    # a name that is not stored is not kept in the shared cache: each worker asks the store
    assert l2_state(node, "none.example.test")["digest"] is None
    assert "[error]" not in node.nginx.error_log()


def native_by(node, name):
    """(serial, worker pid, handshakes the worker's native callback served so far, this one
    included) of one new connection."""
    cert, _, data = tls_handshake(node.pid_port, name, send=b"GET /native HTTP/1.0\r\n\r\n")
    pid, count = data.split(b"\r\n\r\n", 1)[1].split()
    return cert.serial_number, int(pid), int(count)


def test_l2_read_by_the_native_callback_without_lua(nginx_factory, pebble, challtestsrv, workdir,
                                                    redis):
    ca = TestCA(os.path.join(str(workdir), "store-ca"), name="l2 native CA")
    serials = {n: seed(redis, ca, n) for n in ("a.example.test", "b.example.test")}
    node = l2_node(nginx_factory, pebble, challtestsrv, workdir, redis, list(serials),
                   extra="native_serving = true,")
    # every worker serves a.example.test through Lua once, which attaches the native callback
    until_every_worker(node, "a.example.test")
    mon = Monitor(redis, os.path.join(str(workdir), "monitor.log"))
    try:
        # the first worker to see b.example.test reads the store (its Lua phase) and leaves it
        # in the shared cache; each other worker's first b.example.test is the callback's,
        # loaded from the shared cache: its native count goes up by one
        counts, firsts = {}, []
        for _ in range(200):
            _, pid, count = native_by(node, "a.example.test")
            counts[pid] = count
            if len(counts) == 2:
                break
        assert len(counts) == 2, counts
        seen = {}
        for _ in range(200):
            serial, pid, count = native_by(node, "b.example.test")
            assert serial == serials["b.example.test"]
            if pid not in seen:
                firsts.append((pid, count - counts[pid]))
            seen[pid] = count
            counts[pid] = count
            if len(seen) == 2:
                break
        assert len(firsts) == 2, firsts
        (first_pid, first_delta), (other_pid, other_delta) = firsts
        assert first_delta == 0, firsts  # Lua: the store read
        assert other_delta == 1, firsts  # native: the shared entry
        assert mon.gets("domain:ecc:b.example.test") == 1
    finally:
        mon.stop()
    assert "[error]" not in node.nginx.error_log()


def test_l2_renewal_replaces_the_entry(nginx_factory, challtestsrv, workdir, redis):
    # certificates of 8 s, due after about 4: the renewal passes renew in one worker, again and
    # again
    pebble = Pebble(workdir, challtestsrv=challtestsrv, validity_period=8).start()
    try:
        account_key = os.path.join(str(workdir), "account.pem")
        with open(account_key, "wb") as f:
            f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        node = l2_node(nginx_factory, pebble, challtestsrv, workdir, redis,
                       ["renew.example.test"], cache_ttl=3, admin_token="l2-admin-token",
                       extra='account_key_path = "%s", renew_min_interval = 1,' % account_key)
        status, res = node.admin("POST", "/acme/certificates/renew.example.test")
        assert status == 200, res
        seen = until_every_worker(node, "renew.example.test")
        assert all(len(s) == 1 for s in seen.values()), seen
        stored = l2_state(node, "renew.example.test")["store"]
        renewals = 0
        deadline = time.monotonic() + 60
        while renewals < 2 and time.monotonic() < deadline:
            state = l2_state(node, "renew.example.test")
            if state["store"] != stored:
                # a renewal stored a new certificate: its worker replaced the node's entry
                # (without that the entry would be the old one, or gone once its 3 s ran out)
                for _ in range(10):
                    if state["digest"] == state["store"]:
                        break
                    time.sleep(0.1)
                    state = l2_state(node, "renew.example.test")
                assert state["digest"] == state["store"], state
                stored = state["store"]
                renewals += 1
            time.sleep(0.05)
        assert renewals == 2, node.nginx.log_tail(30)
        # and the workers serve it: a new connection gets the stored certificate
        entry = json.loads(redis.command("GET", "domain:ecc:renew.example.test"))
        leaf = x509.load_pem_x509_certificate(entry["cert"].encode())
        serial, _ = served_by(node, "renew.example.test")
        assert serial == leaf.serial_number or l2_state(
            node, "renew.example.test")["store"] != stored
        assert "[error]" not in node.nginx.error_log()
    finally:
        pebble.stop()


@pytest.mark.slow
def test_100k_names_three_nodes_each_served_its_own(nginx_factory, pebble, challtestsrv,
                                                    workdir, redis):
    count, sample = 100000, 1000
    names = ["n%06d.scale.test" % i for i in range(count)]
    t0 = time.monotonic()
    entries = bulk.leaves(names)
    bulk.seed_redis(redis, entries)
    serials = {e[0]: e[3] for e in entries}
    del entries
    assert redis.command("DBSIZE") == count
    print("100k: %d entries generated and stored in %.1f s" % (count, time.monotonic() - t0))
    nodes = []
    for i in range(3):
        nodes.append(AutoSSL(
            nginx_factory, pebble, challtestsrv, os.path.join(str(workdir), "node%d" % i),
            domains=["*.scale.test"], workers=1, key_types=("ecc",),
            http_port=None if i == 0 else free_port(),
            extra='storage_adapter = "redis", storage_config = { port = %d }, '
                  'cache_size = 100, shared_cache = "%s",' % (redis.port, L2_DICT),
            extra_http="\n  lua_shared_dict %s 8m;" % L2_DICT))
    orders0 = pebble.orders_count()
    rng = random.Random(17)
    picked = rng.sample(names, sample)
    wrong = []
    for i, name in enumerate(picked):
        cert = nodes[i % 3].handshake(name, kind="ecc")
        if cert.serial_number != serials[name]:
            wrong.append(name)
    assert wrong == [], "%d of %d names got another certificate, e.g. %s" % (
        len(wrong), sample, wrong[:3])
    # all of them came from the store: nothing was ordered
    assert pebble.orders_count() == orders0
    for n in nodes:
        assert "[error]" not in n.nginx.error_log(), n.nginx.log_tail(20)


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
