"""etcd 3.4 (Debian package etcd-server) as a one-member cluster on free loopback ports."""

import base64
import json
import os
import time
import urllib.error
import urllib.request

from . import proc

ETCD_BIN = "/usr/bin/etcd"


def _b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


class Etcd(proc.Server):
    """One etcd member in ``<workdir>/etcd[-<name>]``.

    ``Etcd(workdir, *, name="")``, then ``start()``. Started with heartbeat 50 ms and election
    timeout 500 ms: etcd's smallest lease TTL is 1.5 election timeouts, so 1 s leases stay 1 s
    (with the defaults every lease would last at least 2 s).
    Attributes: ``client_url`` ("http://127.0.0.1:<port>", the ``http_host`` of the etcd
    adapter), ``port``, ``peer_port``, ``data_dir``, ``log_path``.
    Methods: ``start()`` (returns once the v3 JSON gateway answers), ``stop()`` (SIGTERM by
    PID), ``kill()`` (SIGKILL), ``restart()`` (same ports and data), ``api(path, body) -> dict``
    (POST ``/v3/<path>`` with a JSON body), ``put(key, value)``, ``get(key) -> bytes|None``,
    ``keys(prefix="") -> [bytes]``, ``leases() -> [id]``, ``log()``, ``log_tail(n)``.
    """

    def __init__(self, workdir, *, name=""):
        self.workdir = os.path.join(str(workdir), "etcd" + ("-" + name if name else ""))
        os.makedirs(self.workdir, exist_ok=True)
        self.port = proc.free_port()
        self.peer_port = proc.free_port()
        self.client_url = "http://127.0.0.1:%d" % self.port
        self.peer_url = "http://127.0.0.1:%d" % self.peer_port
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "etcd.log")
        self.proc = None

    def start(self, timeout=30):
        argv = [
            ETCD_BIN, "--name", "acme-test", "--data-dir", self.data_dir,
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", "acme-test=%s" % self.peer_url,
            "--heartbeat-interval", "50", "--election-timeout", "500",
        ]
        self.proc = proc.spawn(argv, self.log_path, cwd=self.workdir)
        proc.wait_ports([self.port], self.proc, timeout, "etcd", self.log_tail)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("kv/range", {"key": _b64("/")})
                return self
            except (OSError, RuntimeError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("etcd is not serving\n" + self.log_tail(40))
                time.sleep(0.1)

    def api(self, path, body):
        req = urllib.request.Request(
            "%s/v3/%s" % (self.client_url, path), data=json.dumps(body).encode(),
            method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError("etcd %s -> %d %s" % (path, e.code, e.read()[:300]))

    def put(self, key, value):
        self.api("kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key):
        kvs = self.api("kv/range", {"key": _b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def keys(self, prefix=""):
        start = prefix.encode() if prefix else b"\0"
        end = (prefix.encode()[:-1] + bytes([prefix.encode()[-1] + 1])) if prefix else b"\0"
        res = self.api("kv/range", {"key": _b64(start), "range_end": _b64(end),
                                    "keys_only": True})
        return sorted(base64.b64decode(kv["key"]) for kv in res.get("kvs") or [])

    def leases(self):
        return [lease["ID"] for lease in self.api("lease/leases", {}).get("leases") or []]
