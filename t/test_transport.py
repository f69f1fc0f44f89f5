"""End-to-end tests of lua/resty/acme/transport.lua inside Debian's nginx.

nginx runs a content handler (t/test_transport.py writes it as runner.lua) that performs the
requests described by a JSON body with resty.acme.transport and answers with the results as
JSON. The origins are Python HTTP(S) servers on loopback with certificates from a throwaway CA
that nginx trusts through lua_ssl_trusted_certificate.

Run: /usr/bin/python3 -m pytest t/test_transport.py
(the session fixture ``core_so`` runs `make lua-build`, which replaces build/lua/resty/acme/core.so
by a rename, never in place: nginx processes of other tests keep their mapping.)
"""

import http.server
import json
import os
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from harness import Nginx as HarnessNginx
from harness import TestCA, free_port

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- build


@pytest.fixture(scope="module")
def core_module(core_so):
    # the session's `make lua-build` (copy then rename: a running nginx keeps its mapping)
    return core_so


# ---------------------------------------------------------------- PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A trusted CA with a leaf for localhost + 127.0.0.1/::1 (the addresses as IP SANs only,
    so https://127.0.0.1 passes only where IP SANs are checked) and one for another name, and
    a leaf of an untrusted CA."""
    d = str(tmp_path_factory.mktemp("pki"))
    ca = TestCA(d, name="transport test ca")
    other = TestCA(os.path.join(d, "untrusted"), name="untrusted test ca")
    return {
        "ca": ca.ca_pem,
        "good": ca.issue(["localhost"], "good", ips=["127.0.0.1", "::1"]),
        "wrongname": ca.issue(["other.example"], "wrongname"),
        "untrusted": other.issue(["localhost"], "untrusted"),
    }


# ---------------------------------------------------------------- origin servers


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        srv = self.server
        with srv.lock:
            srv.conn_count += 1
            self.conn_id = srv.conn_count
        self.drop_next = False

    def _record(self, body):
        with self.server.lock:
            self.server.requests.append(
                {
                    "conn": self.conn_id,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw_headers": [k for k in self.headers.keys()],
                    "body": body.decode("latin-1"),
                }
            )

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, headers=(), head=False):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _dispatch(self, head=False):
        body = self._read_body()
        if self.drop_next:
            # Emulates a server closing an idle keepalive connection just as a request is sent.
            self._record(body)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._record(body)
        path = self.path.split("?")[0]
        query = dict(
            kv.split("=", 1) for kv in (self.path.split("?", 1) + [""])[1].split("&") if "=" in kv
        )
        if path == "/echo":
            doc = {
                "method": self.command,
                "path": self.path,
                "body": body.decode("latin-1"),
                "content_type": self.headers.get("Content-Type"),
            }
            self._send(
                200,
                json.dumps(doc).encode(),
                [
                    ("Content-Type", "application/json"),
                    ("Replay-Nonce", "nonce-%d" % len(self.server.requests)),
                    ("Link", '<https://ca.example/dir>;rel="index"'),
                    ("Link", '<https://ca.example/cert/1/alt>;rel="alternate"'),
                ],
                head=head,
            )
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for piece in [b"hello, ", b"chunked", b" world"]:
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.02)
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path == "/big":
            n = int(query.get("n", "0"))
            self._send(200, b"a" * n, head=head)
        elif path == "/slow":
            time.sleep(float(query.get("s", "2")))
            self._send(200, b"late", head=head)
        elif path == "/drop-next":
            self.drop_next = True
            self._send(200, b"ok, the next request on this connection is dropped", head=head)
        elif path == "/close-delimited":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
            self.close_connection = True
        elif path == "/status":
            code = int(query.get("code", "200"))
            self._send(code, b"" if code in (204, 304) else b"status body", head=head)
        else:
            self._send(404, b"not found", head=head)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch(head=True)


class Origin:
    def __init__(self, host="127.0.0.1", certfile=None, keyfile=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        self.httpd.lock = threading.Lock()
        self.httpd.conn_count = 0
        self.httpd.requests = []
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.httpd.socket = ctx.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def conn_count(self):
        return self.httpd.conn_count

    @property
    def requests(self):
        return self.httpd.requests

    def reset(self):
        # Connection ids stay monotonic: pooled connections survive between tests.
        with self.httpd.lock:
            self.httpd.requests.clear()

    def conns(self):
        """Distinct connections that carried the requests seen since the last reset."""
        return sorted({q["conn"] for q in self.requests})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def origins(pki):
    o = {
        "good": Origin(certfile=pki["good"][0], keyfile=pki["good"][1]),
        "good6": Origin("::1", certfile=pki["good"][0], keyfile=pki["good"][1]),
        "wrongname": Origin(certfile=pki["wrongname"][0], keyfile=pki["wrongname"][1]),
        "untrusted": Origin(certfile=pki["untrusted"][0], keyfile=pki["untrusted"][1]),
        "plain": Origin(),
    }
    yield o
    for s in o.values():
        s.close()


# ---------------------------------------------------------------- nginx


RUNNER = r"""
local cjson = require("cjson.safe")
local transport = require("resty.acme.transport")

