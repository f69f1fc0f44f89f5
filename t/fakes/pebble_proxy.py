"""Base of the HTTPS proxies that stand in front of a real Pebble (fault_proxy, ari_proxy).

``PebbleProxy(pebble)`` listens on a free port of 127.0.0.1 with the Pebble listener's own
TestCA leaf (so ``pebble.ca_pem`` is trusted for the proxy too) and forwards every request to
Pebble with the proxy's Host header, so the URLs in Pebble's replies point back at the proxy.
It has its own ``directory_url`` and ``port``, and every other attribute of the Pebble
(``ca_pem``, ``http_port`` where the VA validates, ``orders_count()``, ...): pass it wherever a
Pebble goes (``AutoSSL``, ``control_nginx``). ``stop()`` stops the proxy only.

A subclass sets ``handler`` to a ``ProxyHandler`` subclass whose ``answer(body)`` decides per
request: ``self.send(*self.forward(body))`` passes it on.
"""

import base64
import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = ("connection", "content-length", "transfer-encoding")


def jws_payload(body):
    """The decoded JSON payload of a JWS request body, or None (no body, not a JWS)."""
    try:
        jws = json.loads(body)
        pad = "=" * (-len(jws["payload"]) % 4)
        return json.loads(base64.urlsafe_b64decode(jws["payload"] + pad))
    except (ValueError, KeyError, TypeError):
        return None


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    close_each = False  # True: "Connection: close" on every reply (no keep-alive)

    def log_message(self, *a):
        pass

    def forward(self, body):
        """The request sent on to Pebble: (status, headers, data). OSError when Pebble is down."""
        p = self.server.proxy
        conn = http.client.HTTPSConnection("127.0.0.1", p.pebble_port, context=p.upstream_ctx,
                                           timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        headers["Host"] = "127.0.0.1:%d" % p.port
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP], data

    def send(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if self.close_each:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def answer(self, body):  # pragma: no cover - overridden
        self.send(*self.forward(body))

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.answer(self.rfile.read(n) if n else None)

    do_GET = do_POST = do_HEAD = _any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # resets and clients that went away are expected


class PebbleProxy:
    handler = ProxyHandler

    def __init__(self, pebble):
        self.pebble = pebble
        self.pebble_port = pebble.port
        self.upstream_ctx = ssl.create_default_context(cafile=pebble.ca_pem)
        self.upstream_ctx.check_hostname = False
        self.srv = _Server(("127.0.0.1", 0), self.handler)
        self.srv.proxy = self
        self.port = self.srv.server_address[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pebble.ca.cert_pem, pebble.ca.key_pem)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.directory_url = "https://127.0.0.1:%d/dir" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def __getattr__(self, name):
        # only for what the proxy does not have itself: the Pebble's
        if name == "pebble":  # not set yet (in __init__): no recursion
            raise AttributeError(name)
        return getattr(self.pebble, name)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
