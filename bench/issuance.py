"""P3, P9, P4, P8: issuing new names with Pebble, nginx running nginx-conf/autossl.conf.

The example configuration is rendered by scripts/render-conf as the README's demo does; the
benchmarks only choose the key types and, for P3, `blocking = true`. Pebble runs with
PEBBLE_VA_NOSLEEP=1 (validation without Pebble's random 0-15 s delay), no nonce rejection and
no authorization reuse (the harness's defaults), and mock DNS pointing every name to 127.0.0.1.
"""

import json
import os
import re
import threading
import time

import hsclient
import lib
from harness import ChallTestSrv, Pebble, TestCA
from harness.nginx import lua_package_cpath, lua_package_path

ZONE = "iss.bench.test"


class ExampleNginx:
    """nginx-conf/autossl.conf for Pebble; ``key_types`` replaces the example's list."""

    def __init__(self, workdir, pebble, cts, *, key_types, extra="", workers=2):
        self.https_port = lib.free_port()
        self.fallback = TestCA(os.path.join(workdir, "fallback"), name="bench fallback")
        with open(self.fallback.cert_pem) as f:
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding
            self.fallback_der = x509.load_pem_x509_certificate(f.read().encode()).public_bytes(
                Encoding.DER)
        self.nginx = lib.Nginx(os.path.join(workdir, "nginx"), "",
                               http_ports=[pebble.http_port, self.https_port])
        extra = extra + "\n      domain_key_types = { %s }," % ", ".join(
            json.dumps(t) for t in key_types)
        values = {
            "PREFIX": self.nginx.workdir,
            "WORKERS": str(workers),
            "LUA_PATH": lua_package_path(),
            "LUA_CPATH": lua_package_cpath(),
            "ACME_DIRECTORY": pebble.directory_url,
            "ACME_CA_CERT": pebble.ca_pem,
            "RESOLVER": cts.dns_server,
            "HTTP_PORT": "127.0.0.1:%d" % pebble.http_port,
            "HTTPS_PORT": "127.0.0.1:%d" % self.https_port,
            "FALLBACK_CERT": self.fallback.cert_pem,
            "FALLBACK_KEY": self.fallback.key_pem,
            "DOMAINS": '{ "*.%s" }' % ZONE,
            "EMAIL": "bench@bench.test",
            "AUTOSSL_EXTRA": extra,
        }
        lib.render_example(self.nginx, values,
                           replace=[('domain_key_types = { "rsa", "ecc" },\n', "")])

    def start(self):
        self.nginx.start()
        return self

    def stop(self):
        self.nginx.stop()

    def issued(self, name, timeout=10):
        """The served leaf is not the fallback (None on a failed handshake)."""
        try:
            der, _ = hsclient.handshake(self.https_port, name, timeout=timeout)
        except OSError:
            return None
        return der != self.fallback_der

    def wait_served(self, name, t0, timeout=60, pause=0.2):
        """Handshakes every ``pause`` s until the issued certificate is served; seconds since
        ``t0``, or None."""
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.issued(name):
                return time.monotonic() - t0
            time.sleep(pause)
        return None

    def warm_up(self, names):
        """The account key and each worker's account login happen before any timing."""
        for name in names:
            if self.wait_served(name, time.monotonic(), timeout=90) is None:
                raise RuntimeError("warm-up name %s was not issued\n%s"
                                   % (name, self.nginx.log_tail(30)))


def p3(e, count):
    times = []
    for i in range(count):
        name = "p3-%02d.%s" % (i, ZONE)
        t0 = time.monotonic()
        ok = e.issued(name, timeout=60)  # blocking: this first handshake waits for the order
        dt = time.monotonic() - t0
        if not ok:
            raise RuntimeError("P3: first handshake for %s did not get the issued certificate\n%s"
                               % (name, e.nginx.log_tail(30)))
        times.append(dt)
    return lib.median(times), {"seconds": [round(t, 3) for t in times]}


