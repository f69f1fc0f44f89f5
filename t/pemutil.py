"""Reading certificates in tests: PEM chains (Debian's python3-cryptography 38 has no
``load_pem_x509_certificates``), SAN names and common names."""

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_certs(pem):
    """Every certificate of a PEM chain, in order."""
    if isinstance(pem, bytes):
        pem = pem.decode()
    return [x509.load_pem_x509_certificate(b.encode()) for b in _BLOCK.findall(pem)]


def leaf(pem):
    """The first certificate of a PEM chain."""
    return load_certs(pem)[0]


def dns_names(cert):
    """The DNS names of a certificate's subjectAltName, sorted."""
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(ext.value.get_values_for_type(x509.DNSName))


def common_name(name):
    """The CN of an x509.Name (a subject or an issuer), or None."""
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[0].value if attrs else None
