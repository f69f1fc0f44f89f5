"""An HTTPS proxy in front of a real Pebble that injects faults per request path and counts
every request it sees.

``FaultProxy(pebble)`` listens on a free port of 127.0.0.1 with the Pebble listener's own TestCA
certificate (so ``pebble.ca_pem`` is trusted for it too) and forwards to Pebble with its own Host
header, so the URLs in Pebble's replies point back at the proxy. ``directory_url``, ``ca_pem``,
``http_port`` (Pebble's, where the VA validates) make it usable wherever a Pebble is::

    proxy = FaultProxy(pebble)
    proxy.fault("/order-plz", "429", retry_after=7)   # every newOrder: 429 rateLimited
    proxy.fault("/order-plz", "503", times=2)          # the next two only, then forwarded
    proxy.fault("", "reset")                            # every path: the connection is reset
    proxy.clear()                                       # forward everything again

Faults (``kind``): ``"429"`` (a ``rateLimited`` problem document, ``Retry-After: retry_after``),
``"503"`` (a ``serverInternal`` problem document with status 503), ``"500-html"`` (status 500,
an HTML body), ``"reset"`` (TCP RST before any reply), ``"stall"`` (read the request, answer
nothing for ``seconds``, then reset), ``"badjson"`` (status 200, ``application/json``, a body
that is not JSON), ``"problem"`` (status ``status`` with a problem document of type
``problem``, e.g. ``"rejectedIdentifier"``, and the ``subproblems`` list when given). A path matches a fault when it starts with the
fault's prefix; the most recently added match wins.

Every reply closes its connection (no keep-alive), so a reset never meets the transport's
re-send on a stale pooled connection: each request counted is one the client chose to make.

Counting: ``seen`` is a list of ``(monotonic time, method, path, what)`` (``what`` is the
fault kind or ``"forwarded"``); ``times_of(path_prefix)``, ``count(path_prefix)``; ``orders``
is ``(monotonic time, [identifier values])`` of every newOrder payload seen.
"""

import json
import socket
import struct
import threading
import time

from .pebble_proxy import PebbleProxy, ProxyHandler, jws_payload


class _Reset(Exception):
    pass


def _problem(kind, detail, status, subproblems=None):
    doc = {"type": "urn:ietf:params:acme:error:" + kind, "detail": detail, "status": status}
    if subproblems:
        doc["subproblems"] = subproblems
    return json.dumps(doc).encode()


class _Handler(ProxyHandler):
    # one request per connection: a reset then always hits a fresh connection, which the
    # client's transport never re-sends on (it does re-send once on a stale pooled one), so
    # every request seen here is one the client chose to make
    close_each = True

    def _reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        raise _Reset()

    def answer(self, body):
        p = self.server.proxy
        if self.command == "POST" and self.path == "/order-plz" and body:
            payload = jws_payload(body)
            if isinstance(payload, dict):
                p._note_order([i["value"] for i in payload.get("identifiers", [])])
        rule = p._take(self.path)
        what = rule["kind"] if rule else "forwarded"
        p._note(self.command, self.path, what)
        if rule is None:
            try:
                reply = self.forward(body)
            except OSError:
                # the upstream is down (a stopped Pebble): as a CA that is unreachable
                self._reset()
            return self.send(*reply)
        kind = rule["kind"]
        nonce = []  # no Replay-Nonce: the client fetches a fresh one from Pebble
        if kind == "429":
            headers = [("Content-Type", "application/problem+json"),
                       ("Retry-After", str(rule.get("retry_after", 1)))] + nonce
            return self.send(429, headers, _problem(
                "rateLimited", "too many new orders (fault proxy)", 429))
        if kind == "503":
            return self.send(503, [("Content-Type", "application/problem+json")] + nonce,
                             _problem("serverInternal", "unavailable (fault proxy)", 503))
        if kind == "500-html":
            return self.send(500, [("Content-Type", "text/html")],
                             b"<html><body>internal error</body></html>")
        if kind == "badjson":
            return self.send(200, [("Content-Type", "application/json")] + nonce,
                             b"{\"status\": \"valid\", oops")
        if kind == "problem":
            status = rule.get("status", 400)
            return self.send(status, [("Content-Type", "application/problem+json")] + nonce,
                             _problem(rule["problem"], "refused (fault proxy)", status,
                                      rule.get("subproblems")))
        if kind == "stall":
            time.sleep(rule.get("seconds", 30))
            self._reset()
        if kind == "reset":
            self._reset()
        raise ValueError("unknown fault %r" % kind)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except _Reset:
            self.close_connection = True
            try:
                self.connection.close()
            except OSError:
                pass


class FaultProxy(PebbleProxy):
    handler = _Handler

    def __init__(self, pebble):
        self.seen = []
        self.orders = []  # (monotonic time, [identifier values]) of every newOrder payload
        self._rules = []
        self._lock = threading.Lock()
        super().__init__(pebble)

    # -- faults ------------------------------------------------------------------------

    def fault(self, prefix, kind, *, times=None, **kw):
        """Answer requests whose path starts with ``prefix`` with fault ``kind`` (``times``
        requests, or until ``clear``)."""
        rule = dict(kw, prefix=prefix, kind=kind, left=times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self):
        with self._lock:
            self._rules = []

    def _take(self, path):
        with self._lock:
            for rule in reversed(self._rules):
                if path.startswith(rule["prefix"]):
                    if rule["left"] is not None:
                        if rule["left"] <= 0:
                            continue
                        rule["left"] -= 1
                    return rule
        return None

    # -- counting ----------------------------------------------------------------------

    def _note(self, method, path, what):
        with self._lock:
            self.seen.append((time.monotonic(), method, path, what))

    def _note_order(self, names):
        with self._lock:
            self.orders.append((time.monotonic(), names))

    def times_of(self, prefix, method=None):
        with self._lock:
            return [t for t, m, p, _ in self.seen
                    if p.startswith(prefix) and (method is None or m == method)]

    def count(self, prefix, method=None):
        return len(self.times_of(prefix, method))
