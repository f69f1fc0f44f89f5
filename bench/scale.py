"""P10 and P12: 10^5 (or, with --scale, more) names in a real redis behind one nginx worker
whose own cache holds a tenth of them, with the node's shared cache (shared_cache) holding all.

P12: worker RSS per cached certificate once every name was served once (the worker cache full
at cache_size, the shared dict holding every name). P10: worker CPU per full handshake, autossl
over the whole working set ÷ the same chain served statically, in interleaved rounds after that
fill, so that nearly every autossl handshake misses the worker cache and is loaded from the
shared one (the store reads during the rounds are counted).
"""

import os
import time
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import certs
import lib
import serving
from harness import Redis, TestCA
from harness.bulk import seed_redis

CONF = os.path.join(lib.BENCH, "nginx", "scale.conf")
COUNT = 100000
P1_NAME = serving.P1_NAME


def names(count):
    return ["s%07d.bench.test" % i for i in range(count)]


class Scale:
    def __init__(self, workdir, count=COUNT, quick=False):
        self.workdir = workdir
        self.count = count
        self.quick = quick
        self.cache_size = max(1, count // 10)
        self.chain = certs.BenchChain(os.path.join(workdir, "chain"))
        self.fallback = TestCA(os.path.join(workdir, "fallback"), name="bench fallback")
        self.redis = Redis(workdir)
        self.account_key = os.path.join(workdir, "account.pem")
        with open(self.account_key, "w") as f:
            f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode())
        self.ports = {k: lib.free_port() for k in ("autossl", "static", "ctl")}
        # an entry is about 1.1 KiB (DER leaf + intermediate, key components), 2 KiB in the
        # dict's slab; room beyond that so that no entry is evicted
        l2_mib = max(16, count * 3 // 1024 + 16)
        values = {
            "AFFINITY": "01",
            "ACCOUNT_KEY": self.account_key,
            "REDIS_PORT": self.redis.port,
            "CACHE_SIZE": self.cache_size,
            "L2_SIZE": "%dm" % l2_mib,
            "AUTOSSL_PORT": self.ports["autossl"],
            "STATIC_PORT": self.ports["static"],
            "CTL_PORT": self.ports["ctl"],
            "FALLBACK_CERT": self.fallback.cert_pem,
            "FALLBACK_KEY": self.fallback.key_pem,
            "CHAIN": self.chain.chain_path,
            "KEY": self.chain.key_path,
        }
        self.nginx = lib.nginx_from_template(os.path.join(workdir, "nginx"), CONF, values,
                                             list(self.ports.values()))
        self.names = names(count)

    def start(self):
        self.redis.start()
        t0 = time.monotonic()
        leaves = self.chain.leaves(self.names)
        self.gen_s = time.monotonic() - t0
        self.serials = {name: serial for name, _, _, serial in leaves}
        t0 = time.monotonic()
        seed_redis(self.redis, leaves)
        self.seed_s = time.monotonic() - t0
        del leaves
        self.nginx.start()
        workers = self.nginx.workers()
        if len(workers) != 1:
            raise RuntimeError("expected one nginx worker, got %r" % workers)
        self.worker = workers[0]

    def stop(self):
        self.nginx.stop()
        self.redis.stop()

    def gc(self):
        url = "http://127.0.0.1:%d/gc" % self.ports["ctl"]
        with urllib.request.urlopen(url, timeout=60) as r:
            return float(r.read())

    def store_reads(self):
        """GET calls redis has answered so far."""
        for line in self.redis.command("INFO", "commandstats").decode().splitlines():
            if line.startswith("cmdstat_get:"):
                return int(line.split("calls=", 1)[1].split(",", 1)[0])
        return 0

    def check(self, name):
        der, _ = serving.hsclient.handshake(self.ports["autossl"], name)
        from cryptography import x509
        return x509.load_der_x509_certificate(der).serial_number == self.serials[name]

    def p12_fill(self):
        """One handshake per name: every name read from the store once and left in the shared
        cache; the worker cache holds the last cache_size."""
        self.gc()
        time.sleep(0.2)
        rss0, status0 = lib.rss_kib(self.worker), lib.proc_status_kib(self.worker)
        reads0 = self.store_reads()
        t0 = time.monotonic()
        done, failed, secs = serving._pinned_load(self.ports["autossl"], self.names, self.count)
        if failed:
            raise RuntimeError("%d of %d handshakes failed while filling" % (failed, self.count))
        fill_s = time.monotonic() - t0
        for name in (self.names[0], self.names[self.count // 2], self.names[-1]):
            if not self.check(name):
                raise RuntimeError("%s was not served its stored certificate" % name)
        self.gc()
        time.sleep(0.2)
        rss1, status1 = lib.rss_kib(self.worker), lib.proc_status_kib(self.worker)
        n = float(self.count)
        per = (rss1 - rss0) / n
        return per, {
            "per_cert_kib": {k: round((status1[k] - status0[k]) / n, 3) for k in status0},
            "rss_before_kib": rss0, "rss_after_kib": rss1, "certs": self.count,
            "worker_cache_size": self.cache_size,
            "store_reads": self.store_reads() - reads0,
            "fill_handshakes_per_s": round(done / secs, 1), "fill_seconds": round(fill_s, 2),
            "leaf_generation_seconds": round(self.gen_s, 2),
            "redis_seed_seconds": round(self.seed_s, 2),
            "what": "worker RSS growth (private + the shared dict's pages it touched) over every"
                    " name served once, ÷ names",
        }

    def p10(self):
        """Interleaved static / autossl rounds; autossl walks on through the working set from
        where the fill ended, so nearly every name is out of the worker cache."""
        sides = ["static", "autossl"]
        n = 1000 if self.quick else 5000
        rounds = 2 if self.quick else max(2, min(10, self.count // n))
        cpu = {s: [] for s in sides}
        ticks = {s: 0 for s in sides}
        rate = {s: [] for s in sides}
        offset = 0
        reads0 = self.store_reads()
        for r in range(rounds):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                a, ta = lib.proc_cpu_ns(self.worker), lib.proc_cpu_ticks(self.worker)
                if side == "static":
                    done, failed, secs = serving._pinned_load(self.ports["static"], [P1_NAME], n)
                else:
                    done, failed, secs = serving._pinned_load(self.ports["autossl"], self.names,
                                                              n, offset)
                    offset += n
                b, tb = lib.proc_cpu_ns(self.worker), lib.proc_cpu_ticks(self.worker)
                if failed:
                    raise RuntimeError("P10: %d handshakes failed on %s" % (failed, side))
                cpu[side].append((b - a) / 1000.0 / n)
                ticks[side] += tb - ta
                rate[side].append(done / secs)
        d = serving._ratios(cpu, ticks, rate, rounds * n, "static")
        d["store_reads_during_rounds"] = self.store_reads() - reads0
        d["names"] = self.count
        d["worker_cache_size"] = self.cache_size
        return d


def run(want, workdir, count, quick, results, details):
    s = Scale(workdir, count=count, quick=quick)
    lib.log("P10/P12: %d names: generating leaves, seeding redis" % count)
    s.start()
    try:
        lib.log("P12: every name served once")
        per, d = s.p12_fill()
        if "P12" in want:
            results["P12"] = round(per, 3)
            details["P12"] = d
        lib.log("P12 %s" % d)
        if "P10" in want:
            lib.log("P10: interleaved rounds over %d names" % count)
            d = s.p10()
            results["P10"] = d["autossl"]["ratio_of_totals"]
            details["P10"] = d
            lib.log("P10 %s" % d)
    finally:
        s.stop()
