"""A fake Vault server: exactly the endpoints resty.acme.storage.vault calls.

Behaviour follows Vault's documented HTTP API:
- KV v2 mounts (``/v1/<mount>/data/<path>``, ``/v1/<mount>/metadata/<path>``):
  * ``POST|PUT data`` ``{"data": {...}, "options": {"cas": N}}`` -> 200 ``{"data": {version
    metadata}}``; a ``cas`` that is not the current version (0 = no version yet) -> 400
    ``{"errors": ["check-and-set parameter did not match the current version"]}``. A new
    version's ``deletion_time`` is fixed at write time from the key's
    ``delete_version_after``.
  * ``GET data`` -> 200 ``{"data": {"data": {...}, "metadata": {...}}}``; no key -> 404
    ``{"errors": []}``; current version deleted -> 404 with ``data.data = null`` and its
    metadata (as Vault answers).
  * ``POST metadata`` ``{"delete_version_after": "<go duration>"}`` -> 204 (creates the
    metadata of a new key).
  * ``POST delete/<path>`` ``{"versions": [N, ...]}`` -> 204: those versions soft-deleted
    (a current version deleted reads as above).
  * ``DELETE metadata`` -> 204 (all versions). ``LIST metadata/<dir>/`` (or ``GET ...?list=true``)
    -> ``{"data": {"keys": [...]}}`` (folders end with "/"), 404 when empty.
- KV v1 mounts (``/v1/<mount>/<path>``): ``POST|PUT`` any JSON object -> 204, ``GET`` -> 200
  ``{"data": {...}}`` or 404, ``DELETE`` -> 204, ``LIST`` as above.
- ``GET /v1/sys/internal/ui/mounts/<mount>`` -> ``{"data": {"type": "kv", "options":
  {"version": "1"|"2"}}}``; no such mount -> 403 (OpenBao's "preflight capability check").
- ``POST /v1/auth/<path>/login`` ``{"role", "jwt"}`` (kubernetes auth) -> ``{"auth":
  {"client_token": ...}}`` or 400 ``{"errors": [...]}``.
Request bodies are decoded like Go's encoding/json: invalid UTF-8 becomes U+FFFD.
Every request except login must carry a valid ``X-Vault-Token`` (403 ``permission denied``);
with ``namespace`` set, also ``X-Vault-Namespace: <namespace>`` (none: 403; another one: 404
``namespace not found``, as OpenBao 2.7 answers). A login on an auth path that is not
enabled: 404 ``no handler for route``.
"""

import json
import re
import time
import uuid

from harness import secrets

from .httpfake import FakeServer

CAS_MISMATCH = "check-and-set parameter did not match the current version"
PERMISSION_DENIED = "1 error occurred:\n\t* permission denied\n\n"
_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration(text):
    """Seconds of a Go duration string ("1500ms", "0s", "1h2m"); ValueError otherwise."""
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DUR.finditer(text):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(text)
    return total


def _rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)


