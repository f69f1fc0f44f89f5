"""redis-server (Debian package) on a free loopback port, with a tiny RESP client."""

import os
import socket
import time

from . import proc, secrets

REDIS_BIN = "/usr/bin/redis-server"


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RedisError(Exception):
    """An error reply (``-ERR ...``) from the server."""


class _Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)


class Redis(proc.Server):
    """One redis-server in ``<workdir>/redis[-<name>]`` listening on 127.0.0.1.

    ``Redis(workdir, *, name="", password=None, users=None, unix_socket=False, tls_ca=None,
    tls_cert=None, appendonly=False)``, then ``start()``.

    - ``password``: ``requirepass`` (the default user's password).
    - ``users``: {name: password}: ACL users with every permission (``user <n> on ><pw> ~* &*
      +@all``).
    - ``unix_socket``: also listen on ``<workdir>/redis.sock`` (attribute ``unix_path``).
    - ``tls_ca``: a harness ``TestCA``; adds a TLS listener on ``tls_port`` with its server cert
      (clients are not asked for certificates); ``tls_cert=(cert_path, key_path)`` serves
      another leaf instead (e.g. from ``tls_ca.issue``).
    - ``appendonly``: AOF with ``appendfsync always`` so a SIGKILL loses nothing.
    Attributes: ``host`` ("127.0.0.1"), ``port``, ``tls_port``, ``unix_path``, ``log_path``,
    ``conf_path``, ``workdir``.
    Methods: ``start()`` (waits until the port answers), ``stop()`` (SIGTERM by PID),
    ``kill()`` (SIGKILL), ``restart()`` (start again on the same ports and data),
    ``command(*args, user=None, password=None)`` -> reply (bulk strings as bytes, errors raise
    ``RedisError``; authenticates with the configured password unless told otherwise),
    ``keys(pattern="*") -> [bytes]``, ``flushall()``, ``log()``, ``log_tail(n)``.
    """

    def __init__(self, workdir, *, name="", password=None, users=None, unix_socket=False,
                 tls_ca=None, tls_cert=None, appendonly=False):
        self.workdir = os.path.join(str(workdir), "redis" + ("-" + name if name else ""))
        os.makedirs(self.workdir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = proc.free_port()
        self.password = password
        self.users = dict(users or {})
        secrets.register(password, *self.users.values())
        self.unix_path = os.path.join(self.workdir, "redis.sock") if unix_socket else None
        self.tls_port = proc.free_port() if tls_ca is not None else None
        self.log_path = os.path.join(self.workdir, "redis.log")
        self.conf_path = os.path.join(self.workdir, "redis.conf")
        lines = [
            "bind 127.0.0.1",
            "port %d" % self.port,
            "dir %s" % self.workdir,
            "daemonize no",
            "save \"\"",
            "logfile \"\"",
            "protected-mode no",
        ]
        if appendonly:
            lines += ["appendonly yes", "appendfsync always"]
        else:
            lines.append("appendonly no")
        if password is not None:
            lines.append("requirepass %s" % password)
        for user, pw in self.users.items():
            lines.append("user %s on >%s ~* &* +@all" % (user, pw))
        if self.unix_path:
            lines += ["unixsocket %s" % self.unix_path, "unixsocketperm 777"]
        if tls_ca is not None:
            lines += [
                "tls-port %d" % self.tls_port,
                "tls-cert-file %s" % (tls_cert[0] if tls_cert else tls_ca.cert_pem),
                "tls-key-file %s" % (tls_cert[1] if tls_cert else tls_ca.key_pem),
                "tls-ca-cert-file %s" % tls_ca.ca_pem,
                "tls-auth-clients no",
            ]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = proc.spawn([REDIS_BIN, self.conf_path], self.log_path, cwd=self.workdir)
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        proc.wait_ports(ports, self.proc, 15, "redis-server", self.log_tail)
        # the port may accept before the data set is loaded: wait for PING
        for _ in range(100):
            try:
                self.command("PING")
                break
            except RedisError as e:
                if "LOADING" not in str(e):
                    raise
                time.sleep(0.05)
        return self

    def command(self, *args, user=None, password=None):
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            c = _Conn(s)
            pw = password if password is not None else self.password
            if pw is not None:
                s.sendall(_encode(["AUTH", user, pw] if user else ["AUTH", pw]))
                c.reply()
            s.sendall(_encode(list(args)))
            return c.reply()

    def keys(self, pattern="*"):
        return sorted(self.command("KEYS", pattern))

    def flushall(self):
        return self.command("FLUSHALL")
