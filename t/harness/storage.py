"""nginx running storage adapters for the storage suites (t/lua/storage_t.lua), and the
file store's entries as lua-resty-acme writes them (``put_entry``, ``read_entry``,
``file_store``)."""

import base64
import json
import os
import urllib.error
import urllib.request

from . import proc
from .nginx import Nginx, lua_package_path
from .paths import REPO


def _arg(v):
    if isinstance(v, (bytes, bytearray)):
        return {"s": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, str):
        return {"s": base64.b64encode(v.encode()).decode()}
    return v


def _ret(v):
    if isinstance(v, dict) and "s" in v:
        return base64.b64decode(v["s"])
    if isinstance(v, list):
        return [_ret(x) for x in v]
    return v


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


class Store:
    """One adapter instance inside a ``StorageNginx``; methods mirror the adapter's.

    Strings come back as ``str`` when they are UTF-8, else ``bytes``; use ``call`` for the raw
    return values (bytes) of any method.
    """

    def __init__(self, nginx, name):
        self.nginx = nginx
        self.name = name

    def call(self, method, *args, dot=False):
        body = json.dumps({"store": self.name, "method": method, "dot": dot,
                           "args": [_arg(a) for a in args], "nargs": len(args)}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/op" % self.nginx.port, data=body,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                res = json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError("store %s: %s -> %d %s" % (self.name, method, e.code,
                                                          e.read()[:500]))
        out = [_ret(x) for x in res["ret"]]
        return out + [None] * (res["n"] - len(out))

    @staticmethod
    def _maybe_text(v):
        if isinstance(v, bytes):
            try:
                return v.decode()
            except UnicodeDecodeError:
                return v
        return v

    def set(self, k, v, ttl=None, dot=False):
        args = (k, v) if ttl is None else (k, v, ttl)
        return _text(self.call("set", *args, dot=dot)[0])

    def add(self, k, v, ttl=None, dot=False):
        args = (k, v) if ttl is None else (k, v, ttl)
        return _text(self.call("add", *args, dot=dot)[0])

    def delete(self, k, dot=False):
        return _text(self.call("delete", k, dot=dot)[0])

    def get(self, k, dot=False):
        """-> (value, err)"""
        r = self.call("get", k, dot=dot)
        return self._maybe_text(r[0]), _text(r[1])

    def get_bytes(self, k):
        r = self.call("get", k)
        return r[0], _text(r[1])

    def list(self, prefix, dot=False):
        """-> (sorted keys, err)"""
        r = self.call("list", prefix, dot=dot)
        keys = r[0]
        if keys == {}:
            keys = []  # cjson encodes an empty Lua table as an object
        if isinstance(keys, list):
            keys = sorted(self._maybe_text(k) for k in keys)
        return keys, _text(r[1])

    def new_error(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/new_error?store=%s"
                                    % (self.nginx.port, self.name), timeout=10) as r:
            return json.load(r)["new_error"]


class StorageNginx:
    """nginx whose init_by_lua builds adapters with ``new(conf)`` and serves ``/op``.

    ``StorageNginx(workdir, stores, *, trusted_ca=None, workers=1)`` where ``stores`` maps a
    name to ``{"adapter": "redis", "conf": {...}}`` (conf: JSON-able). ``start()``; then
    ``store(name) -> Store``; ``autossl_init(adapter, storage_config) -> error or None``
    (``resty.acme.autossl.init`` called under pcall). ``trusted_ca`` sets
    ``lua_ssl_trusted_certificate``. Attributes ``nginx`` (harness ``Nginx``), ``port``.
    """

    def __init__(self, workdir, stores, *, trusted_ca=None, workers=1, name="storage-nginx"):
        self.port = proc.free_port()
        conf_json = json.dumps(stores)
        assert "]==]" not in conf_json
        trusted = ""
        if trusted_ca:
            trusted = "lua_ssl_trusted_certificate %s;\nlua_ssl_verify_depth 5;" % trusted_ca
        body = """
    lua_shared_dict acme 16m;
    client_max_body_size 32m;
    client_body_buffer_size 32m;
    %s
    init_by_lua_block {
        local cjson = require("cjson.safe")
        require("storage_t").setup(cjson.decode([==[%s]==]))
    }
    server {
        listen 127.0.0.1:%d;
        location = /op { content_by_lua_block { require("storage_t").op() } }
        location = /new_error { content_by_lua_block { require("storage_t").new_error() } }
        location = /autossl_init { content_by_lua_block { require("storage_t").autossl_init() } }
    }
""" % (trusted, conf_json, self.port)
        self.nginx = Nginx(os.path.join(str(workdir), name), body, http_ports=[self.port],
                           worker_processes=workers,
                           lua_path=os.path.join(REPO, "t", "lua", "?.lua;") + lua_package_path())

    def start(self):
        self.nginx.start()
        return self

    def stop(self):
        self.nginx.stop()

    def store(self, name):
        return Store(self, name)

    def autossl_init(self, adapter, storage_config):
        body = json.dumps({"storage_adapter": adapter, "storage_config": storage_config}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/autossl_init" % self.port, data=body,
                                     method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)["error"]


def _entry_path(store, name, typ):
    return os.path.join(store,
                        base64.b64encode(("domain:%s:%s" % (typ, name)).encode()).decode())


def put_entry(store, name, cert_pem, key_pem, typ="ecc", updated=1700000000.0):
    """Writes `domain:<typ>:<name>` into a file store as lua-resty-acme does (docs/FORMAT.md,
    slashes escaped as cjson writes them); returns the file's path."""
    value = json.dumps({"domain": name, "pkey": key_pem, "cert": cert_pem, "type": typ,
                        "updated": updated}).replace("/", "\\/")
    path = _entry_path(store, name, typ)
    with open(path, "w") as f:
        f.write("0::" + value)
    return path


def read_entry(store, name, typ="ecc"):
    """The decoded `domain:<typ>:<name>` entry of a file store."""
    with open(_entry_path(store, name, typ)) as f:
        return json.loads(f.read().split("::", 1)[1])


def stored_files(store, *prefixes):
    """The files of a file store whose logical key starts with one of `prefixes` (bytes). The
    store's own directory lock (a dot file, never a base64 name) is no key."""
    return [f for f in os.listdir(store)
            if not f.startswith(".") and base64.b64decode(f).startswith(prefixes)]


def file_store(store, more=""):
    """autossl config lines for the file storage in `store` (and `more` lines)."""
    return 'storage_adapter = "file", storage_config = { dir = %s }, %s' % (json.dumps(store),
                                                                            more)
