"""Base of the fake HTTP servers: a threaded http.server on a free loopback port that records
every request and lets the subclass answer it."""

import http.server
import socketserver
import ssl
import threading
import urllib.parse

from harness import free_port


class Request:
    """One recorded request: ``method``, ``raw_path`` (as sent), ``path`` (percent-decoded,
    without the query), ``query`` ({name: [values]}, blank values kept), ``headers`` ({lower
    name: value}), ``body`` (bytes), ``sni`` (TLS server name or None)."""

    def __init__(self, method, raw_path, headers, body, sni):
        self.method = method
        self.raw_path = raw_path
        parts = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(parts.path)
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.sni = sni

    def __repr__(self):
        return "<%s %s %r>" % (self.method, self.raw_path, self.body[:80])


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeServer:
    """Subclasses implement ``handle(req) -> (status, body_bytes_or_obj, headers)``; a dict or
    list body is sent as JSON. ``violation(msg)`` records a request the real server would not
    have accepted the way the adapter sent it (tests assert ``violations == []``).

    ``FakeServer(tls=None)``: ``tls=(cert_pem, key_pem)`` serves HTTPS. ``start()``, ``stop()``;
    attributes ``port``, ``requests`` (list of ``Request``), ``violations``.
    """

    def __init__(self, tls=None):
        self.port = free_port()
        self.requests = []
        self.violations = []
        self.lock = threading.RLock()
        self.tls = tls
        self.server = None

    def violation(self, msg):
        self.violations.append(msg)

    def handle(self, req):  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.headers.get("Transfer-Encoding"):
                    fake.violation("chunked request body")
                sni = getattr(self.connection, "_fake_sni", None)
                req = Request(self.command, self.path, dict(self.headers.items()), body, sni)
                with fake.lock:
                    fake.requests.append(req)
                    try:
                        status, out, headers = fake.handle(req)
                    except Exception as e:  # noqa: BLE001 - reported to the test
                        fake.violation("fake raised %r on %r" % (e, req))
                        status, out, headers = 500, {"errors": [repr(e)]}, {}
                if isinstance(out, (dict, list, bool)):
                    import json
                    out = json.dumps(out).encode()
                    headers = dict(headers or {})
                    headers.setdefault("Content-Type", "application/json")
                out = out or b""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if out and self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_PUT = do_POST = do_DELETE = do_LIST = do_HEAD = _any

        self.server = _Server(("127.0.0.1", self.port), Handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)

            def sni_cb(sslsock, name, _ctx):
                sslsock._fake_sni_name = name

            ctx.sni_callback = sni_cb

            class TLSServer(_Server):
                def get_request(inner):
                    sock, addr = inner.socket.accept()
                    try:
                        tls = ctx.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError) as e:
                        fake.handshake_errors.append(repr(e))
                        sock.close()
                        raise
                    tls._fake_sni = getattr(tls, "_fake_sni_name", None)
                    return tls, addr

            self.handshake_errors = []
            self.server.server_close()
            self.server = TLSServer(("127.0.0.1", self.port), Handler)
        t = threading.Thread(target=self.server.serve_forever, daemon=True)
        t.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def requests_to(self, method=None, path_prefix=""):
        return [r for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(path_prefix)]
