"""A fake Consul agent: exactly the KV endpoints resty.acme.storage.consul calls.

Behaviour follows Consul's documented KV HTTP API (/v1/kv/<key>):
- ``PUT /v1/kv/<key>[?flags=<uint64>][&cas=<index>]`` body = raw value -> ``true``/``false``;
  ``cas=0`` creates only when absent, ``cas=N`` writes only when ModifyIndex is N. Values over
  512 KiB are refused with 413 (Consul's default ``kv_max_value_size``).
- ``GET /v1/kv/<key>`` -> ``[{"LockIndex","Key","Flags","Value"(base64|null),"CreateIndex",
  "ModifyIndex"}]`` or 404 with an empty body.
- ``GET /v1/kv/<prefix>?keys`` -> sorted list of keys starting with prefix, 404 when none.
- ``DELETE /v1/kv/<key>[?cas=<index>]`` -> ``true``/``false`` (a missing key is ``true``).
With ``token`` set every request must carry ``X-Consul-Token: <token>`` (else 403).
Anything else is recorded in ``violations`` and answered 400.
"""

import base64

from harness import secrets

from .httpfake import FakeServer

MAX_VALUE = 512 * 1024


class FakeConsul(FakeServer):
    """``FakeConsul(token=None, tls=None)``; ``start()``. State: ``kv`` {key: entry dict};
    ``index`` (last raft index). Helpers: ``value(key) -> bytes|None``, ``flags(key)``."""

    def __init__(self, token=None, tls=None):
        super().__init__(tls=tls)
        self.token = token
        secrets.register(token)
        self.kv = {}
        self.index = 10

    def value(self, key):
        e = self.kv.get(key)
        return e["Value"] if e else None

    def flags(self, key):
        e = self.kv.get(key)
        return e["Flags"] if e else None

    def _uint(self, req, name):
        vals = req.query.get(name)
        if vals is None:
            return None
        if len(vals) != 1 or not vals[0].isdigit():
            self.violation("bad %s=%r in %r" % (name, vals, req))
            raise ValueError(name)
        return int(vals[0])

    def handle(self, req):
        if self.token is not None and req.headers.get("x-consul-token") != self.token:
            return 403, b"ACL not found", {}
        if not req.path.startswith("/v1/kv/"):
            self.violation("unexpected path %r" % req)
            return 400, b"bad path", {}
        key = req.path[len("/v1/kv/"):]
        allowed = {"GET": {"keys"}, "PUT": {"flags", "cas"}, "DELETE": {"cas"}}
        if req.method not in allowed:
            self.violation("unexpected method %r" % req)
            return 405, b"method not allowed", {}
        extra = set(req.query) - allowed[req.method]
        if extra:
            self.violation("unexpected query %s in %r" % (sorted(extra), req))
            return 400, b"bad query", {}
        try:
            if req.method == "PUT":
                return self._put(req, key)
            if req.method == "DELETE":
                return self._delete(req, key)
        except ValueError:
            return 400, b"invalid parameter", {}
        if "keys" in req.query:
            keys = sorted(k for k in self.kv if k.startswith(key))
            return (200, keys, {}) if keys else (404, b"", {})
        e = self.kv.get(key)
        if e is None:
            return 404, b"", {}
        v = e["Value"]
        return 200, [{
            "LockIndex": 0, "Key": key, "Flags": e["Flags"],
            "Value": base64.b64encode(v).decode() if v else None,
            "CreateIndex": e["CreateIndex"], "ModifyIndex": e["ModifyIndex"],
        }], {"X-Consul-Index": str(self.index)}

    def _put(self, req, key):
        if not key or key.endswith("/") and req.body:
            self.violation("PUT on a folder %r" % req)
        if len(req.body) > MAX_VALUE:
            return 413, ("Value exceeds %d byte limit" % MAX_VALUE).encode(), {}
        flags = self._uint(req, "flags") or 0
        cas = self._uint(req, "cas")
        cur = self.kv.get(key)
        if cas is not None:
            if cas == 0 and cur is not None:
                return 200, False, {}
            if cas != 0 and (cur is None or cur["ModifyIndex"] != cas):
                return 200, False, {}
        self.index += 1
        self.kv[key] = {
            "Value": req.body, "Flags": flags,
            "CreateIndex": cur["CreateIndex"] if cur else self.index, "ModifyIndex": self.index,
        }
        return 200, True, {}

    def _delete(self, req, key):
        if req.body:
            self.violation("DELETE with a body %r" % req)
        cas = self._uint(req, "cas")
        cur = self.kv.get(key)
        if cas is not None and (cur is None or cur["ModifyIndex"] != cas):
            return 200, False, {}
        self.kv.pop(key, None)
        self.index += 1
        return 200, True, {}
