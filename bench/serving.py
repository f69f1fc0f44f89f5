"""P1, P5, P2, P6: the serving path, one nginx worker on core 0, clients on core 1.

Every ratio compares the same certificate chain served by autossl (from its per-worker cache,
filled from a file store written here) and served statically by the same nginx, in interleaved
rounds, so that whatever else runs on the machine weighs on both sides alike.
"""

import json
import os
import re
import subprocess
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import certs
import hsclient
import lib
import store
from harness import TestCA

CONF = os.path.join(lib.BENCH, "nginx", "serving.conf")
NGINX_CORE = "0"
CLIENT_CORE = "1"
P1_NAME = "p1.bench.test"
P2_COUNT = 10000


def p2_names(count=P2_COUNT):
    return ["n%05d.bench.test" % i for i in range(count)]


class Serving:
    def __init__(self, workdir, quick=False):
        self.workdir = workdir
        self.quick = quick
        self.chain = certs.BenchChain(os.path.join(workdir, "chain"))
        self.fallback = TestCA(os.path.join(workdir, "fallback"), name="bench fallback")
        self.account_key = os.path.join(workdir, "account.pem")
        with open(self.account_key, "w") as f:
            f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode())
        self.store = os.path.join(workdir, "store")
        store.write_entries(self.store, [P1_NAME], "ecc", self.chain.chain, self.chain.key)
        self.ports = {k: lib.free_port() for k in ("autossl", "lua", "static", "empty", "min", "ctl")}
        values = {
            "AFFINITY": "01",
            "ACCOUNT_KEY": self.account_key,
            "STORE": self.store,
            "AUTOSSL_PORT": self.ports["autossl"],
            "LUA_PORT": self.ports["lua"],
            "STATIC_PORT": self.ports["static"],
            "EMPTY_PORT": self.ports["empty"],
            "MIN_PORT": self.ports["min"],
            "CTL_PORT": self.ports["ctl"],
            "FALLBACK_CERT": self.fallback.cert_pem,
            "FALLBACK_KEY": self.fallback.key_pem,
            "CHAIN": self.chain.chain_path,
            "KEY": self.chain.key_path,
        }
        self.nginx = lib.nginx_from_template(os.path.join(workdir, "nginx"), CONF, values,
                                             list(self.ports.values()))
        self.leaf_serial = self.chain.leaf_serial
        self.fallback_serial = None

    def start(self):
        self.nginx.start()
        workers = self.nginx.workers()
        if len(workers) != 1:
            raise RuntimeError("expected one nginx worker, got %r" % workers)
        self.worker = workers[0]
        # the autossl port serves the stored chain, the fallback for a name not stored
        assert self.serial(self.ports["autossl"], P1_NAME) == self.leaf_serial
        assert self.serial(self.ports["lua"], P1_NAME) == self.leaf_serial
        assert self.serial(self.ports["static"], P1_NAME) == self.leaf_serial
        assert self.serial(self.ports["min"], P1_NAME) == self.leaf_serial
        self.fallback_serial = self.serial(self.ports["autossl"], "nothing.example.test")
        assert self.fallback_serial != self.leaf_serial

    def stop(self):
        self.nginx.stop()

    def serial(self, port, name):
        der, _ = hsclient.handshake(port, name)
        return x509.load_der_x509_certificate(der).serial_number

    def cpu_ns(self):
        return lib.proc_cpu_ns(self.worker)

    def cpu_ticks(self):
        return lib.proc_cpu_ticks(self.worker)

    def ctl(self, path, timeout=120):
        url = "http://127.0.0.1:%d%s" % (self.ports["ctl"], path)
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode().strip()

    # -- P1 ------------------------------------------------------------------------------

    def h2load(self, port, n, conns=4):
        out = subprocess.run(
            ["taskset", "-c", CLIENT_CORE, "h2load", "--h1", "-n", str(n), "-c", str(conns),
             "--connect-to=127.0.0.1:%d" % port, "https://%s:%d/" % (P1_NAME, port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False).stdout
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if not m or int(m.group(2)) != n:
            raise RuntimeError("h2load did not complete %d requests:\n%s" % (n, out[-2000:]))
        rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        return float(rate.group(1)) if rate else 0.0

    def p1(self):
        sides = ["static", "autossl", "lua", "empty", "min"]
        n = 600 if self.quick else 1000
        rounds = 3 if self.quick else 80
        for side in sides:  # warm-up: JIT traces, caches, TCP
            self.h2load(self.ports[side], 300)
        cpu = {s: [] for s in sides}
        ticks = {s: 0 for s in sides}
        rate = {s: [] for s in sides}
        for r in range(rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                a, ta = self.cpu_ns(), self.cpu_ticks()
                rate[side].append(self.h2load(self.ports[side], n))
                b, tb = self.cpu_ns(), self.cpu_ticks()
                cpu[side].append((b - a) / 1000.0 / n)
                ticks[side] += tb - ta
        return _ratios(cpu, ticks, rate, rounds * n, "static")

    # -- P5 ------------------------------------------------------------------------------

    def gc(self):
        return float(self.ctl("/gc"))

    def p5_fill(self, names):
        """Stores every name with its own leaf and key (one intermediate, as a real CA), then
        one handshake per name through autossl: all cached."""
        t0 = time.monotonic()
        leaves = self.chain.leaves(names)
        gen_s = time.monotonic() - t0
        serials = {name: serial for name, _, _, serial in leaves}
        self.gc()
        time.sleep(0.2)
        heap0, rss0 = self.gc(), lib.rss_kib(self.worker)
        mem0, status0 = self.mem(), lib.proc_status_kib(self.worker)
        store.write_leaves(self.store, leaves, "ecc")
        del leaves
        t0 = time.monotonic()
        done, failed, secs = _pinned_load(self.ports["autossl"], names, len(names))
        if failed:
            raise RuntimeError("%d of %d handshakes failed while filling the cache"
                               % (failed, len(names)))
        fill_s = time.monotonic() - t0
        # every name is served from the store, none from the fallback
        for name in (names[0], names[len(names) // 2], names[-1]):
            assert self.serial(self.ports["autossl"], name) == serials[name], name
        heap1 = self.gc()
        time.sleep(0.2)
        rss1 = lib.rss_kib(self.worker)
        mem1, status1 = self.mem(), lib.proc_status_kib(self.worker)
        per = (rss1 - rss0) / float(len(names))
        n = float(len(names))
        return per, {
            # where the growth is, KiB per certificate: RssAnon/RssFile/RssShmem, glibc malloc
            # in use and free-but-kept (OpenSSL objects), the Lua heap (Lua objects)
            "per_cert_kib": {
                **{k: round((status1[k] - status0[k]) / n, 3) for k in status0},
                "malloc_in_use": round((mem1["malloc_in_use"] - mem0["malloc_in_use"])
                                       / 1024.0 / n, 3),
                "malloc_free": round((mem1["malloc_free"] - mem0["malloc_free"]) / 1024.0 / n, 3),
                "lua": round((mem1["lua_kib"] - mem0["lua_kib"]) / n, 3),
            },
            "rss_before_kib": rss0, "rss_after_kib": rss1,
            "lua_heap_before_kib": round(heap0), "lua_heap_after_kib": round(heap1),
            "lua_heap_per_cert_kib": round((heap1 - heap0) / len(names), 3),
            "certs": len(names), "fill_handshakes_per_s": round(done / secs, 1),
            "fill_seconds": round(fill_s, 2), "leaf_generation_seconds": round(gen_s, 2),
            "leaves": "one leaf and key per name, one shared intermediate",
        }

    def mem(self):
        return json.loads(self.ctl("/mem"))

    # -- P2 ------------------------------------------------------------------------------

    def p2(self, names, cache_ttl=60.0):
        """Interleaved rounds for twice cache_ttl of wall time from the fill: the autossl side
        gets one TTL's worth of handshakes at this client's rate, and every cached entry runs
        out once in it and is re-read from the store, as in a steady state."""
        sides = ["static", "autossl"]
        n = 600 if self.quick else 2000
        until = time.monotonic() + (15.0 if self.quick else 2 * cache_ttl)
        cpu = {s: [] for s in sides}
        ticks = {s: 0 for s in sides}
        rate = {s: [] for s in sides}
        offset = {s: 0 for s in sides}
        r = 0
        while time.monotonic() < until or r < 2:
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                a, ta = self.cpu_ns(), self.cpu_ticks()
                done, failed, secs = _pinned_load(self.ports[side], names, n, offset[side])
                b, tb = self.cpu_ns(), self.cpu_ticks()
                if failed:
                    raise RuntimeError("P2: %d handshakes failed on %s" % (failed, side))
                offset[side] += n
                cpu[side].append((b - a) / 1000.0 / n)
                ticks[side] += tb - ta
                rate[side].append(done / secs)
            r += 1
        return _ratios(cpu, ticks, rate, r * n, "static")

    # -- P6 ------------------------------------------------------------------------------

    def p6(self, passes=3):
        results = []
        for _ in range(passes):
            a, ta = self.cpu_ns(), self.cpu_ticks()
            t0 = time.monotonic()
            lua_clock = float(self.ctl("/renew"))
            wall = time.monotonic() - t0
            b, tb = self.cpu_ns(), self.cpu_ticks()
            results.append({"cpu_s": (b - a) / 1e9, "ticks_s": (tb - ta) / lib.CLK_TCK,
                            "lua_os_clock_s": lua_clock, "wall_s": wall})
        if "[error]" in self.nginx.error_log():
            raise RuntimeError("renewal pass logged errors:\n" + self.nginx.log_tail(20))
        best = lib.median([r["cpu_s"] for r in results])
        return best, {"passes": [{k: round(v, 4) for k, v in r.items()} for r in results],
                      "entries": len(os.listdir(self.store))}


def _pinned_load(port, names, total, offset=0):
    """hsclient.run_load from a process pinned to the client core."""
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    try:
        return hsclient.run_load(port, names, total, procs=4, offset=offset)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count())))


def _ratios(cpu, ticks, rate, handshakes, base):
    """Per side: median µs of worker CPU per handshake, and the ratio to ``base`` as the median
    of the per-round ratios (robust to a burst of other load in one round) and of totals."""
    out = {}
    for side, xs in cpu.items():
        per_round = [x / y for x, y in zip(xs, cpu[base])]
        out[side] = {
            "cpu_us_per_handshake": round(lib.median(xs), 2),
            "ratio": round(lib.median(per_round), 4),
            "ratio_of_totals": round(sum(xs) / sum(cpu[base]), 4),
            "ratio_of_stat_ticks": round(ticks[side] / float(ticks[base] or 1), 4),
            "handshakes_per_s": round(lib.median(rate[side]), 1),
            "handshakes": handshakes,
            "per_round_us": [round(x, 1) for x in xs],
        }
    return out