ngx.req.read_body()
local spec = cjson.decode(ngx.req.get_body_data())

local function run()
  local out = {}
  local t = transport.new(spec.opts)
  for i, r in ipairs(spec.requests) do
    if r.fresh_transport then
      t = transport.new(spec.opts)
    end
    local res, err = t:request(r.method, r.url, r.headers, r.body)
    if res then
      local plain = {}
      for k, v in pairs(res.headers) do
        plain[k] = v
      end
      out[i] = {
        status = res.status, headers = plain, body = res.body, header_list = res.header_list,
        nonce_lookup = res.headers["Replay-Nonce"] or cjson.null,
        ct_lookup = res.headers.content_type or cjson.null,
      }
    else
      out[i] = { err = err }
    end
  end
  return out
end

local results
if spec.timer then
  local sema = require("ngx.semaphore").new()
  local ok, err = ngx.timer.at(0, function()
    results = run()
    sema:post(1)
  end)
  assert(ok, err)
  assert(sema:wait(60))
else
  results = run()
end
ngx.header["Content-Type"] = "application/json"
ngx.print(cjson.encode({ phase = ngx.get_phase(), results = results }))
"""

NGINX_CONF = """
    lua_ssl_trusted_certificate {ca};
    lua_ssl_verify_depth 3;

    init_worker_by_lua_block {{
        local t = require("resty.acme.transport").new()
        local res, err = t:request("GET", "https://127.0.0.1:{port}/never")
        ngx.log(ngx.NOTICE, "init_worker transport: res=", tostring(res), " err=", err)
    }}

    server {{
        listen 127.0.0.1:{port};
        client_body_buffer_size 1m;
        client_max_body_size 1m;
        location = /run {{
            content_by_lua_file {prefix}/runner.lua;
        }}
        location = /eval {{
            content_by_lua_block {{
                ngx.req.read_body()
                local f = assert(loadstring(ngx.req.get_body_data()))
                ngx.print(require("cjson").encode(f()))
            }}
        }}
    }}
