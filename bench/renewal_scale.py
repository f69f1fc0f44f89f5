"""P11: renewal CPU per cluster pass over 100,000 stored certificates on one redis, none due:
every nginx worker of 3 nodes summed, divided by the same on 1 node (issue 17: one renewal
owner does the work, the others skip it).

The store is seeded in bulk (one pipelined write): every entry holds the same 90-day chain and
key, which is all a pass that finds nothing due reads (the JSON, then the leaf's validity).
No CA is contacted: nothing is due and `ari = false`. Each node runs nginx-conf/autossl.conf
with 2 workers; CPU is read from /proc for every worker of every node over `PASSES` passes of
the owner after its first listing.
"""

import os
import re
import socket
import time

import certs
import lib
from harness import Redis, TestCA
from harness.nginx import lua_package_cpath, lua_package_path

COUNT = 100000
INTERVAL = 10
PASSES = 3
ZONE = "scale.bench.test"
PASS_RE = r"renewal pass: (\d+) listed, (\d+) read, (\d+) due"


def names(count):
    return ["s%07d.%s" % (i, ZONE) for i in range(count)]


def seed(redis, count, chain, batch=10000):
    """``domain:ecc:<name>`` for ``count`` names in pipelined batches of SETs (one batch of
    10^4 entries is about 34 MB)."""
    import store
    value = store.entry_value("x", "ecc", chain.chain, chain.key).encode()
    all_names = names(count)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=120) as s:
        for i in range(0, count, batch):
            out = bytearray()
            for n in all_names[i:i + batch]:
                key = ("domain:ecc:" + n).encode()
                out += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(key), key, len(value), value)
            s.sendall(bytes(out))
            want, got = len(all_names[i:i + batch]) * len(b"+OK\r\n"), 0
            while got < want:
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise RuntimeError("redis closed the seeding connection")
                if b"-" in chunk:
                    raise RuntimeError("redis refused a seeding SET: %r" % chunk[:200])
                got += len(chunk)


class Node:
    def __init__(self, workdir, redis, fallback, account_key):
        self.nginx = lib.Nginx(workdir, "", http_ports=[lib.free_port(), lib.free_port()])
        http, https = self.nginx.http_ports
        extra = ('storage_adapter = "redis", storage_config = { port = %d, scan_count = 1000 },'
                 ' renew_check_interval = %d, ari = false,'
                 ' account_key_path = "%s", domain_key_types = { "ecc" },'
                 % (redis.port, INTERVAL, account_key))
        lib.render_example(self.nginx, {
            "PREFIX": self.nginx.workdir,
            "WORKERS": "2",
            "LUA_PATH": lua_package_path(),
            "LUA_CPATH": lua_package_cpath(),
            # never asked: nothing is due and ARI is off
            "ACME_DIRECTORY": "https://127.0.0.1:9/directory",
            "ACME_CA_CERT": fallback.ca_pem,
            "RESOLVER": "127.0.0.1:53",
            "HTTP_PORT": "127.0.0.1:%d" % http,
            "HTTPS_PORT": "127.0.0.1:%d" % https,
            "FALLBACK_CERT": fallback.cert_pem,
            "FALLBACK_KEY": fallback.key_pem,
            "DOMAINS": '{ "*.%s" }' % ZONE,
            "EMAIL": "bench@bench.test",
            "AUTOSSL_EXTRA": extra,
        }, replace=[('domain_key_types = { "rsa", "ecc" },\n', "")])

    def passes(self):
        return [tuple(int(x) for x in m) for m in re.findall(PASS_RE, self.nginx.error_log())]


def cluster_pass_cpu(workdir, redis, size, fallback, account_key, count):
    """CPU seconds of every worker of ``size`` nodes per owner pass after the first listing."""
    nodes = [Node(os.path.join(workdir, "n%d-%d" % (size, i)), redis, fallback, account_key)
             for i in range(size)]
    for n in nodes:
        n.nginx.start()
    try:
        deadline = time.monotonic() + 600
        while True:
            owners = [n for n in nodes if any(p[0] >= count for p in n.passes())]
            if owners:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no first listing in 600 s\n" + nodes[0].nginx.log_tail(20))
            time.sleep(0.5)
        owner = owners[0]
        first = next(p for p in owner.passes() if p[0] >= count)
        pids = [p for n in nodes for p in n.nginx.workers()]
        # the first listing ran when the owner took the lease, at no fixed point of the
        # renewal timer's interval: the window opens at the end of the timer's next pass, so
        # that PASSES passes span PASSES intervals on 1 and on 3 nodes alike (the idle workers'
        # CPU grows with the window)
        done = len(owner.passes())
        while len(owner.passes()) == done:
            if time.monotonic() > deadline:
                raise RuntimeError("the owner ran no second pass\n" + owner.nginx.log_tail(20))
            time.sleep(0.05)
        done = len(owner.passes())
        cpu0 = lib.cpu_seconds(pids)
        t0 = time.monotonic()
        while len(owner.passes()) < done + PASSES:
            if time.monotonic() - t0 > PASSES * INTERVAL * 4 + 60:
                raise RuntimeError("the owner ran no further passes\n" + owner.nginx.log_tail(20))
            time.sleep(0.05)
        cpu = lib.cpu_seconds(pids) - cpu0
        wall = time.monotonic() - t0
        others = sum(len(n.passes()) for n in nodes if n is not owner)
        log = "".join(n.nginx.error_log() for n in nodes)
        if "[error]" in log:
            raise RuntimeError("a node logged errors:\n" + log[-3000:])
        return cpu / PASSES, {"nodes": size, "cpu_s_per_pass": round(cpu / PASSES, 4),
                              "window_s": round(wall, 1), "first_pass": first,
                              "passes_by_others": others}
    finally:
        for n in nodes:
            n.nginx.stop()


def run(workdir, quick, results, details, count=COUNT):
    count = 5000 if quick else count
    os.makedirs(workdir, exist_ok=True)
    chain = certs.BenchChain(os.path.join(workdir, "chain"), names=("x." + ZONE,))
    fallback = TestCA(os.path.join(workdir, "fallback"), name="bench fallback")
    account_key = chain.key_path
    redis = Redis(workdir).start()
    try:
        t0 = time.monotonic()
        seed(redis, count, chain)
        lib.log("P11: %d entries seeded in %.1f s" % (count, time.monotonic() - t0))
        one, d1 = cluster_pass_cpu(workdir, redis, 1, fallback, account_key, count)
        lib.log("P11 one node %s" % d1)
        redis.command("DEL", "renewal_owner:")
        three, d3 = cluster_pass_cpu(workdir, redis, 3, fallback, account_key, count)
        lib.log("P11 three nodes %s" % d3)
    finally:
        redis.stop()
    results["P11"] = round(three / one, 3)
    details["P11"] = {"entries": count, "one": d1, "three": d3}
