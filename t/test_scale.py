"""Issue 17 at scale: the node-wide shared certificate cache (test_l2_*) and 100,000 names in one
redis behind three nodes (test_100k_*), on a real redis-server and, for renewals, Pebble.

The shared cache is checked from outside: redis MONITOR counts the store reads of a name, and
every https answer names the worker that served it (``reuseport`` spreads connections over the
workers).
"""

import json
import os
import random
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import AutoSSL, Pebble, Redis, StorageNginx, TestCA, bulk, free_port
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
