"""The `acme-rs` CLI on the stores nginx writes with the redis and etcd adapters: list with
expiry, check for entries the library cannot read, revoke from a redis store, renew into an
etcd store, a Consul store and a Vault store (the fakes), a real OpenBao KV v1 mount, and a
redis reached over a unix socket and over TLS (peer name verified), that nginx then serves.
Vault's kubernetes auth is not tested: it needs a kube-apiserver to review the token."""

import os
import re
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import pytest
from fakes.consul import FakeConsul
from fakes.vault import FakeVault
from harness import AutoSSL, BaoUnavailable, Etcd, OpenBao, Redis, TestCA, bao_binary
from test_cli_pebble import ca_args, cli, http_args, run  # noqa: F401 (cli is a fixture)


def ec_account(workdir):
    """An EC account key file (inline signatures: no wait for the machine-wide RSA slot)."""
    path = os.path.join(str(workdir), "account-ec.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return path


def listed(out):
    """`acme-rs list` lines as {(name, type): (not_after, days_left, issuer)}."""
    rows = {}
    for line in out.strip().splitlines():
        name, typ, not_after, days, issuer = line.split("\t")
        rows[(name, typ)] = (not_after, days, issuer)
    return rows


def test_cli_lists_checks_and_revokes_a_redis_store_written_by_nginx(
        cli, pebble, challtestsrv, nginx_factory, workdir):  # noqa: F811
    r = Redis(workdir).start()
    try:
        a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir,
                    domains=["r1.example.test", "r2.example.test"], key_types=("ecc",),
                    extra='storage_adapter = "redis", storage_config = { port = %d, '
                          'namespace = "n1_" }, account_key_path = "%s",'
                          % (r.port, ec_account(workdir)))
        certs = {n: a.wait_issued(n) for n in ("r1.example.test", "r2.example.test")}
        store = "redis://127.0.0.1:%d?namespace=n1_" % r.port
        out = run(cli, "list", "--store", store, check=0).out
        rows = listed(out)
        assert set(rows) == {("r1.example.test", "ecc"), ("r2.example.test", "ecc")}, out
        not_after, days, issuer = rows[("r1.example.test", "ecc")]
        assert not_after == certs["r1.example.test"].not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert float(days) > 30 and "Pebble" in issuer
        # another namespace is another store
        assert run(cli, "list", "--store", "redis://127.0.0.1:%d?namespace=n2_" % r.port,
                   check=0).out == ""
        chk = run(cli, "check", "--store", store, check=0)
        assert "0 unreadable" in chk.out, chk

        # an entry the library cannot read is named, and fails the check
        r.command("SET", "n1_domain:ecc:bad.example.test", "{not json")
        r.command("SET", "n1_failed_attempts:r2.example.test", "many")
        chk = run(cli, "check", "--store", store, check=1)
        assert "domain:ecc:bad.example.test:" in chk.out, chk
        assert "failed_attempts:r2.example.test: not a number" in chk.out, chk
        assert "r1.example.test" not in chk.out
        lst = run(cli, "list", "--store", store, check=1)
        assert "bad.example.test\tecc\tunreadable" in lst.out

        # revoke with nginx's account
        rv = run(cli, "revoke", *ca_args(pebble), "--store", store, "--domain",
                 "r1.example.test", "--key-type", "ecc", "--account-key",
                 os.path.join(str(workdir), "account-ec.pem"), check=0)
        serial = "%x" % certs["r1.example.test"].serial_number
        assert serial in rv.out.lower(), rv
        assert pebble.cert_status(serial)["Status"] == "Revoked"
    finally:
        r.stop()


class EtcdBackend:
    def __init__(self, workdir, monkeypatch):
        self.server = Etcd(workdir)
        self.server.start()
        self.conf = ('storage_adapter = "etcd", storage_config = { http_host = "%s", '
                     'timeout = 2 },' % self.server.client_url)
        self.store = "etcd://%s" % re.sub(r"^http://", "", self.server.client_url)

    def stop(self):
        self.server.stop()


class ConsulBackend:
    TOKEN = "consul-cli-token"

    def __init__(self, workdir, monkeypatch):
        self.server = FakeConsul(token=self.TOKEN).start()
        self.conf = ('storage_adapter = "consul", storage_config = { port = %d, token = "%s", '
                     'kv_path = "/acme/prod" },' % (self.server.port, self.TOKEN))
        self.store = "consul://127.0.0.1:%d/acme/prod" % self.server.port
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", self.TOKEN)

    def stop(self):
        self.server.stop()
        assert self.server.violations == []


class VaultBackend:
    TOKEN = "vault-cli-token"

    def __init__(self, workdir, monkeypatch):
        self.server = FakeVault(token=self.TOKEN, mounts={"secret": 2}).start()
        self.conf = ('storage_adapter = "vault", storage_config = { port = %d, token = "%s", '
                     'kv_path = "/secret/acme" },' % (self.server.port, self.TOKEN))
        self.store = "vault://127.0.0.1:%d/secret/acme" % self.server.port
        monkeypatch.setenv("VAULT_TOKEN", self.TOKEN)

    def stop(self):
        self.server.stop()
        assert self.server.violations == []


