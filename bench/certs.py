"""Certificates for the serving benchmarks: a root, an intermediate and ECDSA P-256 leaves.

A leaf names ``*.bench.test`` and ``bench.test`` (or one given name) and is valid for 90 days,
like a Let's Encrypt certificate; nginx is sent leaf + intermediate, as an ACME CA's chain.
``BenchChain.leaves`` issues one leaf and key per name under the same intermediate, as a real
CA does: autossl shares parsed intermediates between cached entries but never leaves or keys,
so every cached name must bring its own for the memory figure (P5) to be honest.
"""

import datetime
import multiprocessing
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


def _issue_leaf(inter, int_key, key, names, now):
    """A leaf for ``names`` with a new key of type ``key``, signed by the intermediate."""
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
    return leaf, leaf_key


_POOL_ISSUER = {}


def _pool_init(inter_pem, int_key_pem):
    _POOL_ISSUER["inter_pem"] = inter_pem.decode()
    _POOL_ISSUER["inter"] = x509.load_pem_x509_certificate(inter_pem)
    _POOL_ISSUER["key"] = serialization.load_pem_private_key(int_key_pem, None)


def _leaf_job(args):
    """One (name, chain PEM, key PEM, serial) in a pool process."""
    name, now = args
    leaf, leaf_key = _issue_leaf(_POOL_ISSUER["inter"], _POOL_ISSUER["key"], "ecc", (name,), now)
    return name, _pem(leaf) + _POOL_ISSUER["inter_pem"], _key_pem(leaf_key), leaf.serial_number


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
        self._int_key = int_key
        self._inter = inter
        leaf, leaf_key = _issue_leaf(inter, int_key, key, names, now)
        self.chain = _pem(leaf) + _pem(inter)
        self.key = _key_pem(leaf_key)
        self.intermediate = _pem(inter)
        self.leaf_serial = leaf.serial_number
        self.chain_path = os.path.join(workdir, "chain.pem")
        self.key_path = os.path.join(workdir, "key.pem")
        self.root_path = os.path.join(workdir, "root.pem")
        for path, text in ((self.chain_path, self.chain), (self.key_path, self.key),
                           (self.root_path, _pem(root))):
            with open(path, "w") as f:
                f.write(text)
        os.chmod(self.key_path, 0o600)

    def leaves(self, names):
        """One ECDSA P-256 leaf and key per name (the name as CN and only SAN), all under this
        chain's intermediate: ``[(name, chain PEM, key PEM, serial)]``. About 0.6 ms each
        (the P-384 signature), spread over every core."""
        now = datetime.datetime.now(datetime.timezone.utc)
        inter = self._inter.public_bytes(serialization.Encoding.PEM)
        int_key = _key_pem(self._int_key).encode()
        with multiprocessing.Pool(os.cpu_count(), _pool_init, (inter, int_key)) as pool:
            return pool.map(_leaf_job, [(name, now) for name in names], chunksize=256)
