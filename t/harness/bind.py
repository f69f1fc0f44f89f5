"""Debian's BIND 9 (``named``) as an authoritative server for one test zone that accepts
TSIG-signed dynamic updates (RFC 2136 / RFC 8945)."""

import base64
import os

from . import proc, secrets
from .dnsq import dns_query

NAMED_BIN = "/usr/sbin/named"


class Bind(proc.Server):
    """``named`` in the foreground (``-g``) with its own config directory, on a free port of
    127.0.0.1 (UDP and TCP), stopped by PID.

    ``Bind(workdir, zone="example.test", key_name="acme-key.", algorithm="hmac-sha256",
    secret=None, a="127.0.0.1")``; then ``start()``.

    The zone has an SOA, NS ``ns1.<zone>``, and A records ``<zone>``, ``ns1.<zone>`` and
    ``*.<zone>`` pointing to ``a`` (so any name below the zone resolves, and http-01 would
    work too). ``allow-update { key <key_name>; }``: only updates signed with the key are
    applied. ``secret`` (base64) defaults to 32 random bytes. A second key, ``ro_key_name``
    ("readonly-key.", hmac-sha256, secret ``ro_secret``), is known but not allowed to update
    (named answers REFUSED, signed).

    Attributes: ``port``, ``server`` / ``dns_server`` ("127.0.0.1:<port>", usable as Pebble's
    ``dns_server``), ``zone``, ``key_name``, ``algorithm``, ``secret``, ``log_path``,
    ``conf_path``. Methods: ``txt(name)`` -> TXT values at ``name`` (asks this server),
    ``rfc2136_secret(**overrides)`` -> the ``rfc2136`` provider's secret table as a dict,
    ``log()``, ``log_tail(n)``, ``wait_log(regex, timeout=10, since=0)``.

    Running as root it passes ``-u root`` (no privilege drop; Debian's AppArmor profile for
    named does not apply to a binary started with its own ``-c``).
    """

    def __init__(self, workdir, zone="example.test", key_name="acme-key.",
                 algorithm="hmac-sha256", secret=None, a="127.0.0.1"):
        self.workdir = os.path.join(str(workdir), "bind")
        os.makedirs(self.workdir, exist_ok=True)
        self.port = proc.free_port()
        self.server = "127.0.0.1:%d" % self.port
        self.dns_server = self.server
        self.zone = zone.rstrip(".")
        self.key_name = key_name
        self.algorithm = algorithm
        self.secret = secret or base64.b64encode(os.urandom(32)).decode()
        # a second key the server knows but does not allow to update (answers REFUSED)
        self.ro_key_name = "readonly-key."
        self.ro_secret = base64.b64encode(os.urandom(32)).decode()
        secrets.register(self.secret, self.ro_secret)
        self.a = a
        self.conf_path = os.path.join(self.workdir, "named.conf")
        self.zone_path = os.path.join(self.workdir, "%s.db" % self.zone)
        self.log_path = os.path.join(self.workdir, "named.log")
        self.proc = None

    def _write_config(self):
        d = self.workdir
        conf = """
options {
  directory "%(d)s";
  pid-file "%(d)s/named.pid";
  session-keyfile "%(d)s/session.key";
  managed-keys-directory "%(d)s";
  listen-on port %(port)d { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
  allow-query { any; };
};
controls { };
key "%(key)s" {
  algorithm %(alg)s;
  secret "%(secret)s";
};
key "%(ro_key)s" {
  algorithm hmac-sha256;
  secret "%(ro_secret)s";
};
zone "%(zone)s" {
  type primary;
  file "%(zonefile)s";
  allow-update { key "%(key)s"; };
};
""" % {"d": d, "port": self.port, "key": self.key_name, "alg": self.algorithm,
       "secret": self.secret, "ro_key": self.ro_key_name, "ro_secret": self.ro_secret,
       "zone": self.zone, "zonefile": self.zone_path}
        with open(self.conf_path, "w") as f:
            f.write(conf)
        zone = """$TTL 60
@     IN SOA ns1.%(zone)s. hostmaster.%(zone)s. 1 3600 600 86400 60
@     IN NS  ns1.%(zone)s.
@     IN A   %(a)s
ns1   IN A   %(a)s
*     IN A   %(a)s
""" % {"zone": self.zone, "a": self.a}
        with open(self.zone_path, "w") as f:
            f.write(zone)
        jnl = self.zone_path + ".jnl"
        if os.path.exists(jnl):
            os.unlink(jnl)

    def start(self):
        self._write_config()
        argv = [NAMED_BIN, "-g", "-4", "-n", "1", "-c", self.conf_path]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self.proc = proc.spawn(argv, self.log_path, cwd=self.workdir)
        proc.wait_ports([self.port], self.proc, 15, "named", self.log_tail)
        proc.wait_regex(self.log_path, r"all zones loaded|running", 15, what="named log")
        return self

    def txt(self, name):
        return dns_query(self.port, name, "TXT")

    def rfc2136_secret(self, **overrides):
        secret = {
            "server": self.server,
            "zone": self.zone,
            "tsig_key_name": self.key_name,
            "tsig_algorithm": self.algorithm,
            "tsig_secret": self.secret,
        }
        secret.update(overrides)
        return {k: v for k, v in secret.items() if v is not None}

    def wait_log(self, regex, timeout=10, since=0):
        return proc.wait_regex(self.log_path, regex, timeout, since, what="named log")
