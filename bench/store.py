"""Writes certificate entries straight into a file store, in the format of docs/FORMAT.md."""

import base64
import json
import os
import time


def file_name(key):
    """The file storage's name for a logical key: standard base64, URL-safe when that has '/'."""
    name = base64.b64encode(key.encode()).decode()
    if "/" in name:
        name = base64.urlsafe_b64encode(key.encode()).decode()
    return name


def entry_value(domain, typ, chain_pem, key_pem):
    """The JSON of a certificate entry, '/' escaped as lua-cjson writes it."""
    return json.dumps({
        "domain": domain,
        "pkey": key_pem,
        "cert": chain_pem,
        "type": typ,
        "updated": round(time.time(), 3),
    }).replace("/", "\\/")


def write_entry(store_dir, name, typ, chain_pem, key_pem):
    """``domain:<typ>:<name>``, no expiry (``0::``). No fsync: a benchmark."""
    path = os.path.join(store_dir, file_name("domain:%s:%s" % (typ, name)))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("0::" + entry_value(name, typ, chain_pem, key_pem))
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def write_entries(store_dir, names, typ, chain_pem, key_pem):
    """The same chain and key for every name."""
    os.makedirs(store_dir, exist_ok=True)
    for name in names:
        write_entry(store_dir, name, typ, chain_pem, key_pem)


def write_leaves(store_dir, leaves, typ):
    """Each name its own chain and key: ``leaves`` as ``BenchChain.leaves`` returns them."""
    os.makedirs(store_dir, exist_ok=True)
    for name, chain_pem, key_pem, _serial in leaves:
        write_entry(store_dir, name, typ, chain_pem, key_pem)
