"""Pebble 2.4 (Debian package `pebble`) and pebble-challtestsrv wrappers."""

import json
import os
import re
import ssl
import urllib.error
import urllib.request

from cryptography import x509

from . import proc, secrets
from .ca import TestCA

PEBBLE_BIN = "/usr/bin/pebble"

# the EAB credentials of conftest's ``eab_pebble`` (a test value, never a secret)
EAB_KID = "kid-1"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
CHALLTESTSRV_BIN = "/usr/bin/pebble-challtestsrv"


class ChallTestSrv(proc.Server):
    """pebble-challtestsrv serving only its mock DNS (UDP+TCP) and management API.

    ``ChallTestSrv(workdir, default_ipv4="127.0.0.1", default_ipv6="")``; then ``start()``.
    Every A query is answered with ``default_ipv4`` unless ``add_a`` set another address;
    AAAA queries get no answer by default (``default_ipv6=""``) so validators only dial IPv4.
    Attributes: ``dns_port`` (127.0.0.1, UDP and TCP), ``dns_server`` ("127.0.0.1:<port>"),
    ``mgmt_port``, ``mgmt_url`` (plain http), ``log_path``.
    Its http-01/https-01/tls-alpn-01 responders are disabled: nginx answers challenges.
    """

    def __init__(self, workdir, default_ipv4="127.0.0.1", default_ipv6=""):
        self.workdir = os.path.join(str(workdir), "challtestsrv")
        os.makedirs(self.workdir, exist_ok=True)
        self.dns_port = proc.free_port()
        self.mgmt_port = proc.free_port()
        self.dns_server = "127.0.0.1:%d" % self.dns_port
        self.mgmt_url = "http://127.0.0.1:%d" % self.mgmt_port
        self.log_path = os.path.join(self.workdir, "challtestsrv.log")
        self.default_ipv4 = default_ipv4
        self.default_ipv6 = default_ipv6
        self.proc = None

    WHAT = "pebble-challtestsrv"  # in the error when it does not start

    def _dns_argv(self):
        """The binary and its DNS server flags (Pebble 2.4's pebble-challtestsrv)."""
        return [CHALLTESTSRV_BIN, "-dns01", self.dns_server]

    def start(self):
        argv = self._dns_argv() + [
            "-management", "127.0.0.1:%d" % self.mgmt_port,
            "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-defaultIPv4", self.default_ipv4,
            "-defaultIPv6", self.default_ipv6,
        ]
        self.proc = proc.spawn(argv, self.log_path)
        proc.wait_ports([self.dns_port, self.mgmt_port], self.proc, 15,
                        self.WHAT, self.log_tail)
        return self

    def _post(self, path, body):
        req = urllib.request.Request(
            self.mgmt_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read()

    @staticmethod
    def _fqdn(host):
        return host if host.endswith(".") else host + "."

    def set_txt(self, host, value):
        """Add a TXT answer for ``host`` (a trailing dot is added when missing)."""
        self._post("/set-txt", {"host": self._fqdn(host), "value": value})

    def clear_txt(self, host):
        """Remove every TXT answer for ``host``."""
        self._post("/clear-txt", {"host": self._fqdn(host)})

    def add_a(self, host, ip):
        """Answer A queries for ``host`` with ``ip`` (a string or a list of strings)."""
        ips = [ip] if isinstance(ip, str) else list(ip)
        self._post("/add-a", {"host": self._fqdn(host), "addresses": ips})

    def clear_a(self, host):
        self._post("/clear-a", {"host": self._fqdn(host)})

    def add_aaaa(self, host, ip):
        ips = [ip] if isinstance(ip, str) else list(ip)
        self._post("/add-aaaa", {"host": self._fqdn(host), "addresses": ips})

    def set_servfail(self, host):
        self._post("/set-servfail", {"host": self._fqdn(host)})

    def clear_servfail(self, host):
        self._post("/clear-servfail", {"host": self._fqdn(host)})


class Pebble(proc.Server):
    """Pebble 2.4 on free loopback ports with a TestCA certificate on its listeners.

    ``Pebble(workdir, *, challtestsrv=None, dns_server=None, http_port=None, tls_port=None,
    eab_keys=None, alternate_roots=0, nonce_reject=0, env=None, strict=False,
    chain_length=None, authz_reuse=0, blocklist=None, validity_period=None)``, then ``start()``.

    - DNS for validation: ``challtestsrv.dns_server`` if given, else ``dns_server``
      ("host:port"), else the system resolver (``-dnsserver`` omitted).
    - ``http_port``/``tls_port``: where Pebble's VA connects for http-01 / tls-alpn-01
      (free ports when None; nginx must listen there on 127.0.0.1).
    - ``eab_keys``: {kid: base64url HMAC key}; when given, EAB is required.
    - ``alternate_roots``: number of extra root chains (PEBBLE_ALTERNATE_ROOTS).
    - ``nonce_reject``: percent of good nonces rejected with badNonce (PEBBLE_WFE_NONCEREJECT;
      Pebble's own default is 5, the harness makes it 0 unless asked).
    - ``authz_reuse``: percent (PEBBLE_AUTHZREUSE; Pebble's default 50, harness default 0 so
      every order gets fresh pending authorizations).
    - ``chain_length``: PEBBLE_CHAIN_LENGTH (number of certs from leaf to root inclusive, >= 2).
    - ``env``: extra environment (e.g. {"PEBBLE_VA_ALWAYS_VALID": "1"}); PEBBLE_VA_NOSLEEP=1
      is always set unless overridden here.
    - ``strict``: pass ``-strict``.
    Attributes: ``directory_url`` ("https://127.0.0.1:<port>/dir"), ``port``, ``mgmt_port``,
    ``mgmt_url`` ("https://127.0.0.1:<mgmt_port>"), ``ca_pem`` (trust this for both listeners),
    ``http_port``, ``tls_port``, ``log_path``, ``config_path``, ``ca`` (the TestCA).
    """

    def __init__(self, workdir, *, challtestsrv=None, dns_server=None, http_port=None,
                 tls_port=None, eab_keys=None, alternate_roots=0, nonce_reject=0, env=None,
                 strict=False, chain_length=None, authz_reuse=0, blocklist=None,
                 validity_period=None):
        self.workdir = os.path.join(str(workdir), "pebble")
        os.makedirs(self.workdir, exist_ok=True)
        self.bin = PEBBLE_BIN
        secrets.register(*(eab_keys or {}).values())
        self.ca = TestCA(os.path.join(self.workdir, "tls"), name="pebble listener test CA")
        self.ca_pem = self.ca.ca_pem
        self.port = proc.free_port()
        self.mgmt_port = proc.free_port()
        self.http_port = http_port if http_port is not None else proc.free_port()
        self.tls_port = tls_port if tls_port is not None else proc.free_port()
        self.directory_url = "https://127.0.0.1:%d/dir" % self.port
        self.mgmt_url = "https://127.0.0.1:%d" % self.mgmt_port
        if challtestsrv is not None:
            dns_server = challtestsrv.dns_server
        self.dns_server = dns_server
        self.strict = strict
        self.alternate_roots = alternate_roots
        self.log_path = os.path.join(self.workdir, "pebble.log")
        self.config_path = os.path.join(self.workdir, "pebble-config.json")
        cfg = {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
            "certificate": self.ca.cert_pem,
            "privateKey": self.ca.key_pem,
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
        }
        if eab_keys:
            cfg["externalAccountMACKeys"] = dict(eab_keys)
        if blocklist:
            cfg["domainBlocklist"] = list(blocklist)
        if validity_period is not None:
            cfg["certificateValidityPeriod"] = int(validity_period)
        with open(self.config_path, "w") as f:
            json.dump({"pebble": cfg}, f, indent=2)
        self.env = {
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
            "PEBBLE_AUTHZREUSE": str(authz_reuse),
        }
        if alternate_roots:
            self.env["PEBBLE_ALTERNATE_ROOTS"] = str(alternate_roots)
        if chain_length is not None:
            self.env["PEBBLE_CHAIN_LENGTH"] = str(chain_length)
        if env:
            self.env.update({k: str(v) for k, v in env.items()})
        self.proc = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self):
        argv = [self.bin, "-config", self.config_path]
        if self.dns_server:
            argv += ["-dnsserver", self.dns_server]
        if self.strict:
            argv.append("-strict")
        self.proc = proc.spawn(argv, self.log_path, env=self.env, cwd=self.workdir)
        proc.wait_ports([self.port, self.mgmt_port], self.proc, 20, "pebble", self.log_tail)
        self.get_json(self.directory_url)  # TLS up and serving the directory
        return self

    # -- logs --------------------------------------------------------------------------

    def wait_log(self, regex, timeout=10, since=0):
        return proc.wait_regex(self.log_path, regex, timeout, since, "pebble log")

    def orders_count(self):
        """Orders created so far (Pebble logs "There are now N orders in the db" per newOrder)."""
        counts = [int(n) for n in re.findall(r"There are now (\d+) orders in the db", self.log())]
        return max(counts) if counts else 0

    def accounts_count(self):
        counts = [int(n) for n in re.findall(r"There are now (\d+) accounts in memory", self.log())]
        return max(counts) if counts else 0

    def issued_serials(self):
        """Serials (hex, as Pebble logs them) of issued certificates, in order."""
        return re.findall(r"Issued certificate serial ([0-9a-fA-F]+) for order", self.log())

    # -- HTTP helpers ------------------------------------------------------------------

    def ssl_context(self):
        """An ``ssl.SSLContext`` trusting ``ca_pem`` (for Pebble's ACME and management ports)."""
        return ssl.create_default_context(cafile=self.ca_pem)

    def get(self, url, timeout=10):
        """GET ``url`` (absolute, or a path on the management port); returns (status, body)."""
        if url.startswith("/"):
            url = self.mgmt_url + url
        try:
            with urllib.request.urlopen(url, context=self.ssl_context(), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, url, timeout=10):
        status, body = self.get(url, timeout)
        if status != 200:
            raise RuntimeError("GET %s -> %d %r" % (url, status, body[:200]))
        return json.loads(body)

    def _pem(self, path):
        status, body = self.get(path)
        if status != 200:
            raise RuntimeError("GET %s -> %d" % (path, status))
        return body.decode()

    def roots(self):
        """PEM of every root: index 0 is the default chain's root, then alternate roots."""
        return [self._pem("/roots/%d" % i) for i in range(self.alternate_roots + 1)]

    def intermediates(self):
        """PEM of the intermediate of each chain, indexed like ``roots()``."""
        return [self._pem("/intermediates/%d" % i) for i in range(self.alternate_roots + 1)]

    def issued_by(self, cert):
        """Whether ``cert`` (an x509.Certificate) was signed by one of Pebble's intermediates."""
        subjects = [x509.load_pem_x509_certificate(p.encode()).subject
                    for p in self.intermediates()]
        return cert.issuer in subjects

    def cert_status(self, serial_hex):
        """Management ``/cert-status-by-serial/<serial>`` as a dict ({"Status": "Valid"|"Revoked",
        "Serial", "Reason", "RevokedAt", "Certificate"}); None when Pebble does not know it."""
        status, body = self.get("/cert-status-by-serial/%s" % serial_hex.lower().lstrip("0"))
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError("cert-status-by-serial %s -> %d" % (serial_hex, status))
        return json.loads(body)