"""


class Nginx:
    """The transport runner on the shared harness's nginx (t/harness/nginx.py)."""

    def __init__(self, prefix, ca):
        self.prefix = prefix
        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "runner.lua").write_text(RUNNER)
        body = NGINX_CONF.format(prefix=prefix, ca=ca, port=self.port)
        self.server = HarnessNginx(str(prefix), body, http_ports=[self.port])
        self.conf = Path(self.server.conf_path)
        self.log = Path(self.server.error_log_path)
        self.server.start()

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def run(self, requests, opts=None, timer=False):
        spec = {"requests": requests, "opts": opts or {}, "timer": timer}
        req = urllib.request.Request(
            "http://127.0.0.1:%d/run" % self.port,
            data=json.dumps(spec).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            doc = json.loads(r.read())
        assert doc["phase"] == "content"
        return doc["results"]

    def eval(self, lua):
        """Runs a Lua chunk in the content phase; returns its (JSON-encoded) return value."""
        req = urllib.request.Request(
            "http://127.0.0.1:%d/eval" % self.port, data=lua.encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def one(self, method, url, opts=None, **kw):
        return self.run([dict(method=method, url=url, **kw)], opts)[0]

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def nginx(core_module, pki, tmp_path_factory):
    n = Nginx(tmp_path_factory.mktemp("nginx"), pki["ca"])
    yield n
    n.stop()


@pytest.fixture
def srv(origins):
    for o in origins.values():
        o.reset()
    return origins


def url(origin, path, host="localhost", scheme="https"):
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d%s" % (scheme, host, origin.port, path)


# ---------------------------------------------------------------- tests


def test_get(nginx, srv):
    r = nginx.one("GET", url(srv["good"], "/echo?x=1"))
    assert r.get("status") == 200, r
    assert json.loads(r["body"])["path"] == "/echo?x=1"
    assert r["headers"]["content-type"] == "application/json"
    # Case-insensitive lookups through the headers table, "_" read as "-".
    assert r["nonce_lookup"] == "nonce-1"
    assert r["ct_lookup"] == "application/json"
    # Repeated fields: joined in headers, separate in header_list.
    assert r["headers"]["link"] == (
        '<https://ca.example/dir>;rel="index", <https://ca.example/cert/1/alt>;rel="alternate"'
    )
    links = [v for k, v in r["header_list"] if k.lower() == "link"]
    assert len(links) == 2
    seen = srv["good"].requests[0]
    assert seen["method"] == "GET"
    assert seen["headers"]["host"] == "localhost:%d" % srv["good"].port
    assert seen["headers"]["user-agent"].startswith("lua-resty-acme-rs/")
    assert seen["headers"]["accept"] == "*/*"
    assert "content-length" not in seen["headers"]


def test_head(nginx, srv):
    r = nginx.one("HEAD", url(srv["good"], "/echo"))
    assert r.get("status") == 200, r
    assert r["body"] == ""
    assert int(r["headers"]["content-length"]) > 0
    assert r["nonce_lookup"] == "nonce-1"


def test_post_with_body(nginx, srv):
    body = json.dumps({"protected": "eyJ", "payload": "", "signature": "sig"})
    r = nginx.one(
        "POST",
        url(srv["good"], "/echo"),
        headers={"Content-Type": "application/jose+json"},
        body=body,
    )
    assert r.get("status") == 200, r
    doc = json.loads(r["body"])
    assert doc["body"] == body
    assert doc["content_type"] == "application/jose+json"
    assert srv["good"].requests[0]["headers"]["content-length"] == str(len(body))


def test_post_empty_body_sends_content_length(nginx, srv):
    r = nginx.one("POST", url(srv["good"], "/echo"))
    assert r.get("status") == 200, r
    assert srv["good"].requests[0]["headers"]["content-length"] == "0"


def test_chunked_response(nginx, srv):
    r = nginx.one("GET", url(srv["good"], "/chunked"))
    assert r.get("status") == 200, r
    assert r["body"] == "hello, chunked world"
    assert "x-trailer" not in r["headers"]


def test_status_codes_without_body(nginx, srv):
    rs = nginx.run(
        [
            dict(method="GET", url=url(srv["good"], "/status?code=204")),
            dict(method="GET", url=url(srv["good"], "/status?code=404")),
            dict(method="GET", url=url(srv["good"], "/status?code=500")),
        ]
    )
    assert [r["status"] for r in rs] == [204, 404, 500]
    assert rs[0]["body"] == ""
    assert rs[1]["body"] == "status body"
    # All three on one connection.
    assert len(srv["good"].conns()) == 1


def test_keepalive_reuse(nginx, srv):
    rs = nginx.run(
        [
            dict(method="GET", url=url(srv["good"], "/echo")),
            dict(method="HEAD", url=url(srv["good"], "/echo")),
            dict(method="POST", url=url(srv["good"], "/echo"), body="x"),
            # A new transport object with the same settings shares the pool.
            dict(method="GET", url=url(srv["good"], "/chunked"), fresh_transport=True),
        ]
    )
    assert all(r.get("status") == 200 for r in rs), rs
    assert len(srv["good"].requests) == 4
    assert len(srv["good"].conns()) == 1
    before = srv["good"].conn_count
    # The pool outlives the request: another nginx request reuses the same connection.
    r = nginx.one("GET", url(srv["good"], "/echo"))
    assert r["status"] == 200
    assert len(srv["good"].conns()) == 1
    assert srv["good"].conn_count == before


def test_keepalive_disabled(nginx, srv):
    rs = nginx.run(
        [
            dict(method="GET", url=url(srv["plain"], "/echo", scheme="http")),
            dict(method="GET", url=url(srv["plain"], "/echo", scheme="http")),
        ],
        opts={"keepalive": False},
    )
    assert all(r.get("status") == 200 for r in rs), rs
    assert len(srv["plain"].conns()) == 2
    assert srv["plain"].requests[0]["headers"]["connection"] == "close"


def test_from_timer(nginx, srv):
    rs = nginx.run(
        [
            dict(method="GET", url=url(srv["good"], "/echo")),
            dict(method="GET", url=url(srv["good"], "/echo")),
        ],
        timer=True,
    )
    assert [r.get("status") for r in rs] == [200, 200], rs
    assert len(srv["good"].conns()) == 1


def test_stale_pooled_connection_is_retried(nginx, srv):
    # The second request goes out on the pooled connection, which the server closes without
    # answering: the transport must retry once on a new connection.
    rs = nginx.run(
        [
            dict(method="GET", url=url(srv["good"], "/drop-next")),
            dict(method="GET", url=url(srv["good"], "/echo")),
        ]
    )
    assert rs[0]["status"] == 200, rs
    assert rs[1].get("status") == 200, rs
    seen = [(q["conn"], q["path"]) for q in srv["good"].requests]
    assert [p for _, p in seen] == ["/drop-next", "/echo", "/echo"]
    first, second = srv["good"].conns()
    assert [c for c, _ in seen] == [first, first, second]
    assert "retrying on a new connection" in nginx.log_text()


def test_plain_http_and_close_delimited(nginx, srv):
    r = nginx.one("GET", url(srv["plain"], "/close-delimited", host="127.0.0.1", scheme="http"))
    assert r.get("status") == 200, r
    assert r["body"] == "until the end"
    seen = srv["plain"].requests[0]
    assert seen["headers"]["host"] == "127.0.0.1:%d" % srv["plain"].port


def test_ipv6_literal(nginx, srv):
    r = nginx.one("GET", url(srv["good6"], "/echo", host="::1"))
    assert r.get("status") == 200, r
    assert srv["good6"].requests[0]["headers"]["host"] == "[::1]:%d" % srv["good6"].port


def test_ip_literal_https(nginx, srv):
    r = nginx.one("GET", url(srv["good"], "/echo", host="127.0.0.1"))
    assert r.get("status") == 200, r


def test_untrusted_ca(nginx, srv):
    port = srv["untrusted"].port
    r = nginx.one("GET", url(srv["untrusted"], "/echo"))
    # 20 "unable to get local issuer certificate" or, for a chain of one, 21 "unable to verify
    # the first certificate".
    # (lua-nginx-module 0.10.23 names the cause only when the handshake completes at once.)
    assert r["err"].startswith("tls handshake with localhost:%d failed: " % port), r
    assert ("unable to" in r["err"] and "certificate" in r["err"]) or \
        "certificate verification failed" in r["err"], r
    # ssl_verify = false accepts it.
    r = nginx.one("GET", url(srv["untrusted"], "/echo"), opts={"ssl_verify": False})
    assert r.get("status") == 200, r


def test_wrong_host_name(nginx, srv):
    r = nginx.one("GET", url(srv["wrongname"], "/echo"))
    assert r["err"].startswith("tls handshake with localhost:%d failed: " % srv["wrongname"].port)
    # lua-nginx-module 0.10.23 names the cause only when the handshake completes at once
    assert "host mismatch" in r["err"] or "certificate verification failed" in r["err"], r


def test_connection_refused(nginx):
    port = free_port()
    r = nginx.one("GET", "https://127.0.0.1:%d/dir" % port)
    assert r["err"] == "failed to connect to 127.0.0.1:%d: connection refused" % port


def test_read_timeout(nginx, srv):
    t0 = time.time()
    r = nginx.one("GET", url(srv["good"], "/slow?s=2"), opts={"timeout": 300})
    assert r["err"] == "timeout reading response from localhost:%d" % srv["good"].port
    assert time.time() - t0 < 1.8


def test_oversize_body(nginx, srv):
    rs = nginx.run(
        [
            dict(method="GET", url=url(srv["good"], "/big?n=5000")),
            dict(method="GET", url=url(srv["good"], "/big?n=1000")),
            dict(method="GET", url=url(srv["good"], "/chunked")),
        ],
        opts={"max_body": 1000},
    )
    port = srv["good"].port
    assert rs[0]["err"] == (
        "invalid response from localhost:%d: response body exceeds 1000 bytes" % port
    )
    assert rs[1]["status"] == 200 and len(rs[1]["body"]) == 1000
    assert rs[2]["status"] == 200
    rs = nginx.run([dict(method="GET", url=url(srv["good"], "/chunked"))], opts={"max_body": 10})
    assert rs[0]["err"].endswith("response body exceeds 10 bytes")


def test_large_body(nginx, srv):
    r = nginx.one("GET", url(srv["good"], "/big?n=300000"))
    assert r["status"] == 200
    assert len(r["body"]) == 300000


def test_bad_urls_and_headers(nginx, srv):
    rs = nginx.run(
        [
            dict(method="GET", url="ftp://localhost/x"),
            dict(method="GET", url="https://user:pw@localhost/x"),
            dict(method="GET", url=url(srv["good"], "/echo"), headers={"X-A": "1\r\nX-B: 2"}),
        ]
    )
    assert "unsupported scheme" in rs[0]["err"]
    assert "userinfo" in rs[1]["err"]
    assert "cr, lf or nul" in rs[2]["err"]
    assert srv["good"].requests == []


def test_init_worker_phase_refused(nginx):
    log = nginx.log_text()
    assert (
        "init_worker transport: res=nil err=cosockets are not available in the init_worker "
        "phase; run this from a timer, or content/access/ssl_cert phase"
    ) in log


# ---------------------------------------------------------------- the core API directly


def test_core_http_target(nginx):
    r = nginx.eval(
        r"""
        local core = require("resty.acme.core")
        local t = core.http_target("https://[::1]:8443/acme/dir?x=1")
        local d = core.http_target("http://CA.example")
        local none, err = core.http_target("ftp://x/")
        return { t = t, d = d, none = none == nil, err = err }
        """
    )
    assert r["t"] == {
        "scheme": "https", "host": "::1", "port": 8443, "path": "/acme/dir?x=1",
        "authority": "[::1]:8443", "connect_host": "[::1]", "host_port": "[::1]:8443",
        "is_ip": True,
    }
    assert r["d"]["host"] == "ca.example" and r["d"]["port"] == 80 and r["d"]["path"] == "/"
    assert r["d"]["authority"] == "ca.example" and r["d"]["is_ip"] is False
    assert r["none"] is True
    assert r["err"] == 'invalid url "ftp://x/": unsupported scheme "ftp" (only http and https)'


def test_core_http_request(nginx):
    r = nginx.eval(
        r"""
        local core = require("resty.acme.core")
        local req = core.http_request("POST", "https://ca.example/new-order",
          { ["Content-Type"] = "application/jose+json", ["X-Multi"] = { "a", "b" },
            ["X-Num"] = 5 }, "{}")
        local none, err = core.http_request("GET", "https://ca.example/", { X = "a\nb" })
        local ok, raised = pcall(core.http_request, "GET", "https://ca.example/", { X = true })
        return { req = req, none = none == nil, err = err, ok = ok, raised = tostring(raised),
                 ua = core.http_user_agent }
        """
    )
    assert r["req"] == (
        "POST /new-order HTTP/1.1\r\nHost: ca.example\r\nUser-Agent: %s\r\nAccept: */*\r\n"
        "Connection: keep-alive\r\nContent-Type: application/jose+json\r\nX-Multi: a\r\n"
        "X-Multi: b\r\nX-Num: 5\r\nContent-Length: 2\r\n\r\n{}" % r["ua"]
    )
    assert r["none"] is True
    assert r["err"] == 'invalid request header "X": value contains cr, lf or nul'
    # Misuse (a boolean header value) raises.
    assert r["ok"] is False and "boolean" in r["raised"]


def test_core_http_parser(nginx):
    r = nginx.eval(
        r"""
        local core = require("resty.acme.core")
        local p = core.http_parser(false, 100)
        local steps = {}
        local input = "HTTP/1.1 200 OK\r\nLink: <a>\r\nLINK: <b>\r\nTransfer-Encoding: chunked"
                      .. "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        local early, early_err = p:response()
        for i = 1, #input do
          steps[#steps + 1] = p:feed(input:sub(i, i))
        end
        local status, headers, body, list = p:response()
        local q = core.http_parser(false)
        q:feed("HTTP/1.1 200 OK\r\n\r\nclose-delimited")
        local before = q:keepalive()
        local eof = q:eof()
        local _, _, qbody = q:response()
        local bad = core.http_parser(false)
        local none, err = bad:feed("SSH-2.0-OpenSSH\r\n\r\n")
        local t = core.http_parser(true)
        t:feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n")
        local eof_ok, eof_err = t:eof()
        return {
          early = early == nil, early_err = early_err,
          last = steps[#steps], any_early = steps[#steps - 1],
          status = status, link = headers.link, link_ci = headers.Link, body = body,
          list = list, keep = p:keepalive(),
          before = before, eof = eof, qbody = qbody, qkeep = q:keepalive(),
          bad = none == nil, bad_err = err, eof_ok = eof_ok == nil, eof_err = eof_err,
        }
        """
    )
    assert r["early"] is True and r["early_err"] == "response is not complete"
    assert r["last"] is True and r["any_early"] is False
    assert r["status"] == 200 and r["body"] == "abc"
    assert r["link"] == "<a>, <b>" and r["link_ci"] == "<a>, <b>"
    assert r["list"] == [["Link", "<a>"], ["LINK", "<b>"], ["Transfer-Encoding", "chunked"]]
    assert r["keep"] is True
    assert r["before"] is False and r["eof"] is True
    assert r["qbody"] == "close-delimited" and r["qkeep"] is False
    assert r["bad"] is True and r["bad_err"].startswith("malformed response: ")
    assert r["eof_ok"] is True
    assert r["eof_err"] == "connection closed inside the response header section"


def test_transport_misuse_raises(nginx):
    r = nginx.eval(
        r"""
        local transport = require("resty.acme.transport")
        local ok1, e1 = pcall(transport.new, { timeout = "soon" })
        local t = transport.new()
        local ok2, e2 = pcall(t.request, t, nil, "https://x/")
        local ok3, e3 = pcall(t.request, t, "GET", "https://x/", nil, 42)
        return { ok1, tostring(e1), ok2, tostring(e2), ok3, tostring(e3), transport._VERSION }
        """
    )
    assert r[0] is False and "timeout must be a non-negative integer" in r[1]
    assert r[2] is False and "method and url must be strings" in r[3]
    assert r[4] is False and "body must be a string" in r[5]
    assert r[6] == "0.1.0"
