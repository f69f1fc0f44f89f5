"""Certificates for the serving benchmarks: a root, an intermediate and one ECDSA P-256 leaf.

The leaf names ``*.bench.test`` and ``bench.test`` and is valid for 90 days, like a Let's
Encrypt certificate; nginx is sent leaf + intermediate, as an ACME CA's chain. autossl does not
look at the names in a stored certificate, so one chain can stand for thousands of names.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_ext(builder, key, issuer_key):
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    )


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class BenchChain:
    """``BenchChain(workdir, key="ecc"|"rsa2048"|"rsa4096")``: writes ``chain.pem`` (leaf +
    intermediate), ``key.pem`` (PKCS#8) and ``root.pem``; ``chain``/``key`` hold the PEM text."""

    def __init__(self, workdir, key="ecc", names=("*.bench.test", "bench.test")):
        os.makedirs(workdir, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = _ca_ext(x509.CertificateBuilder().subject_name(_name("bench root"))
                       .issuer_name(_name("bench root")).public_key(root_key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(hours=1))
                       .not_valid_after(now + datetime.timedelta(days=3650)),
                       root_key, root_key).sign(root_key, hashes.SHA384())
        int_key = ec.generate_private_key(ec.SECP384R1())
        inter = _ca_ext(x509.CertificateBuilder().subject_name(_name("bench intermediate E1"))
                        .issuer_name(root.subject).public_key(int_key.public_key())
                        .serial_number(x509.random_serial_number())
                        .not_valid_before(now - datetime.timedelta(hours=1))
                        .not_valid_after(now + datetime.timedelta(days=1825)),
                        int_key, root_key).sign(root_key, hashes.SHA384())
        if key == "ecc":
            leaf_key = ec.generate_private_key(ec.SECP256R1())
        elif key == "rsa2048":
            leaf_key = rsa.generate_private_key(65537, 2048)
        elif key == "rsa4096":
            leaf_key = rsa.generate_private_key(65537, 4096)
        else:
            raise ValueError("unknown key type %r" % key)
        leaf = (
            x509.CertificateBuilder().subject_name(_name(names[0]))
            .issuer_name(inter.subject).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=key != "ecc", data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False,
                decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                int_key.public_key()), critical=False)
            .sign(int_key, hashes.SHA384())
        )
        self.chain = _pem(leaf) + _pem(inter)
        self.key = _key_pem(leaf_key)
        self.leaf_serial = leaf.serial_number
        self.chain_path = os.path.join(workdir, "chain.pem")
        self.key_path = os.path.join(workdir, "key.pem")
        self.root_path = os.path.join(workdir, "root.pem")
        for path, text in ((self.chain_path, self.chain), (self.key_path, self.key),
                           (self.root_path, _pem(root))):
            with open(path, "w") as f:
                f.write(text)
        os.chmod(self.key_path, 0o600)