# -- Pebble 2.10.1 (ARI, profiles), built from ../shared/pebble by scripts/build-pebble.sh ----

_PEBBLE2_DIR = None


def pebble2_bin_dir():
    """The bin directory of Pebble 2.10 (``pebble``, ``pebble-challtestsrv``), or None.

    ``$PEBBLE2_BIN`` when set (the Makefile's e2e target sets it), else the output of
    ``scripts/build-pebble.sh`` (builds once into a cache keyed by the tarball's sha256; run at
    most once per test session). None when the shared Pebble source is absent; a build that
    fails raises."""
    global _PEBBLE2_DIR
    if _PEBBLE2_DIR is None:
        env = os.environ.get("PEBBLE2_BIN")
        if env:
            _PEBBLE2_DIR = env if os.path.isfile(os.path.join(env, "pebble")) else ""
        else:
            import subprocess
            from .paths import REPO
            r = subprocess.run([os.path.join(REPO, "scripts", "build-pebble.sh")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if r.returncode not in (0, 3):  # 3: no source, the tests skip; else a failed build
                raise RuntimeError("scripts/build-pebble.sh failed (%d): %s"
                                   % (r.returncode, r.stderr[-2000:]))
            _PEBBLE2_DIR = r.stdout.strip() if r.returncode == 0 else ""
    return _PEBBLE2_DIR or None


class ChallTestSrv2(ChallTestSrv):
    """``ChallTestSrv`` run from Pebble 2.10's pebble-challtestsrv (``-dnsserver``, no DoH)."""

    WHAT = "pebble-challtestsrv 2.10"

    def _dns_argv(self):
        return [os.path.join(pebble2_bin_dir(), "pebble-challtestsrv"),
                "-dnsserver", self.dns_server, "-doh", ""]


class Pebble2(Pebble):
    """Pebble 2.10.1: ``Pebble``'s options plus ``profiles`` ({name: validity seconds}; the
    first is also the default an order without a profile may get, and Pebble picks a random
    one for those) and ``retry_after`` ({"authz": s, "order": s}). Its directory has
    ``renewalInfo`` (RFC 9773) and ``meta.profiles``.

    ``set_renewal_info(cert_pem, answer)``: what renewalInfo answers for that certificate
    (a dict is sent as JSON; a string verbatim, even malformed). ``orders()``: newOrder
    count (as ``orders_count``)."""

    def __init__(self, workdir, *, profiles=None, retry_after=None, **kw):
        super().__init__(workdir, **kw)
        with open(self.config_path) as f:
            cfg = json.load(f)
        if profiles:
            cfg["pebble"]["profiles"] = {
                name: {"description": "%s (%d s)" % (name, secs), "validityPeriod": int(secs)}
                for name, secs in profiles.items()}
        if retry_after:
            cfg["pebble"]["retryAfter"] = dict(retry_after)
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)

    def start(self):
        self.bin = os.path.join(pebble2_bin_dir(), "pebble")
        return super().start()

    def set_renewal_info(self, cert_pem, answer):
        body = answer if isinstance(answer, str) else json.dumps(answer)
        data = json.dumps({"Certificate": cert_pem, "ARIResponse": body}).encode()
        req = urllib.request.Request(self.mgmt_url + "/set-renewal-info/", data=data,
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as r:
            return r.status