class OpenBaoKv1Backend:
    """A real OpenBao with a KV version 1 mount: the CLI asks the mount its version, as the
    Lua adapter does, and writes the v1 layout (expiry in the secret)."""

    def __init__(self, workdir, monkeypatch):
        try:
            bao_binary()
        except BaoUnavailable as e:
            pytest.skip(str(e))
        self.server = OpenBao(workdir).start()
        self.server.mount_kv("kv1", 1)
        self.conf = ('storage_adapter = "vault", storage_config = { port = %d, token = "%s", '
                     'kv_path = "/kv1/acme" },' % (self.server.port, self.server.root_token))
        self.store = "vault://127.0.0.1:%d/kv1/acme" % self.server.port
        monkeypatch.setenv("VAULT_TOKEN", self.server.root_token)

    def after(self, cli):
        # the v1 layout: the secret itself holds the value, no metadata
        doc = self.server.read("kv1/acme/domain:ecc:e1.example.test")
        assert doc and "BEGIN CERTIFICATE" in doc["data"]["value"], doc

    def stop(self):
        self.server.stop()


class RedisUnixBackend:
    """nginx and the CLI both on the unix socket."""

    def __init__(self, workdir, monkeypatch):
        self.server = Redis(workdir, unix_socket=True).start()
        self.conf = ('storage_adapter = "redis", storage_config = { host = "unix:%s", '
                     'namespace = "u_" },' % self.server.unix_path)
        self.store = "redis+unix://%s?namespace=u_" % self.server.unix_path

    def stop(self):
        self.server.stop()


class RedisTlsBackend:
    """nginx on the plain port, the CLI on the TLS port of the same server: a certificate for
    redis.example.test from a test CA, which the CLI must verify (CA and peer name)."""

    def __init__(self, workdir, monkeypatch):
        self.ca = TestCA(os.path.join(str(workdir), "redis-ca"))
        cert, key = self.ca.issue(["redis.example.test"], "redis-named")
        self.server = Redis(workdir, tls_ca=self.ca, tls_cert=(cert, key)).start()
        self.conf = ('storage_adapter = "redis", storage_config = { port = %d, '
                     'namespace = "t_" },' % self.server.port)
        self.tls = "rediss://127.0.0.1:%d?namespace=t_&ca=%s" % (self.server.tls_port,
                                                                  self.ca.ca_pem)
        self.store = self.tls + "&server_name=redis.example.test"

    def after(self, cli):
        # another name, or a CA the CLI was not given: no connection
        bad = run(cli, "list", "--store", self.tls + "&server_name=other.example.test", check=1)
        assert "certificate verify failed" in bad.err + bad.out, bad
        other = TestCA(os.path.join(self.ca.workdir, "other"), name="unrelated CA")
        bad = run(cli, "list", "--store", self.store.replace(self.ca.ca_pem, other.ca_pem),
                  check=1)
        assert "certificate verify failed" in bad.err + bad.out, bad

    def stop(self):
        self.server.stop()


@pytest.mark.parametrize("backend", [EtcdBackend, ConsulBackend, VaultBackend, OpenBaoKv1Backend,
                                     RedisUnixBackend, RedisTlsBackend],
                         ids=["etcd", "consul", "vault", "openbao-kv1", "redis-unix", "redis-tls"])
def test_cli_renews_into_a_store_that_nginx_serves(backend, cli, pebble, challtestsrv,
                                                    nginx_factory, workdir,
                                                    monkeypatch):  # noqa: F811
    b = backend(workdir, monkeypatch)
    try:
        a = AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=["e1.example.test"],
                    key_types=("ecc",),
                    extra=b.conf + ' cache_ttl = 1, account_key_path = "%s",'
                    % ec_account(workdir))
        first = a.wait_issued("e1.example.test")
        rows = listed(run(cli, "list", "--store", b.store, check=0).out)
        assert list(rows) == [("e1.example.test", "ecc")]
        assert "0 unreadable" in run(cli, "check", "--store", b.store, check=0).out
        # the http-01 port is nginx's: the CLI answers there while nginx is down
        a.nginx.stop()
        rn = run(cli, "renew", *ca_args(pebble), *http_args(pebble), "--store", b.store,
                 "--domain", "e1.example.test", "--key-type", "ecc", "--account-key",
                 os.path.join(str(workdir), "account-ec.pem"), check=0)
        assert "stored domain:ecc:e1.example.test" in rn.out, rn
        a.nginx.start()
        deadline = time.monotonic() + 15
        while True:
            cert = a.handshake("e1.example.test", kind="ecc")
            if not a.is_fallback(cert) and cert.serial_number != first.serial_number:
                break
            assert time.monotonic() < deadline, a.nginx.log_tail(20)
            time.sleep(0.3)
        assert "0 unreadable" in run(cli, "check", "--store", b.store, check=0).out
        if hasattr(b, "after"):
            b.after(cli)
    finally:
        b.stop()
