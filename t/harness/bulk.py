"""Many stored certificates fast, for the scale tests and benchmarks (issue 17).

``leaves(names, procs=None) -> [(name, chain PEM, key PEM, serial)]``: one P-256 leaf and key
per name under one P-256 intermediate (made here), issued in ``procs`` processes (every core by
default): about 0.2 ms of CPU a name. ``seed_redis(redis, leaves, typ="ecc")`` writes them as
autossl's entries (``domain:<typ>:<name>``, docs/FORMAT.md) with pipelined ``SET``s.
"""

import datetime
import json
import multiprocessing
import os
import socket
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .redis import _Conn, _encode

_ISSUER = {}


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _init(inter_pem, key_pem):
    _ISSUER["inter"] = x509.load_pem_x509_certificate(inter_pem)
    _ISSUER["inter_pem"] = inter_pem.decode()
    _ISSUER["key"] = serialization.load_pem_private_key(key_pem, None)


def _leaf(args):
    name, now = args
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(name))
            .issuer_name(_ISSUER["inter"].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(_ISSUER["key"], hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return name, _pem(cert) + _ISSUER["inter_pem"], key_pem, cert.serial_number


def leaves(names, procs=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    inter = (x509.CertificateBuilder().subject_name(_name("bulk intermediate"))
             .issuer_name(_name("bulk intermediate")).public_key(ca_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(ca_key, hashes.SHA256()))
    inter_pem = inter.public_bytes(serialization.Encoding.PEM)
    key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    with multiprocessing.Pool(procs or os.cpu_count(), _init, (inter_pem, key_pem)) as pool:
        return pool.map(_leaf, [(n, now) for n in names], chunksize=512)


def entry_value(name, typ, chain_pem, key_pem):
    """The JSON of a certificate entry, '/' escaped as lua-cjson writes it."""
    return json.dumps({"domain": name, "pkey": key_pem, "cert": chain_pem, "type": typ,
                       "updated": round(time.time(), 3)}).replace("/", "\\/")


def seed_redis(redis, entries, typ="ecc", batch=2000):
    """SETs every (name, chain, key, ...) entry, ``batch`` commands a round trip."""
    with socket.create_connection((redis.host, redis.port), timeout=60) as s:
        conn = _Conn(s)
        for i in range(0, len(entries), batch):
            chunk = entries[i:i + batch]
            s.sendall(b"".join(
                _encode(["SET", "domain:%s:%s" % (typ, e[0]), entry_value(e[0], typ, e[1], e[2])])
                for e in chunk))
            for _ in chunk:
                conn.reply()
