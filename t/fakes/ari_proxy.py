"""An HTTPS reverse proxy in front of Pebble 2.4 that adds RFC 9773 renewal information and
ACME profiles to its directory.

Pebble 2.4 has no ARI. Every request is forwarded to Pebble with the proxy's Host header, so
the URLs Pebble puts in its replies point back at the proxy; the directory gains a
``renewalInfo`` URL that the proxy answers itself with ``window`` (start, end as Unix times).
newOrder payloads are recorded (decoded) in ``orders`` so tests can check ``replaces``.

With ``window=None`` it is a counting proxy in front of a Pebble that has ARI itself (2.10):
renewalInfo requests are forwarded and their CertIDs recorded in ``ari_queries``.
"""

import base64
import datetime
import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _forward(self, body):
        p = self.server.proxy
        conn = http.client.HTTPSConnection("127.0.0.1", p.pebble_port, context=p.upstream_ctx,
                                           timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        headers["Host"] = "127.0.0.1:%d" % p.port
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("connection", "content-length",
                                            "transfer-encoding")]
        conn.close()
        return resp.status, out_headers, data

    def _send(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        p = self.server.proxy
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if p.window is None and "/renewalInfo/" in self.path:
            # a CA with its own ARI (Pebble 2.10): forwarded, only counted
            p.ari_queries.append(self.path.rsplit("/", 1)[1])
        elif self.path.startswith("/renewal-info/"):
            p.ari_queries.append(self.path.rsplit("/", 1)[1])
            start, end = p.window
            data = json.dumps({"suggestedWindow": {"start": _rfc3339(start),
                                                   "end": _rfc3339(end)}}).encode()
            return self._send(200, [("Content-Type", "application/json"),
                                    ("Retry-After", "1")], data)
        if self.command == "POST" and self.path == "/order-plz" and body:
            jws = json.loads(body)
            pad = "=" * (-len(jws["payload"]) % 4)
            p.orders.append(json.loads(base64.urlsafe_b64decode(jws["payload"] + pad)))
        status, headers, data = self._forward(body)
        if self.path == "/dir" and status == 200 and p.window is not None:
            d = json.loads(data)
            d["renewalInfo"] = "https://127.0.0.1:%d/renewal-info" % p.port
            d.setdefault("meta", {})["profiles"] = {"classic": "the default",
                                                    "shortlived": "valid for 6 days"}
            data = json.dumps(d).encode()
        self._send(status, headers, data)

    do_GET = do_POST = do_HEAD = _handle


class AriProxy:
    def __init__(self, pebble, tls_cert, tls_key, window):
        self.pebble_port = int(pebble.directory_url.split(":")[2].split("/")[0])
        self.upstream_ctx = ssl.create_default_context(cafile=pebble.ca_pem)
        self.upstream_ctx.check_hostname = False
        self.window = window
        self.orders = []
        self.ari_queries = []
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.srv.proxy = self
        self.port = self.srv.server_address[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_cert, tls_key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.directory_url = "https://127.0.0.1:%d/dir" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
