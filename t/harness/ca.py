"""Throw-away X.509 material for tests (python ``cryptography``)."""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names every TestCA server certificate is valid for.  "127.0.0.1" and "::1" are present both
# as IP SANs (for python/Go/curl clients) and as DNS SANs: nginx's cosocket `sslhandshake`
# checks the peer with X509_check_host(), which never matches IP SANs, so a Lua client that
# connects to https://127.0.0.1:... and verifies the name needs the DNS form.
SERVER_DNS_NAMES = ("localhost", "127.0.0.1", "::1")
SERVER_IPS = ("127.0.0.1", "::1")


def _write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def key_pem(key=None):
    """``key`` (default: a new ECDSA P-256 key) as unencrypted PKCS#8 PEM text."""
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def write_key(path, key=None):
    """Writes ``key_pem(key)`` to ``path`` (mode 0600) and returns ``path``: an account or
    domain key file (EC by default, so no test waits seconds for an RSA-4096 key)."""
    _write(str(path), key_pem(key).encode(), 0o600)
    return str(path)


class TestCA:
    """A throw-away CA plus one server certificate for 127.0.0.1 / localhost / ::1.

    ``TestCA(workdir)`` writes into ``workdir`` (created if needed):

    - ``ca_pem``   path of the CA certificate (trust anchor for clients)
    - ``cert_pem`` path of the server certificate (leaf only)
    - ``key_pem``  path of the server key (ECDSA P-256, PKCS#8 PEM)
    - ``chain_pem`` path of leaf + CA in one file

    ``issue(names, prefix)`` makes another leaf for other DNS names and returns
    ``(cert_path, key_path)``; handy for self-signed-ish fallback certificates in nginx.
    ``leaf_pem(names, ips=(), not_before=, not_after=)`` returns one as PEM text instead
    (``(cert, key)``), with any validity (an old or an expiring certificate in a store).
    The CA is valid from one hour ago for ten days; nothing about it is secret.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, workdir, name="harness test CA"):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._ca_name = subject
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_pem = os.path.join(self.workdir, "ca.pem")
        _write(self.ca_pem, self._ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_pem, self.key_pem = self.issue(
            SERVER_DNS_NAMES, "server", ips=SERVER_IPS
        )
        self.chain_pem = os.path.join(self.workdir, "server-chain.pem")
        with open(self.cert_pem, "rb") as f:
            leaf = f.read()
        _write(self.chain_pem, leaf + self._ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, names, prefix, ips=()):
        """Issue a leaf for ``names`` (DNS) and ``ips``; returns (cert_path, key_path)."""
        cert_pem, key_pem = self.leaf_pem(names, ips, cn=prefix)
        cert_path = os.path.join(self.workdir, prefix + ".pem")
        key_path = os.path.join(self.workdir, prefix + ".key")
        _write(cert_path, cert_pem.encode())
        _write(key_path, key_pem.encode(), 0o600)
        return cert_path, key_path

    def leaf_pem(self, names, ips=(), *, not_before=None, not_after=None, cn=None):
        """A leaf (ECDSA P-256) for ``names`` (DNS) and ``ips`` as PEM text: (cert, key).
        Valid from an hour ago for nine days unless ``not_before``/``not_after`` (aware
        datetimes) say otherwise; the CN is the first name, else the first IP, else ``cn``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cn = names[0] if names else (ips[0] if ips else cn or "leaf")
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=9))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key)