class FakeVault(FakeServer):
    """``FakeVault(token="root-token", mounts={"acme": 2}, namespace=None, tls=None,
    kubernetes=None)``; ``kubernetes={"path": "kubernetes", "role": ..., "jwt": ...}`` enables
    that login. State: ``v2[mount][key]`` = {"versions": [...], "dva": seconds,
    "current": N}; ``v1[mount][key]`` = data dict. ``revoke_tokens()`` invalidates every
    token handed out by logins. ``secret(mount, key)`` -> current data dict or None.
    """

    def __init__(self, token="root-token", mounts=None, namespace=None, tls=None,
                 kubernetes=None):
        super().__init__(tls=tls)
        self.tokens = {token} if token else set()
        secrets.register(*self.tokens)
        if kubernetes:
            secrets.register(kubernetes.get("jwt"))
        self.mounts = dict(mounts or {"acme": 2})
        self.namespace = namespace
        self.kubernetes = kubernetes
        self.logins = 0
        self.login_tokens = set()
        self.v2 = {m: {} for m, v in self.mounts.items() if v == 2}
        self.v1 = {m: {} for m, v in self.mounts.items() if v == 1}

    def revoke_tokens(self):
        self.tokens -= self.login_tokens
        self.login_tokens = set()

    def secret(self, mount, key):
        if mount in self.v1:
            return self.v1[mount].get(key)
        e = self.v2[mount].get(key)
        if not e or not e["versions"]:
            return None
        v = e["versions"][-1]
        if v["deleted"]():
            return None
        return v["data"]

    # -- request handling ------------------------------------------------------------------

    def _json_body(self, req):
        if not req.body:
            return None
        if req.headers.get("content-type", "").split(";")[0] != "application/json":
            self.violation("JSON body without Content-Type application/json: %r" % req)
        # Go's decoder replaces invalid UTF-8 with U+FFFD
        return json.loads(req.body.decode("utf-8", errors="replace"))

    def handle(self, req):
        try:
            body = self._json_body(req)
        except ValueError:
            self.violation("invalid JSON body %r" % req)
            return 400, {"errors": ["failed to parse JSON input"]}, {}
        ns = req.headers.get("x-vault-namespace")
        if ns is not None and ns != self.namespace:
            # OpenBao 2.7: a namespace it does not have
            return 404, {"errors": ["namespace not found"]}, {}
        if self.namespace is not None and ns is None:
            # the root namespace, where tokens of the namespace are unknown
            return 403, {"errors": ["permission denied"]}, {}
        m = re.match(r"^/v1/auth/([^/]+)/login$", req.path)
        if m and req.method in ("POST", "PUT"):
            return self._login(m.group(1), body)
        if req.headers.get("x-vault-token") not in self.tokens:
            # an unknown token; a known one without a policy for the path gets PERMISSION_DENIED
            return 403, {"errors": ["permission denied"]}, {}
        m = re.match(r"^/v1/sys/internal/ui/mounts/(.+)$", req.path)
        if m and req.method == "GET":
            return self._mount_info(m.group(1))
        method = req.method
        if method == "GET" and req.query.get("list") == ["true"]:
            method = "LIST"
        m = re.match(r"^/v1/([^/]+)/(.*)$", req.path)
        if not m or m.group(1) not in self.mounts:
            self.violation("request outside every mount: %r" % req)
            route = req.path[len("/v1/"):]
            return 404, {"errors": ['no handler for route "%s". route entry not found.'
                                    % route]}, {}
        mount, rest = m.group(1), m.group(2)
        extra = set(req.query) - ({"list"} if req.method == "GET" else set())
        if extra:
            self.violation("unexpected query %s in %r" % (sorted(extra), req))
        if mount in self.v1:
            return self._v1(method, mount, rest, body, req)
        kind, _, key = rest.partition("/")
        if kind == "data":
            return self._data(method, mount, key, body, req)
        if kind == "metadata":
            return self._metadata(method, mount, key, body, req)
        if kind == "delete" and method in ("POST", "PUT"):
            return self._delete_versions(mount, key, body, req)
        self.violation("unexpected KV v2 path %r" % req)
        return 404, {"errors": []}, {}

    def _mount_info(self, path):
        # as OpenBao 2.7 answers: the mount holding `path`, or a 403 for no mount
        mount = path.split("/")[0]
        if mount not in self.mounts:
            return 403, {"errors": ["preflight capability check returned 403, please ensure "
                                    "client's policies grant access to path \"%s/\"" % mount]}, {}
        version = self.mounts[mount]
        return 200, {"data": {"type": "kv", "path": mount + "/",
                              "options": {"version": str(version)} if version == 2 else
                              {"version": "1"}}}, {}

    def _login(self, path, body):
        k = self.kubernetes
        if not k or path != k.get("path", "kubernetes"):
            return 404, {"errors": ['no handler for route "auth/%s/login". route entry not '
                                    'found.' % path]}, {}
        if not isinstance(body, dict) or not body.get("jwt"):
            return 400, {"errors": ["missing jwt"]}, {}
        if body.get("role") != k["role"]:
            # OpenBao 2.7's words
            return 400, {"errors": ['invalid role name "%s"' % body.get("role")]}, {}
        if body.get("jwt") != k["jwt"]:
            return 403, {"errors": ["permission denied"]}, {}
        tok = "s." + uuid.uuid4().hex
        self.tokens.add(tok)
        self.login_tokens.add(tok)
        self.logins += 1
        return 200, {"auth": {"client_token": tok, "lease_duration": 3600, "renewable": True}}, {}

    @staticmethod
    def _list(keys, prefix):
        out = set()
        for k in keys:
            if k.startswith(prefix):
                rest = k[len(prefix):]
                head, sep, _ = rest.partition("/")
                out.add(head + sep)
        if not out:
            return 404, {"errors": []}, {}
        return 200, {"data": {"keys": sorted(out)}}, {}

    def _v1(self, method, mount, key, body, req):
        store = self.v1[mount]
        if method == "LIST":
            if key and not key.endswith("/"):
                key += "/"
            return self._list(store, key)
        if method in ("POST", "PUT"):
            if not isinstance(body, dict):
                self.violation("KV v1 write without a JSON object %r" % req)
                return 400, {"errors": ["bad body"]}, {}
            store[key] = body
            return 204, b"", {}
        if method == "GET":
            if key not in store:
                return 404, {"errors": []}, {}
            return 200, {"data": store[key], "lease_duration": 2764800, "renewable": False}, {}
        if method == "DELETE":
            store.pop(key, None)
            return 204, b"", {}
        self.violation("unexpected method %r" % req)
        return 405, {"errors": ["unsupported operation"]}, {}

    def _meta(self, e):
        cur = e["versions"][-1] if e["versions"] else None
        return {
            "version": e["current"],
            "created_time": _rfc3339(cur["created"]) if cur else "",
            "deletion_time": (_rfc3339(cur["deletion"]) if cur and cur["deletion"] else ""),
            "destroyed": False,
            "custom_metadata": None,
        }

    def _data(self, method, mount, key, body, req):
        store = self.v2[mount]
        if method in ("POST", "PUT"):
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                self.violation("KV v2 write without data object %r" % req)
                return 400, {"errors": ["no data provided"]}, {}
            if set(body) - {"data", "options"}:
                self.violation("unexpected fields in %r" % req)
            e = store.get(key)
            cas = (body.get("options") or {}).get("cas")
            current = e["current"] if e else 0
            if cas is not None and cas != current:
                return 400, {"errors": [CAS_MISMATCH]}, {}
            if e is None:
                e = store[key] = {"versions": [], "dva": 0, "current": 0}
            now = time.time()
            deletion = now + e["dva"] if e["dva"] > 0 else None
            e["current"] += 1
            ver = {"data": body["data"], "created": now, "deletion": deletion}
            ver["deleted"] = (lambda d=deletion: d is not None and time.time() >= d)
            e["versions"].append(ver)
            return 200, {"data": {"version": e["current"], "created_time": _rfc3339(now),
                                  "deletion_time": _rfc3339(deletion) if deletion else "",
                                  "destroyed": False}}, {}
        if method == "GET":
            e = store.get(key)
            if not e or not e["versions"]:
                return 404, {"errors": []}, {}
            v = e["versions"][-1]
            if v["deleted"]():
                return 404, {"data": {"data": None, "metadata": self._meta(e)}}, {}
            return 200, {"data": {"data": v["data"], "metadata": self._meta(e)}}, {}
        self.violation("unexpected method on data %r" % req)
        return 405, {"errors": ["unsupported operation"]}, {}

    def _delete_versions(self, mount, key, body, req):
        # soft delete of the listed versions only; unknown versions are ignored, as Vault does
        versions = body.get("versions") if isinstance(body, dict) else None
        if (not isinstance(versions, list) or not versions
                or not all(isinstance(v, int) for v in versions) or set(body) != {"versions"}):
            self.violation("KV v2 delete without a versions list %r" % req)
            return 400, {"errors": ["no version number provided"]}, {}
        e = self.v2[mount].get(key)
        for n in versions:
            if e and 1 <= n <= len(e["versions"]):
                e["versions"][n - 1]["deleted"] = (lambda: True)
        return 204, b"", {}

    def _metadata(self, method, mount, key, body, req):
        store = self.v2[mount]
        if method == "LIST":
            if key and not key.endswith("/"):
                key += "/"
            return self._list(store, key)
        if method in ("POST", "PUT"):
            if not isinstance(body, dict) or set(body) - {"delete_version_after", "max_versions",
                                                          "cas_required", "custom_metadata"}:
                self.violation("unexpected metadata body %r" % req)
                return 400, {"errors": ["bad metadata"]}, {}
            try:
                dva = go_duration(body.get("delete_version_after", "0s"))
            except ValueError:
                self.violation("bad delete_version_after in %r" % req)
                return 400, {"errors": ["invalid duration"]}, {}
            e = store.setdefault(key, {"versions": [], "dva": 0, "current": 0})
            # the server keeps whole seconds: "1500ms" deletes a version 1 s after its write
            e["dva"] = int(dva)
            return 204, b"", {}
        if method == "DELETE":
            store.pop(key, None)
            return 204, b"", {}
        self.violation("unexpected method on metadata %r" % req)
        return 405, {"errors": ["unsupported operation"]}, {}
