"""nginx running the example config nginx-conf/autossl.conf, with TLS handshake helpers."""

import json
import os
import signal
import ssl
import subprocess
import threading
import time

from cryptography import x509

from .ca import TestCA
from .client import tls_handshake
from .nginx import lua_package_cpath, lua_package_path
from .paths import REPO
from .proc import free_port

TEMPLATE = os.path.join(REPO, "nginx-conf", "autossl.conf")
ADMIN_TEMPLATE = os.path.join(REPO, "nginx-conf", "admin.conf")
RENDER = os.path.join(REPO, "scripts", "render-conf")


class AutoSSL:
    """nginx running nginx-conf/autossl.conf rendered by scripts/render-conf.

    ``AutoSSL(nginx_factory, pebble, challtestsrv, workdir, *, domains, extra="", workers=2,
    key_types=("rsa", "ecc"), start=True, http_port=None, https_port=None, tls_alpn=False,
    extra_http="")``
    - ``extra``: Lua table fields added to the autossl config (AUTOSSL_EXTRA), e.g.
      ``'storage_adapter = "redis", storage_config = { port = 6379 },'``.
    - ``http_port``: where the http-01 server listens (default ``pebble.http_port``, where
      Pebble validates; a cluster puts one node there and the others elsewhere).
    - ``https_port``: the TLS listener's port (default: a free one; Pebble's ``tls_port`` for
      tls-alpn-01).
    - ``tls_alpn``: enable the example's (commented) ssl_client_hello_by_lua line.
    - ``extra_http``: server blocks appended to the http block (test-only endpoints).
    - ``trace_lua_phase``: the ssl_certificate_by_lua block logs each run first (see
      ``lua_phase_runs``), to tell handshakes served natively from those that ran it.
    - ``admin_token``: also render nginx-conf/admin.conf (admin API + metrics) on a free port
      (``admin_port``) with this bearer token; ``admin(method, path, token=...)`` calls it.
    Attributes: ``nginx`` (harness ``Nginx``), ``https_port``, ``http_port``, ``fallback_ca``,
    ``admin_port``.
    Methods: ``lua_phase_runs(name)``, ``handshake(name, kind=None, timeout=10) ->
    x509.Certificate`` (kind "rsa"/"ecc"
    limits the client to that certificate type), ``is_fallback(cert)``,
    ``wait_issued(name, kind=None, timeout=60)``, ``kill()`` (SIGKILL master and workers by
    PID, as a crashed machine).
    """

    def __init__(self, nginx_factory, pebble, challtestsrv, workdir, *, domains,
                 extra="", workers=2, key_types=("rsa", "ecc"), start=True, http_port=None,
                 https_port=None, tls_alpn=False, extra_http="", trace_lua_phase=False,
                 admin_token=None):
        self.pebble = pebble
        self.https_port = https_port or free_port()
        self.http_port = http_port if http_port is not None else pebble.http_port
        n = nginx_factory("", start=False, http_ports=[self.http_port, self.https_port])
        fb = TestCA(os.path.join(n.workdir, "fallback"))
        self.fallback_ca = fb
        extra = extra + "\n      domain_key_types = { %s }," % ", ".join(
            json.dumps(t) for t in key_types)
        values = {
            "PREFIX": n.workdir,
            "WORKERS": str(workers),
            "LUA_PATH": os.path.join(REPO, "t", "lua", "?.lua;") + lua_package_path(),
            "LUA_CPATH": lua_package_cpath(),
            "ACME_DIRECTORY": pebble.directory_url,
            "ACME_CA_CERT": pebble.ca_pem,
            "RESOLVER": challtestsrv.dns_server,
            "HTTP_PORT": "127.0.0.1:%d" % self.http_port,
            "HTTPS_PORT": "127.0.0.1:%d" % self.https_port,
            "FALLBACK_CERT": fb.cert_pem,
            "FALLBACK_KEY": fb.key_pem,
            "DOMAINS": "{ %s }" % ", ".join(json.dumps(d) for d in domains),
            "EMAIL": "ops@example.test",
            "AUTOSSL_EXTRA": extra,
        }
        args = [RENDER, TEMPLATE, n.conf_path] + ["%s=%s" % kv for kv in values.items()]
        subprocess.run(args, check=True)
        # the example lists both key types; tests choose
        with open(n.conf_path) as f:
            text = f.read()
        text = text.replace('domain_key_types = { "rsa", "ecc" },\n', "", 1)
        if tls_alpn:
            text = text.replace("#ssl_client_hello_by_lua_block", "ssl_client_hello_by_lua_block")
        if trace_lua_phase:
            call = 'require("resty.acme.autossl").ssl_certificate()'
            assert text.count(call) == 1
            text = text.replace(call, 'ngx.log(ngx.NOTICE, "t: lua phase for ", '
                                      '(require("ngx.ssl").server_name())) ' + call)
        self.admin_port = None
        self.admin_token = admin_token
        if admin_token is not None:
            self.admin_port = free_port()
            admin_conf = os.path.join(n.workdir, "admin.conf")
            subprocess.run([RENDER, ADMIN_TEMPLATE, admin_conf,
                            "ADMIN_LISTEN=127.0.0.1:%d" % self.admin_port,
                            "ADMIN_TOKEN=%s" % admin_token], check=True)
            with open(admin_conf) as f:
                # the rendered file starts with the platform's MODULES lines: not in http { }
                body = f.read().split("\nserver {", 1)[1]
            extra_http = "\n  server {" + body + extra_http
        if extra_http:
            # test-only servers go at the end of the http block
            text = text.rstrip()
            assert text.endswith("}")
            text = text[:-1] + extra_http + "\n}\n"
        with open(n.conf_path, "w") as f:
            f.write(text)
        self.nginx = n
        if start:
            n.start()

    def admin(self, method, path, *, token=None, timeout=120):
        """Calls the admin API: returns (status, decoded JSON body)."""
        import urllib.error
        import urllib.request
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                     method=method)
        tok = self.admin_token if token is None else token
        if tok:
            req.add_header("Authorization", "Bearer " + tok)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, json.loads(body) if body.startswith(b"{") else body.decode()

    def metrics_text(self):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                    timeout=30) as r:
            return r.read().decode()

    def lua_phase_runs(self, name):
        """How often the ssl_certificate_by_lua block ran for SNI `name` (trace_lua_phase)."""
        return self.nginx.error_log().count("t: lua phase for %s," % name)

    def handshake(self, name, *, kind=None, timeout=10):
        """Returns the leaf certificate served for SNI `name` (None = no SNI). kind restricts
        the client to "rsa" or "ecc" certificates (TLS 1.2 cipher suites)."""
        return tls_handshake(self.https_port, name, kind=kind, timeout=timeout)[0]

    def served_chain(self, name, *, kind=None, timeout=10):
        """Every certificate the server sends for SNI `name` (leaf first), read with
        `openssl s_client -showcerts` (Python's ssl module shows only the leaf)."""
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.https_port,
                "-servername", name, "-showcerts"]
        if kind:
            argv += ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256" if kind == "ecc"
                     else "ECDHE-RSA-AES128-GCM-SHA256"]
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=timeout, check=False).stdout
        from pemutil import load_certs
        return load_certs(out.decode("latin-1"))

    def is_fallback(self, cert):
        return cert.issuer == self.fallback_issuer()

    def fallback_issuer(self):
        with open(self.fallback_ca.ca_pem, "rb") as f:
            return x509.load_pem_x509_certificate(f.read()).subject

    def wait_issued(self, name, kind=None, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                cert = self.handshake(name, kind=kind)
            except ssl.SSLError:
                # the (ECDSA) fallback cannot serve an RSA-only client until its cert exists
                cert = None
            if cert is not None and not self.is_fallback(cert):
                return cert
            time.sleep(0.2)
        raise AssertionError("no certificate issued for %s in %ss\n%s" % (
            name, timeout, self.nginx.log_tail(40)))

    def kill(self):
        n = self.nginx
        # the master first: a master that outlives a killed worker starts a new one, which
        # would then be left running without a master (and holding the node's leases)
        pids = [n.pid] + n.workers()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if n.proc is not None:
            n.proc.wait(10)


def crowd(nodes, name, n=200, timeout=60):
    """`n` concurrent handshakes for SNI `name`, spread over the AutoSSL `nodes` in turn (each
    with `timeout`); asserts that none failed."""
    errors = []

    def hit(node):
        try:
            node.handshake(name, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hit, args=(nodes[i % len(nodes)],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
