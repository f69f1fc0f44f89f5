"""PEM helpers that Debian's python3-cryptography (38) lacks."""

import re

from cryptography import x509

_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_certs(pem):
    """Every certificate of a PEM chain, in order."""
    if isinstance(pem, bytes):
        pem = pem.decode()
    return [x509.load_pem_x509_certificate(b.encode()) for b in _BLOCK.findall(pem)]