def p9(e, count):
    times = []
    for i in range(count):
        name = "p9-%02d.%s" % (i, ZONE)
        dt = e.wait_served(name, time.monotonic())
        if dt is None:
            raise RuntimeError("P9: %s not served within 60 s\n%s" % (name, e.nginx.log_tail(30)))
        times.append(dt)
    return lib.median(times), {"seconds": [round(t, 3) for t in times]}


def p4(e, count):
    names = ["p4-%03d.%s" % (i, ZONE) for i in range(count)]
    done = {}
    t0 = time.monotonic()

    def one(name):
        done[name] = e.wait_served(name, t0, timeout=120)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    missing = [n for n in names if done.get(n) is None]
    if missing:
        raise RuntimeError("P4: %d names not served: %s\n%s"
                           % (len(missing), missing[:5], e.nginx.log_tail(30)))
    wall = max(done.values())
    return wall, {"names": count, "median_s": round(lib.median(list(done.values())), 3)}


def p8(e, pebble, quick):
    """Three issuance cycles under one running probe: idle, 20 new names, idle, ... Each cycle's
    ratio is its p99 while issuing over the p99 of the idle phases on both sides of it; P8 is
    the median cycle (one burst of other load on this shared machine moves a single p99)."""
    cycles = 1 if quick else 3
    cached = ["p8-cached-%d.%s" % (i, ZONE) for i in range(4)]
    since = os.path.getsize(e.nginx.error_log_path)
    for n in cached:
        e.issued(n)
    _wait_stored(e, cached, since, 120)
    phase = 3.0 if quick else 6.0
    probe = hsclient.LatencyProbe(e.https_port, cached, procs=2, pause=0.005)
    # the probes' first second (processes starting, first connections) is not idle-phase data
    warm = time.monotonic() + 1.0
    time.sleep(phase + 1.0)
    busy_windows = []
    for c in range(cycles):
        fresh = ["p8-new-%d-%02d.%s" % (c, i, ZONE) for i in range(20)]
        b0 = time.monotonic()
        since = os.path.getsize(e.nginx.error_log_path)
        # first handshakes, one every 50 ms from one thread (a burst of 20 client handshakes at
        # once on these 2 cores would be the client's load, not the server's): each schedules
        # the name's orders, rsa then ecc
        for n in fresh:
            e.issued(n)
            time.sleep(0.05)
        _wait_stored(e, fresh, since, 180)
        busy_windows.append((b0, time.monotonic()))
        time.sleep(phase)
    samples = probe.stop()
    failed = sum(1 for _, dt in samples if dt is None)
    # idle windows: before the first cycle, between cycles, after the last
    edges = [warm] + [t for w in busy_windows for t in w] + [float("inf")]
    idle = [[dt for t, dt in samples if dt is not None and edges[2 * i] <= t < edges[2 * i + 1]]
            for i in range(cycles + 1)]
    per_cycle = []
    for c, (b0, b1) in enumerate(busy_windows):
        base = idle[c] + idle[c + 1]
        busy = [dt for t, dt in samples if dt is not None and b0 <= t <= b1]
        if len(base) < 100 or len(busy) < 100:
            raise RuntimeError("P8: too few samples in cycle %d (%d idle, %d during issuance)"
                               % (c, len(base), len(busy)))
        p99_base = lib.percentile(base, 99)
        p99_busy = lib.percentile(busy, 99)
        per_cycle.append((p99_busy / p99_base, {
            "p99_ms_idle": round(p99_base * 1000, 2),
            "p99_ms_issuing": round(p99_busy * 1000, 2),
            "p50_ms_idle": round(lib.percentile(base, 50) * 1000, 2),
            "p50_ms_issuing": round(lib.percentile(busy, 50) * 1000, 2),
            "max_ms_issuing": round(max(busy) * 1000, 2),
            "samples_idle": len(base), "samples_issuing": len(busy),
            "issuing_seconds": round(b1 - b0, 2), "new_names": 20,
        }))
    ratio, detail = sorted(per_cycle, key=lambda x: x[0])[len(per_cycle) // 2]
    detail = dict(detail, failed=failed, cycles=cycles,
                  cycle_ratios=[round(r, 3) for r, _ in per_cycle],
                  cycle_p99_ms=[(d["p99_ms_idle"], d["p99_ms_issuing"]) for _, d in per_cycle],
                  cycle_seconds=[d["issuing_seconds"] for _, d in per_cycle])
    return ratio, detail


def _wait_stored(e, names, since, timeout):
    """Until the error.log says both key types of every name were stored. Reads only what was
    appended since the last look: during P8 this polling shares the cores with the probes, and
    re-reading the whole log (about 1 MB by then) ten times a second was load of the bench's
    own that only the issuing phase had."""
    want = {(t, n) for n in names for t in ("rsa", "ecc")}
    deadline = time.monotonic() + timeout
    pat = re.compile(r"stored (rsa|ecc) certificate for (\S+)")
    got = set()
    pos, tail = since, b""
    while time.monotonic() < deadline:
        with open(e.nginx.error_log_path, "rb") as f:
            f.seek(pos)
            chunk = f.read()
        pos += len(chunk)
        text = (tail + chunk).decode("utf-8", "replace")
        # keep an unfinished last line for the next look
        cut = text.rfind("\n") + 1
        got |= {(m.group(1), m.group(2)) for m in pat.finditer(text[:cut])}
        tail = text[cut:].encode("utf-8")
        if want <= got:
            return
        time.sleep(0.1)
    raise RuntimeError("certificates not stored within %ss\n%s" % (timeout, e.nginx.log_tail(30)))


def run(want, workdir, quick, results, details):
    os.makedirs(workdir, exist_ok=True)
    cts = ChallTestSrv(workdir).start()
    pebble = None
    try:
        pebble = Pebble(workdir, challtestsrv=cts).start()
        count = 3 if quick else 10
        if "P3" in want:
            lib.log("P3: blocking first handshakes, %d names" % count)
            e = ExampleNginx(os.path.join(workdir, "p3"), pebble, cts, key_types=["ecc"],
                             extra="blocking = true,").start()
            try:
                e.warm_up(["warm-%d.%s" % (i, ZONE) for i in range(4)])
                v, d = p3(e, count)
            finally:
                e.stop()
            results["P3"] = round(v, 3)
            details["P3"] = d
            lib.log("P3 %s" % d)
        if "P9" in want or "P4" in want:
            e = ExampleNginx(os.path.join(workdir, "p9"), pebble, cts, key_types=["ecc"]).start()
            try:
                e.warm_up(["warm9-%d.%s" % (i, ZONE) for i in range(4)])
                if "P9" in want:
                    lib.log("P9: first handshake, then one every 0.2 s, %d names" % count)
                    v, d = p9(e, count)
                    results["P9"] = round(v, 3)
                    details["P9"] = d
                    lib.log("P9 %s" % d)
                if "P4" in want:
                    n = 20 if quick else 100
                    lib.log("P4: %d names at once" % n)
                    v, d = p4(e, n)
                    results["P4"] = round(v, 2)
                    details["P4"] = d
                    lib.log("P4 %s" % d)
            finally:
                e.stop()
        if "P8" in want:
            lib.log("P8: handshake latency while 20 names get RSA-4096 and P-256 keys")
            e = ExampleNginx(os.path.join(workdir, "p8"), pebble, cts,
                             key_types=["rsa", "ecc"]).start()
            try:
                v, d = p8(e, pebble, quick)
            finally:
                e.stop()
            results["P8"] = round(v, 3)
            details["P8"] = d
            lib.log("P8 %s" % d)
    finally:
        if pebble is not None:
            pebble.stop()
        cts.stop()
