"""An HTTPS reverse proxy in front of Pebble 2.4 that adds RFC 9773 renewal information and
ACME profiles to its directory.

Pebble 2.4 has no ARI. Every request is forwarded to Pebble with the proxy's Host header, so
the URLs Pebble puts in its replies point back at the proxy; the directory gains a
``renewalInfo`` URL that the proxy answers itself with ``window`` (start, end as Unix times).
newOrder payloads are recorded (decoded) in ``orders`` so tests can check ``replaces``.

With ``window=None`` it is a counting proxy in front of a Pebble that has ARI itself (2.10):
renewalInfo requests are forwarded and their CertIDs recorded in ``ari_queries``.
"""

import datetime
import json

from .pebble_proxy import PebbleProxy, ProxyHandler, jws_payload


def _rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class _Handler(ProxyHandler):
    def answer(self, body):
        p = self.server.proxy
        if p.window is None and "/renewalInfo/" in self.path:
            # a CA with its own ARI (Pebble 2.10): forwarded, only counted
            p.ari_queries.append(self.path.rsplit("/", 1)[1])
        elif self.path.startswith("/renewal-info/"):
            p.ari_queries.append(self.path.rsplit("/", 1)[1])
            start, end = p.window
            data = json.dumps({"suggestedWindow": {"start": _rfc3339(start),
                                                   "end": _rfc3339(end)}}).encode()
            return self.send(200, [("Content-Type", "application/json"),
                                   ("Retry-After", "1")], data)
        if self.command == "POST" and self.path == "/order-plz" and body:
            p.orders.append(jws_payload(body))
        status, headers, data = self.forward(body)
        if self.path == "/dir" and status == 200 and p.window is not None:
            d = json.loads(data)
            d["renewalInfo"] = "https://127.0.0.1:%d/renewal-info" % p.port
            d.setdefault("meta", {})["profiles"] = {"classic": "the default",
                                                    "shortlived": "valid for 6 days"}
            data = json.dumps(d).encode()
        self.send(status, headers, data)


class AriProxy(PebbleProxy):
    """``AriProxy(pebble, window)``: ``window`` = (start, end) Unix times, or None (forward
    and count renewalInfo queries); ``orders``, ``ari_queries``."""

    handler = _Handler

    def __init__(self, pebble, window):
        self.window = window
        self.orders = []
        self.ari_queries = []
        super().__init__(pebble)
