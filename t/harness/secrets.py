"""Secrets the tests hand to servers and adapters, and the check that none reached a log.

Harness servers register theirs (redis passwords, TSIG secrets, EAB keys, vault and consul
tokens, OpenBao tokens); tests register others with ``register(...)``. At the end of the
session t/conftest.py runs ``scan(basetemp)`` over every error.log the harness wrote: a line
holding a registered secret or a PEM private key fails the run.
"""

import os
import re

_SECRETS = set()
PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def register(*values):
    """Remember secrets (strings or bytes; shorter than 8 characters are too common to grep)."""
    for v in values:
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        if isinstance(v, str) and len(v) >= 8:
            _SECRETS.add(v)
    return values[0] if len(values) == 1 else values


def registered():
    return set(_SECRETS)


def scan(root, names=("error.log",)):
    """(logs scanned, [(path, line number, what)]) for every log below ``root``."""
    leaks = []
    count = 0
    secrets = sorted(_SECRETS)
    for d, _, files in os.walk(str(root)):
        for f in files:
            if f not in names:
                continue
            count += 1
            path = os.path.join(d, f)
            with open(path, "r", encoding="utf-8", errors="replace") as fh:
                for i, line in enumerate(fh, 1):
                    if PEM_PRIVATE.search(line):
                        leaks.append((path, i, "a PEM private key"))
                    for s in secrets:
                        if s in line:
                            leaks.append((path, i, "secret %s..." % s[:4]))
    return count, leaks
